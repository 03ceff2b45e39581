//! Pure documents: the IAM permission policy, the IRSA trust policy, the bucket policy, the
//! Milvus Helm values and the ownership tags; plus semantic comparison of IAM documents, so
//! that statement order, string-vs-list and IAM's URL encoding never cause churn.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use crate::api::Access;
use crate::naming::{Partition, issuer_host_path};

pub const POLICY_VERSION: &str = "2012-10-17";
/// The audience IRSA tokens carry and the trust policy requires.
pub const STS_AUDIENCE: &str = "sts.amazonaws.com";
/// The ServiceAccount annotation EKS's pod identity webhook reads.
pub const ROLE_ARN_ANNOTATION: &str = "eks.amazonaws.com/role-arn";

/// The KMS key of a bucket with SSE-KMS, and how S3 names the bucket when it asks KMS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketKms<'a> {
    pub key_arn: &'a str,
    /// The bucket's region: the key is granted only for use by S3 there (`kms:ViaService`).
    pub region: &'a str,
    pub context: KmsContext,
}

/// The `aws:s3:arn` encryption context S3 sends to KMS for the bucket's objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KmsContext {
    /// S3 Bucket Keys, which bucketwire turns on for every bucket it creates with SSE-KMS: the
    /// context is the bucket's ARN.
    BucketKey,
    /// A bucket bucketwire did not configure (adopted): its objects may have been written with
    /// or without a bucket key, so the context is the bucket's ARN or one of its objects' ARNs.
    BucketOrObjects,
}

/// The least-privilege permission policy for one bucket: bucket-level actions on the bucket
/// ARN, object actions on `bucket/*`, and the KMS key only when the bucket uses SSE-KMS (and
/// then only through S3 in the bucket's region, for this bucket's encryption context).
pub fn permission_policy(
    partition: Partition,
    bucket: &str,
    access: Access,
    kms: Option<BucketKms<'_>>,
) -> Value {
    let object_actions: &[&str] = match access {
        Access::ReadWrite => &[
            "s3:AbortMultipartUpload",
            "s3:DeleteObject",
            "s3:GetObject",
            "s3:ListMultipartUploadParts",
            "s3:PutObject",
        ],
        Access::ReadOnly => &["s3:GetObject"],
    };
    // Reading SSE-KMS objects needs Decrypt; writing them also needs GenerateDataKey.
    let kms_actions: &[&str] = match access {
        Access::ReadWrite => &["kms:Decrypt", "kms:GenerateDataKey"],
        Access::ReadOnly => &["kms:Decrypt"],
    };
    bucket_access_policy(
        partition,
        bucket,
        object_actions,
        kms.map(|kms| (kms_actions, kms)),
    )
}

/// The shape both permission policies share: `s3:GetBucketLocation` and `s3:ListBucket` on the
/// bucket, `object_actions` on its objects, and the KMS actions on the key when there is one.
fn bucket_access_policy(
    partition: Partition,
    bucket: &str,
    object_actions: &[&str],
    kms: Option<(&[&str], BucketKms<'_>)>,
) -> Value {
    let bucket_arn = format!("arn:{}:s3:::{bucket}", partition.id());
    let mut statements = vec![
        json!({
            "Sid": "BucketLevel",
            "Effect": "Allow",
            "Action": ["s3:GetBucketLocation", "s3:ListBucket"],
            "Resource": bucket_arn,
        }),
        json!({
            "Sid": "ObjectLevel",
            "Effect": "Allow",
            "Action": object_actions,
            "Resource": format!("{bucket_arn}/*"),
        }),
    ];
    if let Some((actions, kms)) = kms {
        statements.push(json!({
            "Sid": "BucketKey",
            "Effect": "Allow",
            "Action": actions,
            "Resource": kms.key_arn,
            "Condition": kms_conditions(&bucket_arn, kms),
        }));
    }
    json!({"Version": POLICY_VERSION, "Statement": statements})
}

/// The two conditions of a KMS grant: only S3 of the bucket's region may use the key on the
/// role's behalf (`kms:ViaService`), and only for this bucket's objects (the `aws:s3:arn`
/// encryption context S3 sends): the key cannot decrypt anything else for this role, even data
/// of another bucket or service encrypted under the same key.
fn kms_conditions(bucket_arn: &str, kms: BucketKms<'_>) -> Value {
    let via = crate::naming::s3_host(kms.region);
    match kms.context {
        KmsContext::BucketKey => json!({"StringEquals": {
            "kms:ViaService": via,
            KMS_CONTEXT_KEY: bucket_arn,
        }}),
        KmsContext::BucketOrObjects => json!({
            "StringEquals": {"kms:ViaService": via},
            "StringLike": {KMS_CONTEXT_KEY: [bucket_arn, format!("{bucket_arn}/*")]},
        }),
    }
}

/// The encryption-context key S3 names the bucket (or object) with.
pub const KMS_CONTEXT_KEY: &str = "kms:EncryptionContext:aws:s3:arn";

/// The IRSA trust policy: exactly one ServiceAccount, with the STS audience, through the
/// cluster's IAM OIDC provider.
pub fn trust_policy(provider_arn: &str, issuer: &str, namespace: &str, service_account: &str) -> Value {
    let host_path = issuer_host_path(issuer);
    json!({
        "Version": POLICY_VERSION,
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                format!("{host_path}:sub"): format!("system:serviceaccount:{namespace}:{service_account}"),
                format!("{host_path}:aud"): STS_AUDIENCE,
            }},
        }],
    })
}

/// The service principal EKS Pod Identity assumes roles as.
pub const POD_IDENTITY_PRINCIPAL: &str = "pods.eks.amazonaws.com";
/// The audience of the ServiceAccount token the EKS Pod Identity Agent presents.
pub const POD_IDENTITY_AUDIENCE: &str = "pods.eks.amazonaws.com";

/// The EKS Pod Identity trust policy. AWS's guide trusts `pods.eks.amazonaws.com` with no
/// condition, so any association in the account could use the role; here the session tags EKS
/// sets on every Pod Identity session limit it to exactly this cluster, namespace and
/// ServiceAccount. `sts:TagSession` is required: EKS always tags the session.
pub fn pod_identity_trust(cluster_arn: &str, namespace: &str, service_account: &str) -> Value {
    json!({
        "Version": POLICY_VERSION,
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": POD_IDENTITY_PRINCIPAL},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
            "Condition": {"StringEquals": {
                "aws:RequestTag/eks-cluster-arn": cluster_arn,
                "aws:RequestTag/kubernetes-namespace": namespace,
                "aws:RequestTag/kubernetes-service-account": service_account,
            }},
        }],
    })
}

/// The permission policy of a cross-account role, as the managed service's documents list it:
/// `s3:ListBucket` and `s3:GetBucketLocation` on the bucket, `s3:GetObject` and `s3:PutObject`
/// on its objects (ReadOnly: `s3:GetObject`), and `kms:GenerateDataKey` on the key with SSE-KMS
/// (ReadOnly: `kms:Decrypt`, which reading needs), with the same two conditions as
/// [`permission_policy`]'s.
pub fn cross_account_policy(
    partition: Partition,
    bucket: &str,
    access: Access,
    kms: Option<BucketKms<'_>>,
) -> Value {
    let (object_actions, kms_actions): (&[&str], &[&str]) = match access {
        Access::ReadWrite => (&["s3:GetObject", "s3:PutObject"], &["kms:GenerateDataKey"]),
        Access::ReadOnly => (&["s3:GetObject"], &["kms:Decrypt"]),
    };
    bucket_access_policy(
        partition,
        bucket,
        object_actions,
        kms.map(|kms| (kms_actions, kms)),
    )
}

/// The cross-account trust policy: exactly one account's root, `sts:AssumeRole`, and only with
/// the external ID.
pub fn cross_account_trust(partition: Partition, account: &str, external_id: &str) -> Value {
    json!({
        "Version": POLICY_VERSION,
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": format!("arn:{}:iam::{account}:root", partition.id())},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": external_id}},
        }],
    })
}

/// A random external ID: 40 characters of [A-Za-z0-9], from the operating system's generator.
pub fn generate_external_id() -> Result<String, getrandom::Error> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(40);
    let mut buf = [0u8; 64];
    while out.len() < 40 {
        getrandom::fill(&mut buf)?;
        // 248 = 4 * 62: reject the rest so every character is equally likely.
        for b in buf.iter().filter(|b| **b < 248) {
            if out.len() == 40 {
                break;
            }
            out.push(ALPHABET[usize::from(*b) % ALPHABET.len()] as char);
        }
    }
    Ok(out)
}

/// The bucket policy: refuse every request that does not use TLS. A Deny for every principal
/// and action is the point here; it grants nothing.
pub fn bucket_policy(partition: Partition, bucket: &str) -> Value {
    let bucket_arn = format!("arn:{}:s3:::{bucket}", partition.id());
    json!({
        "Version": POLICY_VERSION,
        "Statement": [{
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [bucket_arn.clone(), format!("{bucket_arn}/*")],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }],
    })
}

/// Tags on every AWS resource the operator creates; the uid tag is what ownership checks use.
pub fn ownership_tags(
    cluster: &str,
    namespace: &str,
    name: &str,
    uid: &str,
    extra: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut tags = extra.clone();
    tags.insert(TAG_MANAGED_BY.into(), "bucketwire".into());
    tags.insert(TAG_CLUSTER.into(), cluster.into());
    tags.insert(TAG_NAMESPACE.into(), namespace.into());
    tags.insert(TAG_NAME.into(), name.into());
    tags.insert(TAG_UID.into(), uid.into());
    tags
}

/// The prefix of every tag key bucketwire owns.
pub const TAG_PREFIX: &str = "bucketwire.io/";
pub const TAG_MANAGED_BY: &str = "bucketwire.io/managed-by";
pub const TAG_CLUSTER: &str = "bucketwire.io/cluster";
pub const TAG_NAMESPACE: &str = "bucketwire.io/namespace";
pub const TAG_NAME: &str = "bucketwire.io/name";
pub const TAG_UID: &str = "bucketwire.io/uid";
/// On a bucket the integration adopted (`bucket.create: false`): never managed, never deleted.
pub const TAG_ADOPTED: &str = "bucketwire.io/adopted";

/// Milvus Helm values (chart >= 4.2.2): external S3 through IAM, no MinIO, no keys.
#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MilvusValues {
    pub service_account: ValuesServiceAccount,
    pub minio: ValuesMinio,
    #[serde(rename = "externalS3")]
    pub external_s3: ValuesExternalS3,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct ValuesServiceAccount {
    pub create: bool,
    pub name: String,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct ValuesMinio {
    pub enabled: bool,
}

#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ValuesExternalS3 {
    pub enabled: bool,
    pub host: String,
    pub port: String,
    #[serde(rename = "useSSL")]
    pub use_ssl: bool,
    pub bucket_name: String,
    pub root_path: String,
    #[serde(rename = "useIAM")]
    pub use_iam: bool,
    pub cloud_provider: String,
    pub iam_endpoint: String,
    pub region: String,
    pub use_virtual_host: bool,
    pub access_key: String,
    pub secret_key: String,
}

pub fn milvus_values(service_account: &str, bucket: &str, root_path: &str, region: &str) -> MilvusValues {
    MilvusValues {
        service_account: ValuesServiceAccount {
            create: false,
            name: service_account.into(),
        },
        minio: ValuesMinio { enabled: false },
        external_s3: ValuesExternalS3 {
            enabled: true,
            host: crate::naming::s3_host(region),
            port: "443".into(),
            use_ssl: true,
            bucket_name: bucket.into(),
            root_path: root_path.into(),
            use_iam: true,
            cloud_provider: "aws".into(),
            iam_endpoint: String::new(),
            region: region.into(),
            use_virtual_host: false,
            access_key: String::new(),
            secret_key: String::new(),
        },
    }
}

pub fn render_values(values: &MilvusValues) -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(values)
}

/// Parses an IAM document as IAM returns it: plain JSON, or URL-encoded JSON.
pub fn parse_document(text: &str) -> Option<Value> {
    if let Ok(v) = serde_json::from_str(text) {
        return Some(v);
    }
    let decoded = percent_encoding::percent_decode_str(text).decode_utf8().ok()?;
    serde_json::from_str(&decoded).ok()
}

/// True when two IAM documents grant the same thing: statement order, `Sid`s, string vs
/// one-element list, and the order inside lists do not matter.
pub fn documents_equivalent(a: &Value, b: &Value) -> bool {
    canonical(a) == canonical(b)
}

/// A canonical form of an IAM policy document.
pub fn canonical(doc: &Value) -> Value {
    let version = doc.get("Version").cloned().unwrap_or(Value::Null);
    let mut canonical_statements: Vec<Value> = statements(doc).iter().map(canonical_statement).collect();
    canonical_statements.sort_by_key(|s| s.to_string());
    canonical_statements.dedup();
    json!({"Version": version, "Statement": canonical_statements})
}

/// The statements of a policy document; IAM allows a single statement object too.
pub fn statements(doc: &Value) -> Vec<Value> {
    match doc.get("Statement") {
        Some(Value::Array(list)) => list.clone(),
        Some(single @ Value::Object(_)) => vec![single.clone()],
        _ => vec![],
    }
}

/// A policy element (or JWT claim) that may be one string or a list of strings, as a list.
pub fn string_list(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(list) => list
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => vec![],
    }
}

fn canonical_statement(statement: &Value) -> Value {
    let Value::Object(fields) = statement else {
        return statement.clone();
    };
    let mut out = serde_json::Map::new();
    for (key, value) in fields {
        let value = match key.as_str() {
            "Sid" => continue,
            "Action" | "NotAction" | "Resource" | "NotResource" => string_set(value),
            "Principal" | "NotPrincipal" => match value {
                Value::Object(map) => {
                    Value::Object(map.iter().map(|(k, v)| (k.clone(), string_set(v))).collect())
                }
                // "*" and OSS bucket policies' ["*"] are the same principal.
                other => string_set(other),
            },
            "Condition" => match value {
                Value::Object(operators) => Value::Object(
                    operators
                        .iter()
                        .map(|(op, keys)| {
                            let keys = match keys {
                                Value::Object(k) => Value::Object(
                                    k.iter().map(|(ck, cv)| (ck.clone(), string_set(cv))).collect(),
                                ),
                                other => other.clone(),
                            };
                            (op.clone(), keys)
                        })
                        .collect(),
                ),
                other => other.clone(),
            },
            _ => value.clone(),
        };
        out.insert(key.clone(), value);
    }
    Value::Object(out)
}

/// A string or list of strings (or booleans/numbers, which IAM treats as strings) as a sorted,
/// de-duplicated list of strings.
fn string_set(value: &Value) -> Value {
    let mut items: Vec<String> = match value {
        Value::Array(list) => list.iter().map(scalar_string).collect(),
        other => vec![scalar_string(other)],
    };
    items.sort();
    items.dedup();
    Value::Array(items.into_iter().map(Value::String).collect())
}

fn scalar_string(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actions_on(doc: &Value, resource: &str) -> Vec<String> {
        let mut out = vec![];
        for s in doc["Statement"].as_array().expect("statements") {
            let resources = string_set(&s["Resource"]);
            if resources.as_array().expect("list").iter().any(|r| r == resource) {
                out.extend(
                    string_set(&s["Action"])
                        .as_array()
                        .expect("list")
                        .iter()
                        .map(|a| a.as_str().unwrap_or_default().to_string()),
                );
            }
        }
        out.sort();
        out
    }

    #[test]
    fn read_write_policy_scopes_each_action_to_its_resource_type() {
        let doc = permission_policy(Partition::Aws, "milvus-data", Access::ReadWrite, None);
        assert_eq!(
            actions_on(&doc, "arn:aws:s3:::milvus-data"),
            ["s3:GetBucketLocation", "s3:ListBucket"]
        );
        assert_eq!(
            actions_on(&doc, "arn:aws:s3:::milvus-data/*"),
            [
                "s3:AbortMultipartUpload",
                "s3:DeleteObject",
                "s3:GetObject",
                "s3:ListMultipartUploadParts",
                "s3:PutObject"
            ]
        );
        assert_eq!(
            doc["Statement"].as_array().map(Vec::len),
            Some(2),
            "no KMS statement without SSE-KMS"
        );
        let text = doc.to_string();
        assert!(
            !text.contains("s3:*") && !text.contains("\"*\"") && !text.contains(":::*"),
            "no wildcards: {text}"
        );
    }

    #[test]
    fn read_only_policy_only_reads_objects() {
        let doc = permission_policy(
            Partition::Aws,
            "b",
            Access::ReadOnly,
            Some(BucketKms {
                key_arn: "arn:aws:kms:us-east-2:123456789012:key/k",
                region: "us-east-2",
                context: KmsContext::BucketKey,
            }),
        );
        assert_eq!(actions_on(&doc, "arn:aws:s3:::b/*"), ["s3:GetObject"]);
        assert_eq!(
            actions_on(&doc, "arn:aws:kms:us-east-2:123456789012:key/k"),
            ["kms:Decrypt"]
        );
    }

    #[test]
    fn sse_kms_adds_exactly_one_key_statement() {
        let key = "arn:aws-cn:kms:cn-north-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let kms = BucketKms {
            key_arn: key,
            region: "cn-north-1",
            context: KmsContext::BucketKey,
        };
        let doc = permission_policy(Partition::AwsCn, "b", Access::ReadWrite, Some(kms));
        assert_eq!(actions_on(&doc, key), ["kms:Decrypt", "kms:GenerateDataKey"]);
        assert_eq!(
            actions_on(&doc, "arn:aws-cn:s3:::b"),
            ["s3:GetBucketLocation", "s3:ListBucket"]
        );
    }

    fn kms_statement(doc: &Value) -> Value {
        let found: Vec<&Value> = doc["Statement"]
            .as_array()
            .expect("statements")
            .iter()
            .filter(|s| string_list(&s["Action"]).iter().any(|a| a.starts_with("kms:")))
            .collect();
        assert_eq!(found.len(), 1, "one KMS statement: {doc}");
        found[0].clone()
    }

    #[test]
    fn a_key_is_granted_only_through_s3_of_the_region_for_this_bucket() {
        let kms = BucketKms {
            key_arn: "arn:aws:kms:us-east-2:123456789012:key/k",
            region: "us-east-2",
            context: KmsContext::BucketKey,
        };
        for doc in [
            permission_policy(Partition::Aws, "b", Access::ReadWrite, Some(kms)),
            permission_policy(Partition::Aws, "b", Access::ReadOnly, Some(kms)),
            cross_account_policy(Partition::Aws, "b", Access::ReadWrite, Some(kms)),
            cross_account_policy(Partition::Aws, "b", Access::ReadOnly, Some(kms)),
        ] {
            assert_eq!(
                kms_statement(&doc)["Condition"],
                json!({"StringEquals": {
                    "kms:ViaService": "s3.us-east-2.amazonaws.com",
                    "kms:EncryptionContext:aws:s3:arn": "arn:aws:s3:::b",
                }})
            );
        }
        let china = BucketKms {
            key_arn: "arn:aws-cn:kms:cn-north-1:123456789012:key/k",
            region: "cn-north-1",
            context: KmsContext::BucketKey,
        };
        let doc = permission_policy(Partition::AwsCn, "b", Access::ReadWrite, Some(china));
        assert_eq!(
            kms_statement(&doc)["Condition"],
            json!({"StringEquals": {
                "kms:ViaService": "s3.cn-north-1.amazonaws.com.cn",
                "kms:EncryptionContext:aws:s3:arn": "arn:aws-cn:s3:::b",
            }})
        );
    }

    #[test]
    fn an_adopted_buckets_key_also_covers_objects_written_without_a_bucket_key() {
        let kms = BucketKms {
            key_arn: "arn:aws:kms:us-east-2:123456789012:key/k",
            region: "us-east-2",
            context: KmsContext::BucketOrObjects,
        };
        let doc = permission_policy(Partition::Aws, "b", Access::ReadWrite, Some(kms));
        assert_eq!(
            kms_statement(&doc)["Condition"],
            json!({
                "StringEquals": {"kms:ViaService": "s3.us-east-2.amazonaws.com"},
                "StringLike": {"kms:EncryptionContext:aws:s3:arn": ["arn:aws:s3:::b", "arn:aws:s3:::b/*"]},
            })
        );
        // Different grants compare different: a change of context is repaired as drift.
        let created = permission_policy(
            Partition::Aws,
            "b",
            Access::ReadWrite,
            Some(BucketKms {
                context: KmsContext::BucketKey,
                ..kms
            }),
        );
        assert!(!documents_equivalent(&doc, &created));
        let unconditioned = {
            let mut d = created.clone();
            if let Some(list) = d["Statement"].as_array_mut() {
                for st in list {
                    if let Some(map) = st.as_object_mut() {
                        map.remove("Condition");
                    }
                }
            }
            d
        };
        assert!(!documents_equivalent(&created, &unconditioned));
    }

    #[test]
    fn trust_policy_names_exactly_one_service_account_and_the_sts_audience() {
        let provider = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-2.amazonaws.com/id/ABC";
        let doc = trust_policy(
            provider,
            "https://oidc.eks.us-east-2.amazonaws.com/id/ABC",
            "milvus",
            "milvus-sa",
        );
        let expected: Value = serde_json::from_str(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
                "Principal":{"Federated":"arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-2.amazonaws.com/id/ABC"},
                "Action":"sts:AssumeRoleWithWebIdentity",
                "Condition":{"StringEquals":{
                  "oidc.eks.us-east-2.amazonaws.com/id/ABC:sub":"system:serviceaccount:milvus:milvus-sa",
                  "oidc.eks.us-east-2.amazonaws.com/id/ABC:aud":"sts.amazonaws.com"}}}]}"#,
        )
        .expect("fixture");
        assert_eq!(doc, expected);
        assert!(!doc.to_string().contains('*'));
    }

    #[test]
    fn bucket_policy_denies_plain_http() {
        let doc = bucket_policy(Partition::AwsUsGov, "b");
        let s = &doc["Statement"][0];
        assert_eq!(s["Effect"], "Deny");
        assert_eq!(s["Condition"]["Bool"]["aws:SecureTransport"], "false");
        assert_eq!(
            s["Resource"],
            json!(["arn:aws-us-gov:s3:::b", "arn:aws-us-gov:s3:::b/*"])
        );
    }

    #[test]
    fn semantic_equality_ignores_order_sids_and_string_vs_list() {
        let ours = permission_policy(Partition::Aws, "b", Access::ReadWrite, None);
        let theirs: Value = serde_json::from_str(
            r#"{"Version":"2012-10-17","Statement":[
                {"Effect":"Allow","Resource":["arn:aws:s3:::b/*"],
                 "Action":["s3:PutObject","s3:GetObject","s3:DeleteObject","s3:ListMultipartUploadParts","s3:AbortMultipartUpload"]},
                {"Sid":"Other","Effect":"Allow","Action":["s3:ListBucket","s3:GetBucketLocation"],"Resource":"arn:aws:s3:::b"}]}"#,
        )
        .expect("fixture");
        assert!(documents_equivalent(&ours, &theirs));
    }

    #[test]
    fn semantic_equality_notices_real_differences() {
        let ours = permission_policy(Partition::Aws, "b", Access::ReadWrite, None);
        let fewer = permission_policy(Partition::Aws, "b", Access::ReadOnly, None);
        assert!(!documents_equivalent(&ours, &fewer));
        let mut wider = ours.clone();
        wider["Statement"][1]["Resource"] = json!("*");
        assert!(!documents_equivalent(&ours, &wider));
        let t1 = trust_policy("p", "https://i", "ns", "a");
        let t2 = trust_policy("p", "https://i", "ns", "b");
        assert!(!documents_equivalent(&t1, &t2));
    }

    #[test]
    fn url_encoded_documents_as_iam_returns_them_are_understood() {
        let ours = trust_policy(
            "arn:aws:iam::1:oidc-provider/i/id/X",
            "https://i/id/X",
            "ns",
            "sa",
        );
        let encoded: String =
            percent_encoding::utf8_percent_encode(&ours.to_string(), percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        assert!(encoded.starts_with("%7B"));
        let parsed = parse_document(&encoded).expect("decodes");
        assert!(documents_equivalent(&ours, &parsed));
        assert!(documents_equivalent(
            &ours,
            &parse_document(&ours.to_string()).expect("plain")
        ));
    }

    #[test]
    fn values_have_exactly_the_documented_keys() {
        let yaml =
            render_values(&milvus_values("milvus-sa", "bucket-1", "files", "cn-north-1")).expect("renders");
        let expected = r#"serviceAccount:
  create: false
  name: milvus-sa
minio:
  enabled: false
externalS3:
  enabled: true
  host: s3.cn-north-1.amazonaws.com.cn
  port: '443'
  useSSL: true
  bucketName: bucket-1
  rootPath: files
  useIAM: true
  cloudProvider: aws
  iamEndpoint: ''
  region: cn-north-1
  useVirtualHost: false
  accessKey: ''
  secretKey: ''
"#;
        assert_eq!(yaml, expected);
    }

    #[test]
    fn cross_account_policy_has_exactly_the_documented_actions() {
        let key = "arn:aws:kms:us-east-2:123456789012:key/k";
        let kms = BucketKms {
            key_arn: key,
            region: "us-east-2",
            context: KmsContext::BucketKey,
        };
        let doc = cross_account_policy(Partition::Aws, "b", Access::ReadWrite, Some(kms));
        assert_eq!(
            actions_on(&doc, "arn:aws:s3:::b"),
            ["s3:GetBucketLocation", "s3:ListBucket"]
        );
        assert_eq!(
            actions_on(&doc, "arn:aws:s3:::b/*"),
            ["s3:GetObject", "s3:PutObject"]
        );
        assert_eq!(actions_on(&doc, key), ["kms:GenerateDataKey"]);
        let plain = cross_account_policy(Partition::AwsCn, "b", Access::ReadWrite, None);
        assert_eq!(plain["Statement"].as_array().map(Vec::len), Some(2));
        assert_eq!(
            actions_on(&plain, "arn:aws-cn:s3:::b"),
            ["s3:GetBucketLocation", "s3:ListBucket"]
        );
    }

    #[test]
    fn cross_account_trust_names_one_account_and_requires_the_external_id() {
        let doc = cross_account_trust(Partition::AwsCn, "999988887777", "ext-1");
        let expected: Value = serde_json::from_str(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
                "Principal":{"AWS":"arn:aws-cn:iam::999988887777:root"},"Action":"sts:AssumeRole",
                "Condition":{"StringEquals":{"sts:ExternalId":"ext-1"}}}]}"#,
        )
        .expect("fixture");
        assert_eq!(doc, expected);
    }

    #[test]
    fn pod_identity_trust_limits_the_eks_service_to_one_cluster_namespace_and_service_account() {
        let doc = pod_identity_trust(
            "arn:aws:eks:us-east-2:123456789012:cluster/prod",
            "milvus",
            "milvus-sa",
        );
        let expected: Value = serde_json::from_str(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
                "Principal":{"Service":"pods.eks.amazonaws.com"},
                "Action":["sts:AssumeRole","sts:TagSession"],
                "Condition":{"StringEquals":{
                  "aws:RequestTag/eks-cluster-arn":"arn:aws:eks:us-east-2:123456789012:cluster/prod",
                  "aws:RequestTag/kubernetes-namespace":"milvus",
                  "aws:RequestTag/kubernetes-service-account":"milvus-sa"}}}]}"#,
        )
        .expect("fixture");
        assert_eq!(doc, expected);
    }

    #[test]
    fn generated_external_ids_are_long_random_and_valid() {
        let a = generate_external_id().expect("random");
        let b = generate_external_id().expect("random");
        assert_eq!(a.len(), 40);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn ownership_tags_cannot_be_overridden_by_extra_tags() {
        let mut extra = BTreeMap::new();
        extra.insert("team".to_string(), "search".to_string());
        extra.insert(TAG_UID.to_string(), "forged".to_string());
        let tags = ownership_tags("c", "ns", "n", "uid-1", &extra);
        assert_eq!(tags[TAG_UID], "uid-1");
        assert_eq!(tags["team"], "search");
        assert_eq!(tags[TAG_MANAGED_BY], "bucketwire");
    }
}
