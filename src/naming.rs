//! Pure naming: partitions and endpoints per region, and the deterministic names of the AWS
//! resources an integration owns. Same inputs, same names, so a crash can never leak a
//! duplicate; a short hash of cluster/namespace/name keeps two integrations from colliding
//! even when their readable parts are truncated.

use sha2::{Digest, Sha256};

/// An AWS partition, which decides ARNs and endpoint domains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Partition {
    Aws,
    AwsCn,
    AwsUsGov,
    AwsIso,
    AwsIsoB,
}

impl Partition {
    /// The partition of a region: `cn-*` is aws-cn, `us-gov-*` aws-us-gov, `us-iso-*` aws-iso,
    /// `us-isob-*` aws-iso-b, anything else aws.
    pub fn of_region(region: &str) -> Self {
        if region.starts_with("cn-") {
            Self::AwsCn
        } else if region.starts_with("us-gov-") {
            Self::AwsUsGov
        } else if region.starts_with("us-isob-") {
            Self::AwsIsoB
        } else if region.starts_with("us-iso-") {
            Self::AwsIso
        } else {
            Self::Aws
        }
    }

    /// The partition named in an ARN (`arn:<partition>:...`).
    pub fn of_arn(arn: &str) -> Option<Self> {
        match arn.split(':').nth(1)? {
            "aws" => Some(Self::Aws),
            "aws-cn" => Some(Self::AwsCn),
            "aws-us-gov" => Some(Self::AwsUsGov),
            "aws-iso" => Some(Self::AwsIso),
            "aws-iso-b" => Some(Self::AwsIsoB),
            _ => None,
        }
    }

    pub fn id(self) -> &'static str {
        match self {
            Self::Aws => "aws",
            Self::AwsCn => "aws-cn",
            Self::AwsUsGov => "aws-us-gov",
            Self::AwsIso => "aws-iso",
            Self::AwsIsoB => "aws-iso-b",
        }
    }

    pub fn dns_suffix(self) -> &'static str {
        match self {
            Self::Aws | Self::AwsUsGov => "amazonaws.com",
            Self::AwsCn => "amazonaws.com.cn",
            Self::AwsIso => "c2s.ic.gov",
            Self::AwsIsoB => "sc2s.sgov.gov",
        }
    }

    /// The region IAM (a global service) is addressed through in this partition.
    pub fn iam_region(self) -> &'static str {
        match self {
            Self::Aws => "us-east-1",
            Self::AwsCn => "cn-north-1",
            Self::AwsUsGov => "us-gov-west-1",
            Self::AwsIso => "us-iso-east-1",
            Self::AwsIsoB => "us-isob-east-1",
        }
    }
}

/// The regional S3 endpoint host Milvus talks to, e.g. `s3.us-east-2.amazonaws.com`.
pub fn s3_host(region: &str) -> String {
    format!("s3.{region}.{}", Partition::of_region(region).dns_suffix())
}

pub fn bucket_arn(partition: Partition, bucket: &str) -> String {
    format!("arn:{}:s3:::{bucket}", partition.id())
}

/// `https://oidc.eks.../id/X` -> `oidc.eks.../id/X`, the form IAM uses in provider ARNs and
/// in trust-policy condition keys.
pub fn issuer_host_path(issuer: &str) -> &str {
    let trimmed = issuer.strip_prefix("https://").unwrap_or(issuer);
    trimmed.trim_end_matches('/')
}

/// A KMS key as S3 reports it (key id, key ARN or alias ARN) as an ARN for an IAM policy.
pub fn kms_key_arn(partition: Partition, region: &str, account: &str, key: &str) -> String {
    if key.starts_with("arn:") {
        key.to_string()
    } else {
        format!("arn:{}:kms:{region}:{account}:key/{key}", partition.id())
    }
}

pub fn oidc_provider_arn(partition: Partition, account: &str, issuer: &str) -> String {
    format!(
        "arn:{}:iam::{account}:oidc-provider/{}",
        partition.id(),
        issuer_host_path(issuer)
    )
}

/// Which integration a name is derived for.
#[derive(Clone, Copy, Debug)]
pub struct Owner<'a> {
    pub cluster: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

impl Owner<'_> {
    /// 8 hex characters of SHA-256 over cluster/namespace/name.
    pub fn short_hash(&self) -> String {
        let digest = Sha256::digest(format!("{}/{}/{}", self.cluster, self.namespace, self.name));
        digest.iter().take(4).map(|b| format!("{b:02x}")).collect()
    }
}

const BUCKET_MAX: usize = 63;
const ROLE_MAX: usize = 64;
const POLICY_MAX: usize = 128;

/// Derived bucket name: `<prefix><namespace>-<name>-<hash>`, lowercased, with every character
/// S3 does not allow (and dots, which break virtual-host TLS) turned into `-`, truncated to
/// 63 characters with the hash kept. `prefix` is the operator's allowed prefix, or `bw-`.
pub fn bucket_name(owner: Owner<'_>, prefix: Option<&str>) -> String {
    let prefix = sanitize(prefix.filter(|p| !p.is_empty()).unwrap_or("bw-"), |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
    });
    let readable = sanitize(&format!("{}-{}", owner.namespace, owner.name), |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
    });
    compose(&prefix, &readable, &owner.short_hash(), BUCKET_MAX)
}

/// IAM role name: `bucketwire-<namespace>-<name>-<hash>`, at most 64 characters.
pub fn role_name(owner: Owner<'_>) -> String {
    iam_name(owner, ROLE_MAX)
}

/// IAM policy name: `bucketwire-<namespace>-<name>-<hash>`, at most 128 characters.
pub fn policy_name(owner: Owner<'_>) -> String {
    iam_name(owner, POLICY_MAX)
}

fn iam_name(owner: Owner<'_>, max: usize) -> String {
    // IAM names allow [A-Za-z0-9+=,.@_-]; Kubernetes names only use a subset of that.
    let readable = sanitize(&format!("{}-{}", owner.namespace, owner.name), |c| {
        c.is_ascii_alphanumeric() || "+=,.@_-".contains(c)
    });
    compose("bucketwire-", &readable, &owner.short_hash(), max)
}

pub(crate) fn sanitize(input: &str, allowed: impl Fn(char) -> bool) -> String {
    let mut out = String::with_capacity(input.len());
    for c in input.to_ascii_lowercase().chars() {
        let c = if allowed(c) { c } else { '-' };
        // Collapse runs of '-' so truncation keeps as much meaning as possible.
        if c == '-' && out.ends_with('-') {
            continue;
        }
        out.push(c);
    }
    out
}

/// `<prefix><readable>-<hash>` within `max` characters; the readable part is cut first, and
/// never leaves a '-' next to the hash's separator.
pub(crate) fn compose(prefix: &str, readable: &str, hash: &str, max: usize) -> String {
    let budget = max.saturating_sub(prefix.len() + 1 + hash.len());
    let cut: String = readable.chars().take(budget).collect();
    let cut = cut.trim_matches('-');
    if cut.is_empty() {
        format!("{}-{hash}", prefix.trim_end_matches('-'))
    } else {
        format!("{prefix}{cut}-{hash}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner<'a>(namespace: &'a str, name: &'a str) -> Owner<'a> {
        Owner {
            cluster: "prod-eks",
            namespace,
            name,
        }
    }

    /// Every S3 naming rule, checked independently of the CEL rules.
    fn is_valid_bucket_name(name: &str) -> bool {
        let len_ok = (3..=63).contains(&name.len());
        let chars_ok = name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
        let ends_ok = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && name.chars().last().is_some_and(|c| c.is_ascii_alphanumeric());
        let not_ip = name.parse::<std::net::Ipv4Addr>().is_err();
        let prefixes_ok = !["xn--", "sthree-", "amzn-s3-demo-"]
            .iter()
            .any(|p| name.starts_with(p));
        let suffixes_ok = !["-s3alias", "--ol-s3", ".mrap", "--x-s3"]
            .iter()
            .any(|s| name.ends_with(s));
        len_ok && chars_ok && ends_ok && not_ip && !name.contains("..") && prefixes_ok && suffixes_ok
    }

    fn is_valid_iam_name(name: &str, max: usize) -> bool {
        !name.is_empty()
            && name.len() <= max
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
    }

    /// The names are pinned: a change to them would make every existing integration look for
    /// a bucket, role and policy under new names (and create them again). The expected values
    /// were computed apart from this code (SHA-256 of `cluster/namespace/name`, first 4 bytes).
    #[test]
    fn derived_names_are_the_documented_ones() {
        let o = owner("milvus", "prod");
        assert_eq!(o.short_hash(), "3f90df2f");
        assert_eq!(bucket_name(o, None), "bw-milvus-prod-3f90df2f");
        assert_eq!(bucket_name(o, Some("")), "bw-milvus-prod-3f90df2f");
        assert_eq!(bucket_name(o, Some("acme-")), "acme-milvus-prod-3f90df2f");
        assert_eq!(bucket_name(o, Some("Acme_")), "acme-milvus-prod-3f90df2f");
        assert_eq!(role_name(o), "bucketwire-milvus-prod-3f90df2f");
        assert_eq!(policy_name(o), "bucketwire-milvus-prod-3f90df2f");
        // Dots: not in bucket names (they break virtual-hosted TLS), kept in IAM names.
        let dotted = owner("a", "b.c.d");
        assert_eq!(bucket_name(dotted, None), "bw-a-b-c-d-d66758d4");
        assert_eq!(role_name(dotted), "bucketwire-a-b.c.d-d66758d4");
        // Runs of '-' collapse, and none is left next to the hash.
        assert_eq!(bucket_name(owner("ns", "----"), None), "bw-ns-d1af185c");
        // Same readable part, different integrations: the hash tells them apart.
        assert_eq!(bucket_name(owner("a-b", "c"), None), "bw-a-b-c-60d6af51");
        assert_eq!(bucket_name(owner("a", "b-c"), None), "bw-a-b-c-761eda84");
        let other_cluster = Owner {
            cluster: "staging-eks",
            namespace: "a-b",
            name: "c",
        };
        assert_eq!(bucket_name(other_cluster, None), "bw-a-b-c-f0fab1b0");
        // Too long: the readable part is cut to fit, the hash kept.
        let long_ns = "n".repeat(63);
        let long_name = format!("{}.{}", "a".repeat(120), "b".repeat(120));
        let long = owner(&long_ns, &long_name);
        assert_eq!(bucket_name(long, None), format!("bw-{}-e2bbc4e3", "n".repeat(51)));
        assert_eq!(role_name(long), format!("bucketwire-{}-e2bbc4e3", "n".repeat(44)));
        assert_eq!(
            policy_name(long),
            format!("bucketwire-{}-{}-e2bbc4e3", "n".repeat(63), "a".repeat(44))
        );
        assert_eq!(
            (
                bucket_name(long, None).len(),
                role_name(long).len(),
                policy_name(long).len()
            ),
            (63, 64, 128)
        );
    }

    #[test]
    fn derived_names_are_valid_and_fit_for_extreme_inputs() {
        let long_ns = "n".repeat(63);
        let long_name = format!("{}.{}", "a".repeat(120), "b".repeat(120));
        let cases = [
            ("milvus", "prod"),
            (long_ns.as_str(), long_name.as_str()),
            ("xn--ns", "x"),
            ("a", "b.c.d"),
            ("ns", "----"),
            ("192", "168.5.4"),
            ("ns", "x-s3alias"),
        ];
        for (ns, name) in cases {
            let o = owner(ns, name);
            let bucket = bucket_name(o, None);
            assert!(is_valid_bucket_name(&bucket), "{bucket:?} from {ns}/{name}");
            let role = role_name(o);
            assert!(is_valid_iam_name(&role, 64), "{role:?}");
            let policy = policy_name(o);
            assert!(is_valid_iam_name(&policy, 128), "{policy:?}");
            assert!(bucket.ends_with(&o.short_hash()) && role.ends_with(&o.short_hash()));
        }
        let prefixed = bucket_name(owner(&long_ns, &long_name), Some("acme-milvus-"));
        assert!(
            prefixed.starts_with("acme-milvus-") && is_valid_bucket_name(&prefixed),
            "{prefixed}"
        );
    }

    #[test]
    fn namespace_and_name_pairs_never_collide() {
        // Pairs whose readable parts are identical ("a-b" + "c" vs "a" + "b-c") or truncated alike.
        let mut seen = std::collections::HashSet::new();
        let long = "x".repeat(80);
        let pairs = [
            ("a-b", "c".to_string()),
            ("a", "b-c".to_string()),
            ("ns", format!("{long}1")),
            ("ns", format!("{long}2")),
            ("ns", "a.b".to_string()),
            ("ns", "a-b".to_string()),
        ];
        for (ns, name) in &pairs {
            let o = owner(ns, name);
            assert!(
                seen.insert((bucket_name(o, None), role_name(o), policy_name(o))),
                "{ns}/{name} collides"
            );
        }
        // And across clusters.
        let other_cluster = Owner {
            cluster: "staging-eks",
            namespace: "a-b",
            name: "c",
        };
        assert_ne!(
            bucket_name(other_cluster, None),
            bucket_name(owner("a-b", "c"), None)
        );
    }

    #[test]
    fn partitions_and_endpoints_follow_the_region() {
        assert_eq!(Partition::of_region("us-east-2"), Partition::Aws);
        assert_eq!(Partition::of_region("cn-north-1"), Partition::AwsCn);
        assert_eq!(Partition::of_region("us-gov-west-1"), Partition::AwsUsGov);
        assert_eq!(s3_host("us-east-2"), "s3.us-east-2.amazonaws.com");
        assert_eq!(s3_host("cn-northwest-1"), "s3.cn-northwest-1.amazonaws.com.cn");
        assert_eq!(s3_host("us-gov-west-1"), "s3.us-gov-west-1.amazonaws.com");
        assert_eq!(bucket_arn(Partition::AwsCn, "b"), "arn:aws-cn:s3:::b");
        assert_eq!(
            oidc_provider_arn(
                Partition::AwsUsGov,
                "123456789012",
                "https://oidc.eks.us-gov-west-1.amazonaws.com/id/ABC/"
            ),
            "arn:aws-us-gov:iam::123456789012:oidc-provider/oidc.eks.us-gov-west-1.amazonaws.com/id/ABC"
        );
        assert_eq!(
            Partition::of_arn("arn:aws-cn:iam::123456789012:root"),
            Some(Partition::AwsCn)
        );
    }
}
