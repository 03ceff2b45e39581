//! Pure documents for Alibaba Cloud: the RAM permission policy, the RRSA and cross-account
//! trust policies, and the OSS bucket policy. RAM's policy language has IAM's shape (Version
//! "1", Statement, Effect, Action, Resource, Principal, Condition), so documents are compared
//! with the same canonical form as IAM's (crate::documents::documents_equivalent).

use serde_json::{Value, json};

use super::naming::{STS_AUDIENCE, account_root, bucket_arn};
use crate::api::Access;

/// The only version of RAM's policy language.
pub const POLICY_VERSION: &str = "1";

/// The object-level actions Milvus needs: reads and writes of its files, multipart uploads
/// (Milvus writes large segments in parts and aborts what it gives up on), and deletes
/// (compaction and garbage collection remove old files).
const READ_WRITE_OBJECT_ACTIONS: &[&str] = &[
    "oss:AbortMultipartUpload",
    "oss:DeleteObject",
    "oss:GetObject",
    "oss:ListParts",
    "oss:PutObject",
];

/// The bucket-level actions: Milvus lists its files and checks that the bucket exists and
/// where it is.
const BUCKET_ACTIONS: &[&str] = &["oss:GetBucketInfo", "oss:GetBucketLocation", "oss:ListObjects"];

/// The least-privilege RAM policy for one bucket: bucket-level actions on the bucket's ARN,
/// object actions on its objects, and the KMS key only when the bucket encrypts with one.
/// Resources name the bucket owner's account (see `naming::bucket_arn`).
pub fn permission_policy(account: &str, bucket: &str, access: Access, kms_key_arn: Option<&str>) -> Value {
    let object_actions: &[&str] = match access {
        Access::ReadWrite => READ_WRITE_OBJECT_ACTIONS,
        Access::ReadOnly => &["oss:GetObject"],
    };
    let kms_actions: &[&str] = match access {
        Access::ReadWrite => &["kms:Decrypt", "kms:GenerateDataKey"],
        Access::ReadOnly => &["kms:Decrypt"],
    };
    bucket_access_policy(
        account,
        bucket,
        object_actions,
        kms_key_arn.map(|key| (kms_actions, key)),
    )
}

/// The RAM policy of a cross-account role, as Zilliz Cloud's guide lists it: `oss:ListObjects`,
/// `oss:GetBucketLocation` and `oss:GetBucketInfo` (which answers OSS's HeadBucket) on the
/// bucket, `oss:GetObject` and `oss:PutObject` on its objects (ReadOnly: `oss:GetObject`), and
/// with KMS `kms:GenerateDataKey` and `kms:Decrypt` on the key (ReadOnly: `kms:Decrypt`).
pub fn cross_account_policy(account: &str, bucket: &str, access: Access, kms_key_arn: Option<&str>) -> Value {
    let (object_actions, kms_actions): (&[&str], &[&str]) = match access {
        Access::ReadWrite => (
            &["oss:GetObject", "oss:PutObject"],
            &["kms:Decrypt", "kms:GenerateDataKey"],
        ),
        Access::ReadOnly => (&["oss:GetObject"], &["kms:Decrypt"]),
    };
    bucket_access_policy(
        account,
        bucket,
        object_actions,
        kms_key_arn.map(|key| (kms_actions, key)),
    )
}

fn bucket_access_policy(
    account: &str,
    bucket: &str,
    object_actions: &[&str],
    kms: Option<(&[&str], &str)>,
) -> Value {
    let bucket_arn = bucket_arn(account, bucket);
    let mut statements = vec![
        json!({"Effect": "Allow", "Action": BUCKET_ACTIONS, "Resource": [bucket_arn.clone()]}),
        json!({"Effect": "Allow", "Action": object_actions, "Resource": [format!("{bucket_arn}/*")]}),
    ];
    if let Some((actions, key)) = kms {
        statements.push(json!({"Effect": "Allow", "Action": actions, "Resource": [key]}));
    }
    json!({"Version": POLICY_VERSION, "Statement": statements})
}

/// The RRSA trust policy, as ACK's guide writes it: the cluster's OIDC provider as the
/// federated principal, and exactly this issuer, audience and ServiceAccount.
pub fn rrsa_trust(oidc_provider_arn: &str, issuer: &str, namespace: &str, service_account: &str) -> Value {
    json!({
        "Version": POLICY_VERSION,
        "Statement": [{
            "Effect": "Allow",
            "Action": "sts:AssumeRole",
            "Principal": {"Federated": [oidc_provider_arn]},
            "Condition": {"StringEquals": {
                "oidc:iss": issuer,
                "oidc:aud": STS_AUDIENCE,
                "oidc:sub": format!("system:serviceaccount:{namespace}:{service_account}"),
            }},
        }],
    })
}

/// The cross-account trust policy: exactly one account's root, `sts:AssumeRole`, and only with
/// the external ID.
pub fn cross_account_trust(trusted_account: &str, external_id: &str) -> Value {
    json!({
        "Version": POLICY_VERSION,
        "Statement": [{
            "Effect": "Allow",
            "Action": "sts:AssumeRole",
            "Principal": {"RAM": [account_root(trusted_account)]},
            "Condition": {"StringEquals": {"sts:ExternalId": external_id}},
        }],
    })
}

/// The OSS bucket policy: refuse every request that does not use TLS. A Deny for every
/// principal and action is the point here; it grants nothing.
pub fn bucket_policy(account: &str, bucket: &str) -> Value {
    let bucket_arn = bucket_arn(account, bucket);
    json!({
        "Version": POLICY_VERSION,
        "Statement": [{
            "Effect": "Deny",
            "Action": ["oss:*"],
            "Principal": ["*"],
            "Resource": [bucket_arn.clone(), format!("{bucket_arn}/*")],
            "Condition": {"Bool": {"acs:SecureTransport": ["false"]}},
        }],
    })
}

/// Where the RRSA token is mounted in Milvus's Pods: the path ACK's pod-identity webhook uses.
pub const RRSA_TOKEN_DIR: &str = "/var/run/secrets/ack.alibabacloud.com/rrsa-tokens";
/// The projected token volume's name in the values.
pub const RRSA_TOKEN_VOLUME: &str = "bucketwire-rrsa-token";

/// Every Milvus chart component that reads `<component>.extraEnv` (chart 5.0.19's templates;
/// the chart has no global extraEnv), so each process of a standalone or cluster install gets
/// the RRSA variables.
pub const CHART_COMPONENTS: &[&str] = &[
    "standalone",
    "proxy",
    "mixCoordinator",
    "rootCoordinator",
    "queryCoordinator",
    "dataCoordinator",
    "indexCoordinator",
    "queryNode",
    "dataNode",
    "indexNode",
    "streamingNode",
    "woodpecker",
];

/// The environment Alibaba Cloud's credential chains (Milvus's Go side, credentials-go; its
/// C++ side, AliyunSTSAssumeRoleWebIdentityCredentialsProvider) read for RRSA: the role, the
/// cluster's OIDC provider, and the projected token, exchanged with STS AssumeRoleWithOIDC.
pub fn rrsa_env(role_arn: &str, oidc_provider_arn: &str) -> Value {
    json!([
        {"name": "ALIBABA_CLOUD_ROLE_ARN", "value": role_arn},
        {"name": "ALIBABA_CLOUD_OIDC_PROVIDER_ARN", "value": oidc_provider_arn},
        {"name": "ALIBABA_CLOUD_OIDC_TOKEN_FILE", "value": format!("{RRSA_TOKEN_DIR}/token")},
    ])
}

/// The Pod volumes RRSA needs: a projected ServiceAccount token with audience
/// `sts.aliyuncs.com`, refreshed by the kubelet.
pub fn rrsa_volumes() -> Value {
    json!([{
        "name": RRSA_TOKEN_VOLUME,
        "projected": {"sources": [{"serviceAccountToken": {
            "audience": STS_AUDIENCE,
            "expirationSeconds": 3600,
            "path": "token",
        }}]},
    }])
}

/// Where every Milvus container reads that token (`ALIBABA_CLOUD_OIDC_TOKEN_FILE`).
pub fn rrsa_volume_mounts() -> Value {
    json!([{
        "name": RRSA_TOKEN_VOLUME,
        "mountPath": RRSA_TOKEN_DIR,
        "readOnly": true,
    }])
}

/// The Milvus Helm values for OSS through RRSA: `externalS3` with `cloudProvider: aliyun`,
/// `useIAM`, virtual-host addressing (OSS refuses path style) and TLS on 443, no keys, no
/// MinIO; the ServiceAccount; a projected ServiceAccount token with audience
/// `sts.aliyuncs.com` on every Pod (global `volumes`/`volumeMounts`); and the RRSA variables in
/// every component's `extraEnv`. No webhook is needed.
pub fn milvus_values(
    service_account: &str,
    bucket: &str,
    root_path: &str,
    region: &str,
    host: &str,
    rrsa: Option<(&str, &str)>,
) -> Value {
    let mut values = json!({
        "serviceAccount": {"create": false, "name": service_account},
        "minio": {"enabled": false},
        "externalS3": {
            "enabled": true,
            "host": host,
            "port": "443",
            "useSSL": true,
            "bucketName": bucket,
            "rootPath": root_path,
            "useIAM": true,
            "cloudProvider": "aliyun",
            "iamEndpoint": "",
            "region": region,
            "useVirtualHost": true,
            "accessKey": "",
            "secretKey": "",
        },
    });
    if let Some((role_arn, provider_arn)) = rrsa {
        values["volumes"] = rrsa_volumes();
        values["volumeMounts"] = rrsa_volume_mounts();
        for component in CHART_COMPONENTS {
            values[*component] = json!({"extraEnv": rrsa_env(role_arn, provider_arn)});
        }
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::documents::{documents_equivalent, statements, string_list};

    const ACCOUNT: &str = "1234567890123456";

    fn grants(doc: &Value) -> Vec<(String, String)> {
        let mut out = vec![];
        for statement in statements(doc) {
            assert_eq!(statement["Effect"], "Allow", "{statement}");
            for action in string_list(&statement["Action"]) {
                assert!(!action.contains('*'), "wildcard action {action}");
                for resource in string_list(&statement["Resource"]) {
                    assert!(!resource.ends_with(":*") && resource != "*", "{resource}");
                    out.push((action.clone(), resource));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn read_write_grants_bucket_actions_on_the_bucket_and_object_actions_on_its_objects() {
        let doc = permission_policy(ACCOUNT, "milvus-data", Access::ReadWrite, None);
        let bucket = format!("acs:oss:*:{ACCOUNT}:milvus-data");
        let objects = format!("{bucket}/*");
        let mut want: Vec<(String, String)> = BUCKET_ACTIONS
            .iter()
            .map(|a| (a.to_string(), bucket.clone()))
            .chain(
                READ_WRITE_OBJECT_ACTIONS
                    .iter()
                    .map(|a| (a.to_string(), objects.clone())),
            )
            .collect();
        want.sort();
        assert_eq!(grants(&doc), want);
        assert_eq!(doc["Version"], "1");
    }

    #[test]
    fn read_only_reads_objects_and_kms_only_with_a_key() {
        let key = "acs:kms:cn-hangzhou:1234567890123456:key/key-hzz1";
        let doc = permission_policy(ACCOUNT, "b", Access::ReadOnly, Some(key));
        let g = grants(&doc);
        assert!(g.contains(&("oss:GetObject".into(), format!("acs:oss:*:{ACCOUNT}:b/*"))));
        assert!(
            !g.iter()
                .any(|(a, _)| a == "oss:PutObject" || a == "oss:DeleteObject")
        );
        assert!(g.contains(&("kms:Decrypt".into(), key.into())));
        assert!(!g.iter().any(|(a, _)| a == "kms:GenerateDataKey"));
        let without = permission_policy(ACCOUNT, "b", Access::ReadWrite, None);
        assert!(!grants(&without).iter().any(|(a, _)| a.starts_with("kms:")));
    }

    #[test]
    fn cross_account_grants_what_the_managed_service_lists_and_no_delete() {
        let g = grants(&cross_account_policy(ACCOUNT, "b", Access::ReadWrite, None));
        let actions: Vec<&str> = g.iter().map(|(a, _)| a.as_str()).collect();
        for needed in [
            "oss:ListObjects",
            "oss:GetBucketLocation",
            "oss:GetObject",
            "oss:PutObject",
        ] {
            assert!(actions.contains(&needed), "{needed}: {actions:?}");
        }
        assert!(!actions.contains(&"oss:DeleteObject"));
    }

    #[test]
    fn rrsa_trust_names_exactly_one_service_account_issuer_and_audience() {
        let provider = format!("acs:ram::{ACCOUNT}:oidc-provider/ack-rrsa-c1");
        let doc = rrsa_trust(
            &provider,
            "https://oidc-ack-cn-hangzhou.oss-cn-hangzhou.aliyuncs.com/c1",
            "milvus",
            "sa",
        );
        let statement = &statements(&doc)[0];
        assert_eq!(statement["Principal"]["Federated"], json!([provider]));
        assert_eq!(statement["Action"], "sts:AssumeRole");
        let equals = &statement["Condition"]["StringEquals"];
        assert_eq!(equals["oidc:sub"], "system:serviceaccount:milvus:sa");
        assert_eq!(equals["oidc:aud"], "sts.aliyuncs.com");
        assert_eq!(
            equals["oidc:iss"],
            "https://oidc-ack-cn-hangzhou.oss-cn-hangzhou.aliyuncs.com/c1"
        );
        assert_eq!(statement["Condition"].as_object().map(|c| c.len()), Some(1));
    }

    #[test]
    fn cross_account_trust_needs_the_external_id() {
        let doc = cross_account_trust("5555555555555555", "ext-123");
        let statement = &statements(&doc)[0];
        assert_eq!(
            statement["Principal"]["RAM"],
            json!(["acs:ram::5555555555555555:root"])
        );
        assert_eq!(
            statement["Condition"]["StringEquals"]["sts:ExternalId"],
            "ext-123"
        );
    }

    #[test]
    fn the_bucket_policy_denies_plain_http_and_grants_nothing() {
        let doc = bucket_policy(ACCOUNT, "b");
        for statement in statements(&doc) {
            assert_eq!(statement["Effect"], "Deny");
            assert_eq!(
                statement["Condition"]["Bool"]["acs:SecureTransport"],
                json!(["false"])
            );
        }
    }

    #[test]
    fn documents_compare_semantically_as_ram_returns_them() {
        // RAM answers with the document as a JSON string, keys reordered, lists for scalars.
        let ours = rrsa_trust("acs:ram::1:oidc-provider/p", "https://i", "ns", "sa");
        let returned: Value = serde_json::from_str(
            r#"{"Statement":[{"Condition":{"StringEquals":{"oidc:sub":["system:serviceaccount:ns:sa"],
                "oidc:aud":"sts.aliyuncs.com","oidc:iss":"https://i"}},"Principal":{"Federated":"acs:ram::1:oidc-provider/p"},
                "Effect":"Allow","Action":["sts:AssumeRole"]}],"Version":"1"}"#,
        )
        .expect("json");
        assert!(documents_equivalent(&ours, &returned));
        let other = rrsa_trust("acs:ram::1:oidc-provider/p", "https://i", "ns", "other");
        assert!(!documents_equivalent(&ours, &other));
        let policy = bucket_policy(ACCOUNT, "b");
        let mut scalar = policy.clone();
        scalar["Statement"][0]["Principal"] = json!("*");
        assert!(documents_equivalent(&policy, &scalar));
    }

    #[test]
    fn values_wire_oss_through_rrsa_on_every_component_with_no_keys() {
        let v = milvus_values(
            "milvus",
            "b",
            "files",
            "cn-hangzhou",
            "oss-cn-hangzhou.aliyuncs.com",
            Some(("acs:ram::1:role/r", "acs:ram::1:oidc-provider/p")),
        );
        let s3 = &v["externalS3"];
        assert_eq!(s3["cloudProvider"], "aliyun");
        assert_eq!(s3["useVirtualHost"], true);
        assert_eq!(s3["useIAM"], true);
        assert_eq!(
            (s3["accessKey"].as_str(), s3["secretKey"].as_str()),
            (Some(""), Some(""))
        );
        assert_eq!(
            v["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]["audience"],
            "sts.aliyuncs.com"
        );
        for component in CHART_COMPONENTS {
            let env = &v[*component]["extraEnv"];
            assert_eq!(env[0]["value"], "acs:ram::1:role/r", "{component}");
            assert_eq!(env[2]["value"], format!("{RRSA_TOKEN_DIR}/token"));
        }
        let plain = milvus_values(
            "milvus",
            "b",
            "files",
            "cn-hangzhou",
            "oss-cn-hangzhou.aliyuncs.com",
            None,
        );
        assert!(plain.get("volumes").is_none() && plain.get("standalone").is_none());
    }
}
