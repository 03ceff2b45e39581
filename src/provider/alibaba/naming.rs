//! Pure naming for Alibaba Cloud: OSS endpoints per region, the ARNs RAM and OSS use, and the
//! deterministic names of the OSS bucket, RAM policy and RAM role an integration owns. The
//! same `Owner` hash as AWS's names (crate::naming), so one integration's names on either
//! cloud read alike and two integrations never collide.

use crate::naming::{Owner, compose, sanitize};

/// OSS bucket names: 3-63 characters of lowercase letters, digits and hyphens, starting and
/// ending with a letter or digit (OSS has no dots, unlike S3).
pub const BUCKET_MAX: usize = 63;
/// RAM role names: 1-64 characters of letters, digits, `.` and `-`.
pub const ROLE_MAX: usize = 64;
/// RAM policy names: 1-128 characters of letters, digits and `-`.
pub const POLICY_MAX: usize = 128;

/// The audience RRSA tokens carry, and that the cluster's OIDC provider lists as client ID.
pub const STS_AUDIENCE: &str = "sts.aliyuncs.com";

/// The ServiceAccount annotation ACK's ack-pod-identity-webhook reads: the RAM role's name.
pub const WEBHOOK_ROLE_ANNOTATION: &str = "pod-identity.alibabacloud.com/role-name";
/// The namespace label that turns the webhook on (`on`); bucketwire never sets it.
pub const WEBHOOK_INJECTION_LABEL: &str = "pod-identity.alibabacloud.com/injection";

/// Derived OSS bucket name: `<prefix><namespace>-<name>-<hash>`, within OSS's rules. `prefix`
/// is the operator's allowed prefix, or `bw-`.
pub fn bucket_name(owner: Owner<'_>, prefix: Option<&str>) -> String {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    let prefix = sanitize(prefix.filter(|p| !p.is_empty()).unwrap_or("bw-"), allowed);
    let readable = sanitize(&format!("{}-{}", owner.namespace, owner.name), allowed);
    compose(&prefix, &readable, &owner.short_hash(), BUCKET_MAX)
}

/// RAM role name: `bucketwire-<namespace>-<name>-<hash>`, at most 64 characters.
pub fn role_name(owner: Owner<'_>) -> String {
    ram_name(owner, ROLE_MAX, |c| {
        c.is_ascii_alphanumeric() || c == '.' || c == '-'
    })
}

/// RAM policy name: `bucketwire-<namespace>-<name>-<hash>`, at most 128 characters (no dots:
/// RAM policy names allow letters, digits and `-` only).
pub fn policy_name(owner: Owner<'_>) -> String {
    ram_name(owner, POLICY_MAX, |c| c.is_ascii_alphanumeric() || c == '-')
}

fn ram_name(owner: Owner<'_>, max: usize, allowed: impl Fn(char) -> bool) -> String {
    let readable = sanitize(&format!("{}-{}", owner.namespace, owner.name), allowed);
    compose("bucketwire-", &readable, &owner.short_hash(), max)
}

/// `acs:ram::<account>:role/<name>`: RAM writes the role name in lower case in its ARNs.
pub fn role_arn(account: &str, role_name: &str) -> String {
    format!("acs:ram::{account}:role/{}", role_name.to_ascii_lowercase())
}

/// `acs:ram::<account>:root`: an account as a principal of a trust policy.
pub fn account_root(account: &str) -> String {
    format!("acs:ram::{account}:root")
}

/// `acs:oss:*:<account>:<bucket>`: a bucket as RAM names it, in the bucket owner's account
/// (the account pins the grant to this owner's bucket: names are global, and a bucket deleted
/// and re-created elsewhere under the same name is not the same resource).
pub fn bucket_arn(account: &str, bucket: &str) -> String {
    format!("acs:oss:*:{account}:{bucket}")
}

/// `acs:kms:<region>:<account>:key/<key id>`.
pub fn kms_key_arn(region: &str, account: &str, key_id: &str) -> String {
    if key_id.starts_with("acs:") {
        key_id.to_string()
    } else {
        format!("acs:kms:{region}:{account}:key/{key_id}")
    }
}

/// Where Milvus reaches OSS: the public endpoint of the bucket's region, or its VPC-internal
/// endpoint when Milvus runs inside that region's VPC (cheaper, no internet egress).
pub fn oss_host(region: &str, internal: bool) -> String {
    if internal {
        format!("oss-{region}-internal.aliyuncs.com")
    } else {
        format!("oss-{region}.aliyuncs.com")
    }
}

/// Whether `region` has the shape of an Alibaba Cloud region id (`cn-hangzhou`,
/// `ap-southeast-1`, `cn-shanghai-finance-1`, `cn-north-2-gov-1`); the same pattern as the
/// API's CEL rule, for code paths that did not pass admission.
pub fn is_region(region: &str) -> bool {
    let mut parts = region.split('-');
    let Some(area) = parts.next() else {
        return false;
    };
    let rest: Vec<&str> = parts.collect();
    // The area prefixes Alibaba Cloud's region ids use (docs/alibaba-research.md, Q7); a bare
    // "two or three letters" would accept an OSS location such as `oss-cn-hangzhou`.
    ["cn", "ap", "us", "eu", "me", "na", "sa", "af", "rus"].contains(&area)
        && !rest.is_empty()
        && rest[0].chars().all(|c| c.is_ascii_lowercase())
        && !rest[0].is_empty()
        && rest
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner<'a>(namespace: &'a str, name: &'a str) -> Owner<'a> {
        Owner {
            cluster: "prod-ack",
            namespace,
            name,
        }
    }

    fn is_oss_bucket_name(name: &str) -> bool {
        (3..=BUCKET_MAX).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.starts_with('-')
            && !name.ends_with('-')
    }

    #[test]
    fn derived_names_obey_oss_and_ram_rules_even_for_long_and_odd_inputs() {
        let long = "n".repeat(253);
        for (ns, name) in [
            ("milvus", "prod"),
            (long.as_str(), long.as_str()),
            ("a.b", "c.d.e"),
            ("x", "UPPER_case"),
        ] {
            let o = owner(ns, name);
            let bucket = bucket_name(o, None);
            assert!(is_oss_bucket_name(&bucket), "{bucket}");
            let role = role_name(o);
            assert!(role.len() <= ROLE_MAX, "{role}");
            assert!(
                role.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'),
                "{role}"
            );
            let policy = policy_name(o);
            assert!(policy.len() <= POLICY_MAX, "{policy}");
            assert!(
                policy.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
                "{policy}"
            );
            assert!(bucket.ends_with(&o.short_hash()) && role.ends_with(&o.short_hash()));
        }
    }

    #[test]
    fn names_are_deterministic_and_differ_between_integrations() {
        assert_eq!(
            bucket_name(owner("a", "b"), None),
            bucket_name(owner("a", "b"), None)
        );
        assert_ne!(role_name(owner("a-b", "c")), role_name(owner("a", "b-c")));
        assert_eq!(
            bucket_name(owner("milvus", "prod"), Some("team-")),
            format!("team-milvus-prod-{}", owner("milvus", "prod").short_hash())
        );
    }

    #[test]
    fn dots_are_kept_in_role_names_and_replaced_in_policy_names() {
        let o = owner("a.b", "c");
        assert!(role_name(o).starts_with("bucketwire-a.b-c-"));
        assert!(policy_name(o).starts_with("bucketwire-a-b-c-"));
    }

    #[test]
    fn arns_and_hosts_have_alibabas_shapes() {
        assert_eq!(
            role_arn("1234567890123456", "Bucketwire-X"),
            "acs:ram::1234567890123456:role/bucketwire-x"
        );
        assert_eq!(account_root("1"), "acs:ram::1:root");
        assert_eq!(bucket_arn("1", "b"), "acs:oss:*:1:b");
        assert_eq!(
            kms_key_arn("cn-hangzhou", "1", "k"),
            "acs:kms:cn-hangzhou:1:key/k"
        );
        assert_eq!(oss_host("cn-hangzhou", false), "oss-cn-hangzhou.aliyuncs.com");
        assert_eq!(
            oss_host("ap-southeast-1", true),
            "oss-ap-southeast-1-internal.aliyuncs.com"
        );
    }

    #[test]
    fn region_ids_are_recognised() {
        for ok in [
            "cn-hangzhou",
            "cn-shanghai",
            "ap-southeast-1",
            "us-west-1",
            "eu-central-1",
            "cn-shanghai-finance-1",
            "cn-north-2-gov-1",
            "me-east-1",
        ] {
            assert!(is_region(ok), "{ok}");
        }
        for bad in [
            "",
            "cn",
            "hangzhou",
            "CN-hangzhou",
            "cn--1",
            "cn-hangzhou-",
            "c-x",
            "cn-1",
            "oss-cn-hangzhou",
        ] {
            assert!(!is_region(bad), "{bad}");
        }
    }
}
