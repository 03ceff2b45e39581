//! AWS SDK clients against the test bed's emulator, for checking what the operator did
//! independently of the operator's own view.

use aws_config::{BehaviorVersion, Region};

use super::TestBed;

/// SDK configuration for the test bed's emulator, signed as its administrator, in `region`.
pub async fn sdk_config(bed: &TestBed, region: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            bed.var("AWS_ACCESS_KEY_ID"),
            bed.var("AWS_SECRET_ACCESS_KEY"),
            None,
            None,
            "testbed",
        ))
        .endpoint_url(bed.var("BUCKETWIRE_AWS_ENDPOINT_URL"))
        .load()
        .await
}

async fn base(bed: &TestBed) -> aws_config::SdkConfig {
    sdk_config(bed, bed.var("AWS_REGION")).await
}

pub async fn s3(bed: &TestBed, region: &str) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(&base(bed).await)
        .region(Region::new(region.to_string()))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// IAM of the partition that `region` belongs to.
pub async fn iam(bed: &TestBed, region: &str) -> aws_sdk_iam::Client {
    let conf = aws_sdk_iam::config::Builder::from(&base(bed).await)
        .region(Region::new(region.to_string()))
        .build();
    aws_sdk_iam::Client::from_conf(conf)
}

/// The bucket's default encryption: (algorithm, KMS key).
pub async fn default_encryption(s3: &aws_sdk_s3::Client, bucket: &str) -> (String, Option<String>) {
    let out = s3
        .get_bucket_encryption()
        .bucket(bucket)
        .send()
        .await
        .expect("encryption");
    let rule = &out.server_side_encryption_configuration().expect("sse").rules()[0];
    let default = rule.apply_server_side_encryption_by_default().expect("default");
    (
        default.sse_algorithm().as_str().to_string(),
        default.kms_master_key_id().map(str::to_string),
    )
}

/// Creates a bucket out of band (as the administrator), in `region`.
pub async fn create_bucket(s3: &aws_sdk_s3::Client, name: &str, region: &str) {
    let mut req = s3.create_bucket().bucket(name);
    if region != "us-east-1" {
        req = req.create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(region))
                .build(),
        );
    }
    req.send().await.expect("bucket created out of band");
}

/// Replaces a bucket's tag set (as the administrator).
pub async fn tag_bucket(s3: &aws_sdk_s3::Client, bucket: &str, tags: &[(&str, &str)]) {
    let tags: Vec<_> = tags
        .iter()
        .map(|(k, v)| {
            aws_sdk_s3::types::Tag::builder()
                .key(*k)
                .value(*v)
                .build()
                .expect("tag")
        })
        .collect();
    let tagging = aws_sdk_s3::types::Tagging::builder()
        .set_tag_set(Some(tags))
        .build()
        .expect("tagging");
    s3.put_bucket_tagging()
        .bucket(bucket)
        .tagging(tagging)
        .send()
        .await
        .expect("tagged");
}

/// A bucket name of the test's own: `<namespace>-<suffix>`, within S3's 63 characters.
pub fn unique_bucket(ns: &str, suffix: &str) -> String {
    format!("{ns}-{suffix}")
        .chars()
        .take(63)
        .collect::<String>()
        .trim_end_matches('-')
        .to_string()
}

/// What carries the `bucketwire.io/uid` tag of each given integration, found by listing (as
/// the administrator) every bucket, role and policy whose name contains `name_part` (every name
/// the operator derives contains the integration's namespace) and reading their tags: a
/// duplicate under another name, or a leftover, shows here too.
#[derive(Debug, Default)]
pub struct Inventory {
    /// uid -> bucket names.
    pub buckets: std::collections::BTreeMap<String, Vec<String>>,
    /// uid -> role names.
    pub roles: std::collections::BTreeMap<String, Vec<String>>,
    /// uid -> policy ARNs.
    pub policies: std::collections::BTreeMap<String, Vec<String>>,
    /// policy ARN -> number of versions.
    pub policy_versions: std::collections::BTreeMap<String, usize>,
}

const UID_TAG: &str = "bucketwire.io/uid";

pub async fn inventory(
    bed: &TestBed,
    region: &str,
    name_part: &str,
    uids: &std::collections::BTreeSet<String>,
) -> Inventory {
    let mut found = Inventory::default();
    let s3 = s3(bed, region).await;
    let buckets = s3.list_buckets().send().await.expect("buckets");
    for bucket in buckets.buckets() {
        let name = bucket.name().unwrap_or_default();
        if !name.contains(name_part) {
            continue;
        }
        // Other tests delete their buckets concurrently: a vanished one is not ours.
        let Ok(tags) = s3.get_bucket_tagging().bucket(name).send().await else {
            continue;
        };
        if let Some(uid) = tags
            .tag_set()
            .iter()
            .find(|t| t.key() == UID_TAG)
            .map(|t| t.value())
            && uids.contains(uid)
        {
            found
                .buckets
                .entry(uid.to_string())
                .or_default()
                .push(name.to_string());
        }
    }
    let iam = iam(bed, region).await;
    let uid_of = |tags: &[aws_sdk_iam::types::Tag]| {
        tags.iter()
            .find(|t| t.key() == UID_TAG && uids.contains(t.value()))
            .map(|t| t.value().to_string())
    };
    let roles: Vec<_> = iam.list_roles().into_paginator().items().send().collect().await;
    for role in roles.into_iter().filter_map(Result::ok) {
        if !role.role_name().contains(name_part) {
            continue;
        }
        if let Ok(tags) = iam.list_role_tags().role_name(role.role_name()).send().await
            && let Some(uid) = uid_of(tags.tags())
        {
            found
                .roles
                .entry(uid)
                .or_default()
                .push(role.role_name().to_string());
        }
    }
    let policies: Vec<_> = iam
        .list_policies()
        .scope(aws_sdk_iam::types::PolicyScopeType::Local)
        .into_paginator()
        .items()
        .send()
        .collect()
        .await;
    for policy in policies.into_iter().filter_map(Result::ok) {
        let arn = policy.arn().unwrap_or_default().to_string();
        if !arn.contains(name_part) {
            continue;
        }
        if let Ok(tags) = iam.list_policy_tags().policy_arn(&arn).send().await
            && let Some(uid) = uid_of(tags.tags())
        {
            let versions = iam
                .list_policy_versions()
                .policy_arn(&arn)
                .send()
                .await
                .map(|v| v.versions().len())
                .unwrap_or(0);
            found.policy_versions.insert(arn.clone(), versions);
            found.policies.entry(uid).or_default().push(arn);
        }
    }
    found
}

/// Writes an object as the administrator.
pub async fn put_object(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &str) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(aws_sdk_s3::primitives::ByteStream::from(body.as_bytes().to_vec()))
        .send()
        .await
        .expect("object written");
}

/// An object's content, as the administrator; `None` when it is gone.
pub async fn get_object(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Option<String> {
    let out = s3.get_object().bucket(bucket).key(key).send().await.ok()?;
    let bytes = out.body.collect().await.ok()?.into_bytes();
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// The IAM role named by `role_arn` (or by its bare name).
pub async fn role(iam: &aws_sdk_iam::Client, role_arn: &str) -> aws_sdk_iam::types::Role {
    let name = role_arn.rsplit('/').next().expect("role name");
    iam.get_role()
        .role_name(name)
        .send()
        .await
        .expect("role")
        .role
        .expect("role")
}

/// A role's trust policy as IAM holds it.
pub async fn trust_of(iam: &aws_sdk_iam::Client, role_arn: &str) -> serde_json::Value {
    let role = role(iam, role_arn).await;
    bucketwire::documents::parse_document(role.assume_role_policy_document().expect("trust")).expect("json")
}

/// The default version of a managed policy as IAM holds it.
pub async fn policy_of(iam: &aws_sdk_iam::Client, policy_arn: &str) -> serde_json::Value {
    let policy = iam
        .get_policy()
        .policy_arn(policy_arn)
        .send()
        .await
        .expect("policy")
        .policy
        .expect("policy");
    let version = iam
        .get_policy_version()
        .policy_arn(policy_arn)
        .version_id(policy.default_version_id().expect("default"))
        .send()
        .await
        .expect("version");
    bucketwire::documents::parse_document(version.policy_version().and_then(|v| v.document()).expect("doc"))
        .expect("json")
}

/// One request the emulator answered, from its request log (tests/testbed/moto_launcher.py).
#[derive(Clone, Debug, serde::Deserialize)]
pub struct EmulatorRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    /// The `Action` of query-protocol services (IAM, STS); empty for S3 and REST services.
    pub action: String,
    /// The RoleName, PolicyArn or PolicyName an IAM request names (empty otherwise).
    #[serde(default)]
    pub target: String,
    #[serde(rename = "accessKey")]
    pub access_key: String,
    pub status: u16,
    /// The test bed's authorization decisions for this request (tests/testbed/authorization.py).
    #[serde(default)]
    pub decisions: Vec<Decision>,
}

/// One allow/deny decision of the IAM simulator, as the emulator logged it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Decision {
    pub action: String,
    pub resource: String,
    pub principal: String,
    /// `Allowed`, `ImplicitlyDenied` or `ExplicitlyDenied`.
    pub result: String,
}

impl EmulatorRequest {
    /// Whether the request names this bucket (path-style S3: `/<bucket>` or `/<bucket>/<key>`).
    pub fn is_for_bucket(&self, bucket: &str) -> bool {
        self.path == format!("/{bucket}") || self.path.starts_with(&format!("/{bucket}/"))
    }

    /// Whether the request could change something: S3 PUT/POST/DELETE, or an IAM/STS action
    /// other than Get*/List*/Describe* (AssumeRole* and GetCallerIdentity write nothing).
    pub fn is_write(&self) -> bool {
        if !self.action.is_empty() {
            let reads = ["Get", "List", "Describe", "AssumeRole", "Simulate"];
            return !reads.iter().any(|p| self.action.starts_with(p));
        }
        matches!(self.method.as_str(), "PUT" | "POST" | "DELETE")
    }
}

/// Every request the emulator has answered so far (all tests share the emulator: filter).
pub fn emulator_requests(bed: &TestBed) -> Vec<EmulatorRequest> {
    let text = std::fs::read_to_string(bed.var("BUCKETWIRE_TESTBED_REQUEST_LOG"))
        .expect("the emulator's request log reads");
    text.lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// The S3 requests that could change `bucket`, successful or not, from the emulator's own log.
pub fn bucket_writes(bed: &TestBed, bucket: &str) -> Vec<EmulatorRequest> {
    emulator_requests(bed)
        .into_iter()
        .filter(|r| r.is_for_bucket(bucket) && r.is_write())
        .collect()
}

/// The IAM requests that could change the role or policy named `target` (a role name or a
/// policy ARN), from the emulator's own log.
pub fn iam_writes(bed: &TestBed, target: &str) -> Vec<EmulatorRequest> {
    emulator_requests(bed)
        .into_iter()
        .filter(|r| r.target == target && r.is_write())
        .collect()
}

/// A new KMS key (with KMS's default key policy: the account may delegate its use by IAM
/// policies), created as the administrator: its ARN.
pub async fn create_kms_key(kms: &aws_sdk_kms::Client) -> String {
    let out = kms
        .create_key()
        .description("bucketwire test key")
        .send()
        .await
        .expect("key created");
    out.key_metadata()
        .and_then(|m| m.arn())
        .expect("key ARN")
        .to_string()
}
