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

/// A bucket name of the test's own, within the test bed's bucket prefix (`bw-`, what the
/// operator's policy and `--bucket-prefix` allow): `bw-<namespace>-<suffix>`, within S3's 63
/// characters.
pub fn unique_bucket(ns: &str, suffix: &str) -> String {
    format!("bw-{ns}-{suffix}")
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
    pub decisions: Vec<Decided>,
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
    emulator_requests_since(bed, 0)
}

/// The requests logged after `mark` (see `request_log_mark`; lines still being written are
/// skipped).
pub fn emulator_requests_since(bed: &TestBed, mark: usize) -> Vec<EmulatorRequest> {
    std::fs::read_to_string(bed.var("BUCKETWIRE_TESTBED_REQUEST_LOG"))
        .expect("the emulator's request log reads")
        .lines()
        .skip(mark)
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

// --- Signing as other principals, and what the test bed decided (issue 14, items 4 and 5) ---

/// Static or temporary credentials of one principal (every SDK client takes this type).
pub type Credentials = aws_sdk_s3::config::Credentials;

/// An SDK configuration signed with `credentials`, against `endpoint`, in `region`.
pub async fn config_as(credentials: Credentials, endpoint: &str, region: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .credentials_provider(credentials)
        .endpoint_url(endpoint)
        .load()
        .await
}

/// Clients of one principal. `secure` picks the test bed's normal endpoint (it stands for AWS's
/// HTTPS endpoints: `aws:SecureTransport` is true) or its insecure one (plain HTTP:
/// `BUCKETWIRE_TESTBED_INSECURE_ENDPOINT_URL`, where `aws:SecureTransport` is false).
pub struct SignedAs {
    config: aws_config::SdkConfig,
}

impl SignedAs {
    pub async fn new(bed: &TestBed, credentials: Credentials, region: &str) -> Self {
        let config = config_as(credentials, bed.var("BUCKETWIRE_AWS_ENDPOINT_URL"), region).await;
        Self { config }
    }

    /// The same principal through the insecure (plain HTTP) endpoint.
    pub async fn insecure(bed: &TestBed, credentials: Credentials, region: &str) -> Self {
        let endpoint = bed.var("BUCKETWIRE_TESTBED_INSECURE_ENDPOINT_URL");
        Self {
            config: config_as(credentials, endpoint, region).await,
        }
    }

    pub fn s3(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::from(&self.config)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    pub fn iam(&self) -> aws_sdk_iam::Client {
        aws_sdk_iam::Client::new(&self.config)
    }

    pub fn sts(&self) -> aws_sdk_sts::Client {
        aws_sdk_sts::Client::new(&self.config)
    }

    pub fn kms(&self) -> aws_sdk_kms::Client {
        aws_sdk_kms::Client::new(&self.config)
    }
}

/// The test bed administrator's credentials.
pub fn admin_credentials(bed: &TestBed) -> Credentials {
    Credentials::new(
        bed.var("AWS_ACCESS_KEY_ID"),
        bed.var("AWS_SECRET_ACCESS_KEY"),
        None,
        None,
        "testbed-admin",
    )
}

/// A second AWS account on the test bed: (account ID, its administrator's credentials). moto
/// keeps IAM, STS and S3 state per account and picks the account of a request from its access
/// key, so a key created by a user of another account signs requests of that account.
pub fn second_account(bed: &TestBed) -> (String, Credentials) {
    let credentials = Credentials::new(
        bed.var("BUCKETWIRE_TESTBED_SECOND_ACCOUNT_ACCESS_KEY_ID"),
        bed.var("BUCKETWIRE_TESTBED_SECOND_ACCOUNT_SECRET_ACCESS_KEY"),
        None,
        None,
        "testbed-second-account",
    );
    (
        bed.var("BUCKETWIRE_TESTBED_SECOND_ACCOUNT_ID").to_string(),
        credentials,
    )
}

/// The credentials the operator runs with on the test bed: an identity carrying exactly
/// deploy/iam/operator-policy.json (`BUCKETWIRE_OPERATOR_AWS_*` in target/testbed/env).
pub fn operator_credentials(bed: &TestBed) -> Credentials {
    Credentials::new(
        bed.var("BUCKETWIRE_OPERATOR_AWS_ACCESS_KEY_ID"),
        bed.var("BUCKETWIRE_OPERATOR_AWS_SECRET_ACCESS_KEY"),
        Some(bed.var("BUCKETWIRE_OPERATOR_AWS_SESSION_TOKEN").to_string()).filter(|t| !t.is_empty()),
        None,
        "testbed-operator",
    )
}

/// Creates IAM user `name` with one inline policy per entry of `policies` and an access key:
/// (its ARN, its long-term credentials).
pub async fn create_user(
    iam: &aws_sdk_iam::Client,
    name: &str,
    policies: &[serde_json::Value],
) -> (String, Credentials) {
    let user = iam
        .create_user()
        .user_name(name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("user {name}: {e:?}"))
        .user
        .expect("user");
    for (i, policy) in policies.iter().enumerate() {
        iam.put_user_policy()
            .user_name(name)
            .policy_name(format!("p{i}"))
            .policy_document(policy.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("policy of user {name}: {e:?}"));
    }
    let key = iam
        .create_access_key()
        .user_name(name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("access key of {name}: {e:?}"))
        .access_key
        .expect("access key");
    let credentials = Credentials::new(key.access_key_id, key.secret_access_key, None, None, "test-user");
    (user.arn, credentials)
}

/// The credentials of an STS answer.
pub fn sts_credentials(c: aws_sdk_sts::types::Credentials) -> Credentials {
    Credentials::new(
        c.access_key_id,
        c.secret_access_key,
        Some(c.session_token),
        None,
        "test-session",
    )
}

/// A ServiceAccount token from TokenRequest, as the kubelet projects it for IRSA (audience
/// `sts.amazonaws.com`); `audience: None` asks for the apiserver's default audiences.
pub async fn service_account_token(
    client: &kube::Client,
    ns: &str,
    sa: &str,
    audience: Option<&str>,
) -> String {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: audience.map(str::to_string).into_iter().collect(),
            expiration_seconds: Some(600),
            ..Default::default()
        },
        ..Default::default()
    };
    kube::Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(client.clone(), ns)
        .create_token_request(sa, &Default::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("TokenRequest for {ns}/{sa}: {e}"))
        .status
        .expect("token status")
        .token
}

/// AssumeRoleWithWebIdentity, unsigned, exactly as the SDK in a pod calls it.
pub async fn assume_role_with_web_identity(
    bed: &TestBed,
    role_arn: &str,
    token: &str,
) -> Result<Credentials, Outcome> {
    let conf = aws_sdk_sts::config::Builder::new()
        .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
        .region(Region::new(bed.var("AWS_REGION").to_string()))
        .endpoint_url(bed.var("BUCKETWIRE_AWS_ENDPOINT_URL"))
        .build();
    let answer = aws_sdk_sts::Client::from_conf(conf)
        .assume_role_with_web_identity()
        .role_arn(role_arn)
        .role_session_name("bucketwire-proof")
        .web_identity_token(token)
        .send()
        .await;
    match answer {
        Ok(out) => Ok(sts_credentials(out.credentials.expect("credentials"))),
        Err(e) => Err(outcome::<(), _>(Err(e))),
    }
}

/// What the test bed answered to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    /// Refused by authorization: HTTP 403 `AccessDenied` (S3, IAM, STS), or KMS's
    /// `AccessDeniedException`; the message as the service wrote it.
    Denied(String),
    /// STS refused the web identity token itself (`InvalidIdentityToken`, HTTP 400), before any
    /// policy was evaluated.
    TokenRefused(String),
    /// Anything else (a signature failure, a missing resource, a server error): never counted
    /// as a denial.
    Failed(String),
}

impl Outcome {
    pub fn is_denied(&self) -> bool {
        matches!(self, Outcome::Denied(_))
    }
}

type HttpResponse = aws_smithy_runtime_api::client::orchestrator::HttpResponse;

/// Classifies an SDK answer. A denial must say so (`AccessDenied`): a 403 for a bad signature
/// or an unknown key is a failure, not a proof.
pub fn outcome<T, E>(result: Result<T, aws_sdk_s3::error::SdkError<E, HttpResponse>>) -> Outcome
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::fmt::Debug,
{
    classify(result, false)
}

/// As `outcome`, for HEAD requests, whose error answers have no body: a bare 403 is a denial.
pub fn head_outcome<T, E>(result: Result<T, aws_sdk_s3::error::SdkError<E, HttpResponse>>) -> Outcome
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::fmt::Debug,
{
    classify(result, true)
}

fn classify<T, E>(result: Result<T, aws_sdk_s3::error::SdkError<E, HttpResponse>>, head: bool) -> Outcome
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::fmt::Debug,
{
    use aws_sdk_s3::error::ProvideErrorMetadata;
    let err = match result {
        Ok(_) => return Outcome::Allowed,
        Err(err) => err,
    };
    let status = err.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
    let code = err.code().map(str::to_string);
    let message = err.message().unwrap_or_default().to_string();
    match (status, code.as_deref()) {
        (403, Some("AccessDenied")) | (_, Some("AccessDeniedException")) => Outcome::Denied(message),
        (403, None) if head => Outcome::Denied("HTTP 403 (HEAD: no body)".into()),
        (400, Some("InvalidIdentityToken")) => Outcome::TokenRefused(message),
        _ => Outcome::Failed(format!("HTTP {status} {code:?} {message} ({err:?})")),
    }
}

/// One authorization decision the test bed took for a request, from its request log
/// (tests/testbed/authorization.py): the IAM action and resource, the principal, the simulator's
/// result (`Allowed`, `ExplicitlyDenied`, `ImplicitlyDenied`) and what derived the check
/// (`testbed`; `moto` when only moto's own action name was available).
#[derive(Clone, Debug, serde::Deserialize)]
pub struct Decided {
    pub action: String,
    pub resource: String,
    pub principal: String,
    pub result: String,
    #[serde(rename = "derivedBy", default)]
    pub derived_by: String,
}

impl std::fmt::Display for Decided {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} on {}: {} ({})",
            self.action, self.resource, self.result, self.derived_by
        )
    }
}

/// How many lines the request log has now: pass it to `emulator_requests_since` after a request to read
/// only what came after.
pub fn request_log_mark(bed: &TestBed) -> usize {
    std::fs::read_to_string(bed.var("BUCKETWIRE_TESTBED_REQUEST_LOG"))
        .map(|text| text.lines().count())
        .unwrap_or(0)
}

/// Whether the log shows `action` decided as `denied` (or allowed) by the simulator, among
/// `requests`: Ok(the decision) or Err(what was logged instead).
pub fn simulator_decided(requests: &[EmulatorRequest], action: &str, denied: bool) -> Result<String, String> {
    let decisions: Vec<&Decided> = requests.iter().flat_map(|r| &r.decisions).collect();
    decisions
        .iter()
        .find(|d| {
            d.action == action
                && (d.result != "Allowed") == denied
                && !d.derived_by.is_empty()
                && d.derived_by != "moto"
        })
        .map(|d| d.to_string())
        .ok_or_else(|| {
            let logged: Vec<String> = decisions.iter().map(|d| d.to_string()).collect();
            format!(
                "no simulator decision {} {action} in the request log (logged: {logged:?})",
                if denied { "denying" } else { "allowing" }
            )
        })
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

/// Credentials the operator runs with: a role carrying exactly deploy/iam/operator-policy.json,
/// rendered for the settings it runs with, and the permissions boundary and bucket prefix of
/// those settings (tests/common/operator.rs passes both unless a test gives its own).
#[derive(Clone, Debug)]
pub struct Identity {
    pub role_arn: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    /// `--permissions-boundary`; `None`: the operator runs without one.
    pub boundary: Option<String>,
    /// `--bucket-prefix`, as the chart sets it by default.
    pub bucket_prefix: String,
}

impl Identity {
    /// The test bed's operator (tests/testbed/testbed.py, seed()): the policy rendered for the
    /// test bed's account, partition `aws`, region, cluster, bucket prefix `bw-`, role path
    /// `/bucketwire/` and the recommended boundary.
    pub fn testbed(bed: &TestBed) -> Self {
        Self {
            role_arn: bed.var("BUCKETWIRE_OPERATOR_ROLE_ARN").into(),
            access_key_id: bed.var("BUCKETWIRE_OPERATOR_AWS_ACCESS_KEY_ID").into(),
            secret_access_key: bed.var("BUCKETWIRE_OPERATOR_AWS_SECRET_ACCESS_KEY").into(),
            session_token: bed.var("BUCKETWIRE_OPERATOR_AWS_SESSION_TOKEN").into(),
            boundary: Some(bed.var("BUCKETWIRE_TESTBED_PERMISSIONS_BOUNDARY").into()),
            bucket_prefix: bed.var("BUCKETWIRE_TESTBED_BUCKET_PREFIX").into(),
        }
    }

    /// The same credentials, run without `--permissions-boundary` (the policy still demands
    /// the boundary of every role the operator creates).
    pub fn without_boundary(mut self) -> Self {
        self.boundary = None;
        self
    }

    /// The environment the operator's AWS SDK reads its credentials from.
    pub fn env(&self) -> [(&'static str, &str); 3] {
        [
            ("AWS_ACCESS_KEY_ID", self.access_key_id.as_str()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_access_key.as_str()),
            ("AWS_SESSION_TOKEN", self.session_token.as_str()),
        ]
    }
}

/// The settings an operator identity's policy is rendered for.
#[derive(Clone, Debug)]
pub struct OperatorSettings {
    /// A region of the partition whose IAM holds the role (and whose ARNs the policy names).
    pub region: String,
    pub bucket_prefix: String,
    pub role_path: String,
    /// `None`: the recommended boundary (deploy/iam/permissions-boundary.json), rendered for
    /// the partition and prefix and created here.
    pub boundary: Option<String>,
}

impl OperatorSettings {
    /// The test bed's own settings; change the fields a test runs with.
    pub fn testbed(bed: &TestBed) -> Self {
        Self {
            region: bed.var("AWS_REGION").into(),
            bucket_prefix: bed.var("BUCKETWIRE_TESTBED_BUCKET_PREFIX").into(),
            role_path: bed.var("BUCKETWIRE_TESTBED_ROLE_PATH").into(),
            boundary: None,
        }
    }
}

/// Runs tests/testbed/policies.py, the one renderer of the templates in deploy/iam.
fn render(args: &[&str]) -> serde_json::Value {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new(format!("{root}/target/testbed/venv/bin/python"))
        .arg(format!("{root}/tests/testbed/policies.py"))
        .args(args)
        .output()
        .expect("tests/testbed/policies.py runs");
    assert!(
        out.status.success(),
        "policies.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a rendered document")
}

/// The operator policy rendered for `settings`, with `boundary` as its boundary.
pub fn rendered_operator_policy(
    bed: &TestBed,
    settings: &OperatorSettings,
    boundary: &str,
) -> serde_json::Value {
    let partition = bucketwire::naming::Partition::of_region(&settings.region);
    render(&[
        "operator",
        "--partition",
        partition.id(),
        "--account-id",
        bed.var("BUCKETWIRE_TESTBED_ACCOUNT_ID"),
        "--region",
        bed.var("AWS_REGION"),
        "--cluster-name",
        bed.var("BUCKETWIRE_CLUSTER_NAME"),
        "--bucket-prefix",
        &settings.bucket_prefix,
        "--role-path",
        &settings.role_path,
        "--permissions-boundary-arn",
        boundary,
    ])
}

/// 8 hex characters naming a document (same document, same IAM names: tests reuse them).
fn short_hash(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Creates the managed policy `name` (if absent) and returns its ARN.
async fn ensure_policy(
    iam: &aws_sdk_iam::Client,
    arn: &str,
    name: &str,
    document: &serde_json::Value,
) -> String {
    match iam
        .create_policy()
        .policy_name(name)
        .policy_document(document.to_string())
        .send()
        .await
    {
        Ok(out) => out.policy().and_then(|p| p.arn()).expect("arn").to_string(),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_entity_already_exists_exception()) =>
        {
            arn.to_string()
        }
        Err(e) => panic!("creating policy {name}: {e:?}"),
    }
}

/// The recommended permissions boundary for `settings` (created if absent).
pub async fn recommended_boundary(bed: &TestBed, settings: &OperatorSettings) -> String {
    let partition = bucketwire::naming::Partition::of_region(&settings.region);
    let account = bed.var("BUCKETWIRE_TESTBED_ACCOUNT_ID");
    let document = render(&[
        "boundary",
        "--partition",
        partition.id(),
        "--account-id",
        account,
        "--bucket-prefix",
        &settings.bucket_prefix,
    ]);
    let name = format!(
        "bucketwire-testbed-boundary-{}",
        short_hash(&document.to_string())
    );
    let arn = format!("arn:{}:iam::{account}:policy/{name}", partition.id());
    ensure_policy(&iam(bed, &settings.region).await, &arn, &name, &document).await
}

/// Credentials of an operator role carrying exactly deploy/iam/operator-policy.json rendered
/// for `settings` (created by the administrator if absent, and assumed by it), with the boundary
/// of those settings.
pub async fn operator_identity(bed: &TestBed, settings: &OperatorSettings) -> Identity {
    let boundary = match &settings.boundary {
        Some(b) => b.clone(),
        None => recommended_boundary(bed, settings).await,
    };
    let policy = rendered_operator_policy(bed, settings, &boundary);
    let partition = bucketwire::naming::Partition::of_region(&settings.region);
    if partition != bucketwire::naming::Partition::Aws {
        // The test bed's one EKS cluster is in partition aws, and the same credentials reach
        // every partition (tests/testbed/moto_launcher.py): a role of the same name there,
        // with the policy rendered for aws, is the operator's identity for its EKS lookup, as
        // the operator of a China or GovCloud cluster has its own role in that partition.
        let home = OperatorSettings {
            region: bed.var("AWS_REGION").into(),
            boundary: None,
            ..settings.clone()
        };
        let home_boundary = recommended_boundary(bed, &home).await;
        let home_policy = rendered_operator_policy(bed, &home, &home_boundary);
        ensure_operator_role(
            bed,
            &home.region,
            &role_name(&settings.region, &policy),
            &home_policy,
        )
        .await;
    }
    let mut identity = operator_identity_with_policy(bed, &settings.region, &policy).await;
    identity.boundary = Some(boundary);
    identity.bucket_prefix = settings.bucket_prefix.clone();
    identity
}

/// The name of the operator role carrying `policy` in `region`'s partition.
fn role_name(region: &str, policy: &serde_json::Value) -> String {
    let partition = bucketwire::naming::Partition::of_region(region);
    format!(
        "bucketwire-testbed-operator-{}",
        short_hash(&format!("{}:{policy}", partition.id()))
    )
}

/// Creates (if absent) the role `name` in `region`'s partition, carrying exactly `policy`, that
/// the administrator may assume for 12 hours; returns its ARN.
async fn ensure_operator_role(bed: &TestBed, region: &str, name: &str, policy: &serde_json::Value) -> String {
    let partition = bucketwire::naming::Partition::of_region(region);
    let account = bed.var("BUCKETWIRE_TESTBED_ACCOUNT_ID");
    let iam = iam(bed, region).await;
    let policy_arn = format!("arn:{}:iam::{account}:policy/{name}", partition.id());
    let policy_arn = ensure_policy(&iam, &policy_arn, name, policy).await;
    // The administrator (in partition aws on the test bed, whatever partition the role is in:
    // tests/testbed/moto_launcher.py) is the only principal that may assume it.
    let trust = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": bed.var("BUCKETWIRE_TESTBED_ADMIN_ARN")}, "Action": "sts:AssumeRole"}]});
    let role_arn = match iam
        .create_role()
        .role_name(name)
        .assume_role_policy_document(trust.to_string())
        .max_session_duration(12 * 3600)
        .send()
        .await
    {
        Ok(out) => out.role().map(|r| r.arn().to_string()).expect("role"),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_entity_already_exists_exception()) =>
        {
            format!("arn:{}:iam::{account}:role/{name}", partition.id())
        }
        Err(e) => panic!("creating role {name}: {e:?}"),
    };
    iam.attach_role_policy()
        .role_name(name)
        .policy_arn(&policy_arn)
        .send()
        .await
        .expect("operator policy attached");
    role_arn
}

/// Credentials of an operator role carrying exactly `policy` (one role per distinct document,
/// in the IAM of `region`'s partition). Its boundary and prefix are the test bed's: set them
/// when the policy was rendered for others.
pub async fn operator_identity_with_policy(
    bed: &TestBed,
    region: &str,
    policy: &serde_json::Value,
) -> Identity {
    use std::collections::HashMap;
    use std::sync::Mutex;
    // Assumed once per test binary and document: the credentials last 12 hours.
    static CACHE: Mutex<Option<HashMap<String, Identity>>> = Mutex::new(None);
    let partition = bucketwire::naming::Partition::of_region(region);
    let key = format!("{}:{policy}", partition.id());
    if let Some(found) = CACHE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .get(&key)
    {
        return found.clone();
    }
    let role_arn = ensure_operator_role(bed, region, &role_name(region, policy), policy).await;
    let sts = aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::config::Builder::from(&sdk_config(bed, partition.iam_region()).await).build(),
    );
    let credentials = sts
        .assume_role()
        .role_arn(&role_arn)
        .role_session_name("bucketwire-operator")
        .duration_seconds(12 * 3600)
        .send()
        .await
        .unwrap_or_else(|e| panic!("assuming {role_arn}: {e:?}"))
        .credentials
        .expect("credentials");
    let identity = Identity {
        role_arn,
        access_key_id: credentials.access_key_id,
        secret_access_key: credentials.secret_access_key,
        session_token: credentials.session_token,
        boundary: Some(bed.var("BUCKETWIRE_TESTBED_PERMISSIONS_BOUNDARY").into()),
        bucket_prefix: bed.var("BUCKETWIRE_TESTBED_BUCKET_PREFIX").into(),
    };
    CACHE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(key, identity.clone());
    identity
}

/// The test bed's operator policy (rendered for its settings and boundary), as the README says
/// to extend it when an allow-list names more than the defaults: each of `resources` added to
/// statement `sid`.
pub fn testbed_policy_extended(bed: &TestBed, sid: &str, resources: &[String]) -> serde_json::Value {
    let mut policy = rendered_operator_policy(
        bed,
        &OperatorSettings::testbed(bed),
        bed.var("BUCKETWIRE_TESTBED_PERMISSIONS_BOUNDARY"),
    );
    let statement = policy["Statement"]
        .as_array_mut()
        .expect("statements")
        .iter_mut()
        .find(|s| s["Sid"] == sid)
        .unwrap_or_else(|| panic!("no statement {sid}"));
    let mut all = bucketwire::documents::string_list(&statement["Resource"]);
    all.extend(resources.iter().cloned());
    statement["Resource"] = serde_json::json!(all);
    policy
}
