//! Negative proofs decided by the test bed's IAM simulator, not by reading documents (issue 14,
//! item 4). Every integration here is created and made Ready by the real operator; every denial
//! is a request signed as the principal in question, with the real SDK clients, that the test
//! bed answers with `AccessDenied` (a bad signature or a missing resource never counts). Each
//! group also makes the allowed requests that sit next to its denials, so a denial cannot come
//! from a broken setup.
//!
//! - Workload credentials (IRSA, obtained as the Milvus pod obtains them) reach their bucket and
//!   nothing else: not another bucket, not their own bucket over plain HTTP, not another KMS key.
//! - A token for a neighbouring ServiceAccount, for the same name in another namespace, or for
//!   the apiserver's default audience cannot assume the role.
//! - The cross-account role admits only the trusted account with the right external ID, and only
//!   principals that account allows.
//! - The operator's own credentials (deploy/iam/operator-policy.json) cannot create a role outside
//!   its path or without its boundary, nor attach a policy that is not bucketwire's.
//!
//! Denial counts go to target/reliability/negative_proofs.json (RELIABILITY.md).

mod common;

use std::collections::BTreeMap;
use std::sync::Mutex;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use serde_json::json;

use bucketwire::api::BucketIntegrationStatus;
use common::aws::{self, Outcome, SignedAs};
use common::integration::{create, ready_status};
use common::operator::Operator;
use common::{TestBed, namespace, results, setup};

const REGION: &str = "us-east-2";

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
enum Expect {
    /// A control: the request next to the denials is allowed.
    Allowed,
    /// `AccessDenied` (KMS: `AccessDeniedException`).
    Denied,
    /// STS refuses the web identity token itself (`InvalidIdentityToken`), as it does for an
    /// audience that is not a client ID of the IAM OIDC provider.
    TokenRefused,
}

#[derive(Debug, serde::Serialize)]
struct Row {
    case: String,
    expected: Expect,
    got: String,
    /// The simulator's decision for the IAM action the case is about, from the request log.
    decided: String,
    ok: bool,
}

/// Whose requests a case's log lines are: a signing key, or (unsigned web identity) the role
/// the token was presented for.
enum By<'a> {
    Key(&'a aws::Credentials),
    WebIdentity(&'a str),
}

type HttpResponse = aws_smithy_runtime_api::client::orchestrator::HttpResponse;
type SdkResult<T, E> = Result<T, aws_sdk_s3::error::SdkError<E, HttpResponse>>;

/// The rows of one group of proofs.
struct Proofs<'a> {
    bed: &'a TestBed,
    rows: Vec<Row>,
}

impl<'a> Proofs<'a> {
    fn new(bed: &'a TestBed) -> Self {
        Self {
            bed,
            rows: Vec::new(),
        }
    }

    /// Sends one request and checks its answer, and that the simulator decided `action` for it
    /// as expected (a token STS refuses before any policy is evaluated has no decision).
    async fn probe<T, E>(
        &mut self,
        case: impl Into<String>,
        expected: Expect,
        by: By<'_>,
        action: &str,
        request: impl std::future::Future<Output = SdkResult<T, E>>,
    ) where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::fmt::Debug,
    {
        self.probe_outcome(case, expected, by, action, async { aws::outcome(request.await) })
            .await
    }

    async fn probe_outcome(
        &mut self,
        case: impl Into<String>,
        expected: Expect,
        by: By<'_>,
        action: &str,
        request: impl std::future::Future<Output = Outcome>,
    ) {
        let mark = aws::request_log_mark(self.bed);
        let got = request.await;
        let logged: Vec<aws::EmulatorRequest> = aws::emulator_requests_since(self.bed, mark)
            .into_iter()
            .filter(|l| match &by {
                By::Key(credentials) => l.access_key == credentials.access_key_id(),
                By::WebIdentity(role) => {
                    l.action == "AssumeRoleWithWebIdentity" && l.decisions.iter().any(|d| d.resource == *role)
                }
            })
            .collect();
        let (answer_ok, decided) = match expected {
            Expect::Allowed => (
                got == Outcome::Allowed,
                aws::simulator_decided(&logged, action, false),
            ),
            Expect::Denied => (got.is_denied(), aws::simulator_decided(&logged, action, true)),
            Expect::TokenRefused => (
                matches!(got, Outcome::TokenRefused(_)),
                Ok("refused before any policy was evaluated".into()),
            ),
        };
        self.rows.push(Row {
            case: case.into(),
            expected,
            got: format!("{got:?}"),
            ok: answer_ok && decided.is_ok(),
            decided: decided.unwrap_or_else(|e| e),
        });
    }

    /// Asserts every row, then adds the group to target/reliability/negative_proofs.json.
    fn finish(self, group: &'static str) {
        let report = self
            .rows
            .iter()
            .map(|r| {
                format!(
                    "{} {} | expected {:?} | got {} | decided: {}",
                    if r.ok { "ok  " } else { "FAIL" },
                    r.case,
                    r.expected,
                    r.got,
                    r.decided
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            self.rows.iter().all(|r| r.ok),
            "{group}: the test bed answered otherwise:\n{report}"
        );
        record(group, self.rows);
    }
}

/// The groups that passed so far in this process; each passing group rewrites the file, so the
/// last one to finish writes them all (a group that failed is absent, and `groups_recorded`
/// says so).
static GROUPS: Mutex<BTreeMap<&'static str, Vec<Row>>> = Mutex::new(BTreeMap::new());
const GROUP_COUNT: usize = 5;

fn record(group: &'static str, rows: Vec<Row>) {
    let mut groups = GROUPS.lock().unwrap_or_else(|e| e.into_inner());
    groups.insert(group, rows);
    let all: Vec<&Row> = groups.values().flatten().collect();
    let denials = all.iter().filter(|r| r.expected != Expect::Allowed).count();
    let denied = all
        .iter()
        .filter(|r| r.expected != Expect::Allowed && r.ok)
        .count();
    let controls = all.len() - denials;
    results::record(
        "negative_proofs",
        &json!({
            "test": "tests/negative_proofs.rs",
            "groups_expected": GROUP_COUNT,
            "groups_recorded": groups.len(),
            "denial_cases": denials,
            "denied": denied,
            "allowed_controls": controls,
            "groups": &*groups,
        }),
    );
}

/// An IRSA workload's credentials, obtained as the Milvus pod's SDK obtains them: a TokenRequest
/// token of its ServiceAccount for `sts.amazonaws.com`, then AssumeRoleWithWebIdentity.
async fn workload_credentials(
    bed: &TestBed,
    client: &kube::Client,
    ns: &str,
    sa: &str,
    role_arn: &str,
) -> aws::Credentials {
    let token = aws::service_account_token(client, ns, sa, Some("sts.amazonaws.com")).await;
    aws::assume_role_with_web_identity(bed, role_arn, &token)
        .await
        .unwrap_or_else(|o| panic!("the workload's own token is refused: {o:?}"))
}

fn put(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from_static(b"negative proof"))
}

fn bucket_of(status: &BucketIntegrationStatus) -> String {
    status
        .bucket
        .as_ref()
        .and_then(|b| b.name.clone())
        .expect("bucket")
}

#[tokio::test]
async fn workload_credentials_reach_their_bucket_and_nothing_else() {
    let (bed, client, ns) = setup("neg-scope").await;
    let operator = Operator::start(&bed, &ns, &[]);
    create(&client, &ns, "milvus", json!({"region": REGION})).await;
    let status = ready_status(&client, &ns, "milvus", &operator).await;
    let bucket = bucket_of(&status);
    let role_arn = status.role_arn.clone().expect("role");
    let admin = SignedAs::new(&bed, aws::admin_credentials(&bed), REGION).await;
    let other = aws::unique_bucket(&ns, "other");
    aws::create_bucket(&admin.s3(), &other, REGION).await;
    aws::put_object(&admin.s3(), &other, "files/secret", "not yours").await;
    aws::put_object(&admin.s3(), &bucket, "files/mine", "yours").await;

    let creds = workload_credentials(&bed, &client, &ns, "milvus", &role_arn).await;
    let https = SignedAs::new(&bed, creds.clone(), REGION).await.s3();
    let http = SignedAs::insecure(&bed, creds.clone(), REGION).await.s3();
    let by = || By::Key(&creds);
    let mut proofs = Proofs::new(&bed);
    use Expect::{Allowed, Denied};

    // Controls: what Milvus does on its own bucket, over TLS.
    proofs
        .probe(
            "PutObject own bucket",
            Allowed,
            by(),
            "s3:PutObject",
            put(&https, &bucket, "files/a").send(),
        )
        .await;
    proofs
        .probe(
            "GetObject own bucket",
            Allowed,
            by(),
            "s3:GetObject",
            https.get_object().bucket(&bucket).key("files/mine").send(),
        )
        .await;
    proofs
        .probe(
            "ListObjectsV2 own bucket",
            Allowed,
            by(),
            "s3:ListBucket",
            https.list_objects_v2().bucket(&bucket).prefix("files/").send(),
        )
        .await;
    proofs
        .probe(
            "DeleteObject own bucket",
            Allowed,
            by(),
            "s3:DeleteObject",
            https.delete_object().bucket(&bucket).key("files/a").send(),
        )
        .await;

    // Another bucket of the same account.
    proofs
        .probe(
            "PutObject another bucket",
            Denied,
            by(),
            "s3:PutObject",
            put(&https, &other, "files/a").send(),
        )
        .await;
    proofs
        .probe(
            "GetObject another bucket",
            Denied,
            by(),
            "s3:GetObject",
            https.get_object().bucket(&other).key("files/secret").send(),
        )
        .await;
    proofs
        .probe(
            "ListObjectsV2 another bucket",
            Denied,
            by(),
            "s3:ListBucket",
            https.list_objects_v2().bucket(&other).send(),
        )
        .await;
    proofs
        .probe_outcome(
            "HeadBucket another bucket",
            Denied,
            by(),
            "s3:ListBucket",
            async { aws::head_outcome(https.head_bucket().bucket(&other).send().await) },
        )
        .await;

    // Its own bucket, beyond what Milvus needs.
    proofs
        .probe(
            "DeleteBucket own bucket",
            Denied,
            by(),
            "s3:DeleteBucket",
            https.delete_bucket().bucket(&bucket).send(),
        )
        .await;
    proofs
        .probe(
            "PutBucketPolicy own bucket",
            Denied,
            by(),
            "s3:PutBucketPolicy",
            https
                .put_bucket_policy()
                .bucket(&bucket)
                .policy(json!({"Version": "2012-10-17", "Statement": []}).to_string())
                .send(),
        )
        .await;

    // Its own bucket over plain HTTP: the bucket policy the operator wrote denies it.
    proofs
        .probe(
            "PutObject own bucket over plain HTTP",
            Denied,
            by(),
            "s3:PutObject",
            put(&http, &bucket, "files/b").send(),
        )
        .await;
    proofs
        .probe(
            "GetObject own bucket over plain HTTP",
            Denied,
            by(),
            "s3:GetObject",
            http.get_object().bucket(&bucket).key("files/mine").send(),
        )
        .await;
    proofs
        .probe(
            "ListObjectsV2 own bucket over plain HTTP",
            Denied,
            by(),
            "s3:ListBucket",
            http.list_objects_v2().bucket(&bucket).prefix("files/").send(),
        )
        .await;
    proofs.finish("workload_scope");
}

#[tokio::test]
async fn workload_credentials_cannot_encrypt_with_another_kms_key() {
    let (bed, client, ns) = setup("neg-kms").await;
    let admin = SignedAs::new(&bed, aws::admin_credentials(&bed), REGION).await;
    let (key, other_key) = (
        aws::create_kms_key(&admin.kms()).await,
        aws::create_kms_key(&admin.kms()).await,
    );
    let operator = Operator::start(&bed, &ns, &["--allowed-kms-keys", &key]);
    create(
        &client,
        &ns,
        "milvus",
        json!({"region": REGION, "bucket": {"encryption": {"type": "SSE-KMS", "kmsKeyArn": key}}}),
    )
    .await;
    let status = ready_status(&client, &ns, "milvus", &operator).await;
    let bucket = bucket_of(&status);
    let creds = workload_credentials(
        &bed,
        &client,
        &ns,
        "milvus",
        status.role_arn.as_deref().expect("role"),
    )
    .await;
    let s3 = SignedAs::new(&bed, creds.clone(), REGION).await.s3();
    let kms_put = |object: &str, key_arn: &str| {
        put(&s3, &bucket, object)
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(key_arn)
            .send()
    };
    let mut proofs = Proofs::new(&bed);
    proofs
        .probe(
            "PutObject SSE-KMS with the integration's key",
            Expect::Allowed,
            By::Key(&creds),
            "kms:GenerateDataKey",
            kms_put("files/own-key", &key),
        )
        .await;
    proofs
        .probe(
            "GetObject of an object under the integration's key",
            Expect::Allowed,
            By::Key(&creds),
            "kms:Decrypt",
            s3.get_object().bucket(&bucket).key("files/own-key").send(),
        )
        .await;
    proofs
        .probe(
            "PutObject SSE-KMS naming another key of the account",
            Expect::Denied,
            By::Key(&creds),
            "kms:GenerateDataKey",
            kms_put("files/other-key", &other_key),
        )
        .await;
    proofs.finish("workload_kms");
}

#[tokio::test]
async fn only_the_integrations_own_service_account_token_assumes_the_role() {
    let (bed, client, ns) = setup("neg-token").await;
    let operator = Operator::start(&bed, &ns, &[]);
    create(&client, &ns, "milvus", json!({"region": REGION})).await;
    let status = ready_status(&client, &ns, "milvus", &operator).await;
    let role_arn = status.role_arn.expect("role");
    // A neighbour in the same namespace, and the same ServiceAccount name in another namespace.
    let elsewhere = namespace(&client, "neg-token-other").await;
    for (namespace, name) in [(ns.as_str(), "neighbour"), (elsewhere.as_str(), "milvus")] {
        let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": name}})).expect("sa");
        Api::<ServiceAccount>::namespaced(client.clone(), namespace)
            .create(&PostParams::default(), &sa)
            .await
            .expect("ServiceAccount");
    }
    let attempt = |namespace: String, sa: &'static str, audience: Option<&'static str>| {
        let (bed, client, role_arn) = (&bed, &client, &role_arn);
        async move {
            let token = aws::service_account_token(client, &namespace, sa, audience).await;
            match aws::assume_role_with_web_identity(bed, role_arn, &token).await {
                Ok(_) => Outcome::Allowed,
                Err(outcome) => outcome,
            }
        }
    };
    let action = "sts:AssumeRoleWithWebIdentity";
    let by = || By::WebIdentity(&role_arn);
    let mut proofs = Proofs::new(&bed);
    proofs
        .probe_outcome(
            "the integration's ServiceAccount, audience sts.amazonaws.com",
            Expect::Allowed,
            by(),
            action,
            attempt(ns.clone(), "milvus", Some("sts.amazonaws.com")),
        )
        .await;
    proofs
        .probe_outcome(
            "a neighbouring ServiceAccount of the same namespace",
            Expect::Denied,
            by(),
            action,
            attempt(ns.clone(), "neighbour", Some("sts.amazonaws.com")),
        )
        .await;
    proofs
        .probe_outcome(
            "a ServiceAccount of the same name in another namespace",
            Expect::Denied,
            by(),
            action,
            attempt(elsewhere.clone(), "milvus", Some("sts.amazonaws.com")),
        )
        .await;
    proofs
        .probe_outcome(
            "the integration's ServiceAccount with the apiserver's default audience",
            Expect::TokenRefused,
            by(),
            action,
            attempt(ns.clone(), "milvus", None),
        )
        .await;
    proofs.finish("web_identity");
}

#[tokio::test]
async fn the_cross_account_role_admits_only_the_trusted_account_with_its_external_id() {
    let (bed, client, ns) = setup("neg-xacct").await;
    let (trusted, trusted_admin_credentials) = aws::second_account(&bed);
    let operator = Operator::start(&bed, &ns, &["--allowed-trusted-accounts", &trusted]);
    let external_id = format!("{ns}-ext");
    create(
        &client,
        &ns,
        "zilliz",
        json!({"region": REGION, "identity": {"mode": "CrossAccount",
               "crossAccount": {"trustedAccountId": trusted, "externalId": external_id}}}),
    )
    .await;
    let status = ready_status(&client, &ns, "zilliz", &operator).await;
    let role_arn = status.role_arn.clone().expect("role");
    let bucket = bucket_of(&status);

    let trusted_admin = SignedAs::new(&bed, trusted_admin_credentials.clone(), REGION).await;
    // A principal of the trusted account that its own account does not allow sts:AssumeRole.
    let (_, unallowed_credentials) = aws::create_user(
        &trusted_admin.iam(),
        &format!("{ns}-no-assume"),
        &[json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*"}]})],
    )
    .await;
    let unallowed = SignedAs::new(&bed, unallowed_credentials.clone(), REGION).await;
    let admin_credentials = aws::admin_credentials(&bed);
    let operators_account = SignedAs::new(&bed, admin_credentials.clone(), REGION).await;
    let assume = |who: &SignedAs, external_id: Option<&str>| {
        who.sts()
            .assume_role()
            .role_arn(&role_arn)
            .role_session_name("negative-proof")
            .set_external_id(external_id.map(str::to_string))
            .send()
    };
    let action = "sts:AssumeRole";
    let mut proofs = Proofs::new(&bed);
    let granted = trusted_admin
        .sts()
        .assume_role()
        .role_arn(&role_arn)
        .role_session_name("negative-proof")
        .external_id(&external_id)
        .send()
        .await
        .ok()
        .and_then(|out| out.credentials);
    proofs
        .probe(
            "trusted account, right external ID",
            Expect::Allowed,
            By::Key(&trusted_admin_credentials),
            action,
            assume(&trusted_admin, Some(&external_id)),
        )
        .await;
    proofs
        .probe(
            "trusted account, wrong external ID",
            Expect::Denied,
            By::Key(&trusted_admin_credentials),
            action,
            assume(&trusted_admin, Some("wrong-external-id")),
        )
        .await;
    proofs
        .probe(
            "trusted account, no external ID",
            Expect::Denied,
            By::Key(&trusted_admin_credentials),
            action,
            assume(&trusted_admin, None),
        )
        .await;
    proofs
        .probe(
            "trusted account, right external ID, a principal its account does not allow sts:AssumeRole",
            Expect::Denied,
            By::Key(&unallowed_credentials),
            action,
            assume(&unallowed, Some(&external_id)),
        )
        .await;
    proofs
        .probe(
            "another account (the operator's own administrator), right external ID",
            Expect::Denied,
            By::Key(&admin_credentials),
            action,
            assume(&operators_account, Some(&external_id)),
        )
        .await;
    let session = aws::sts_credentials(granted.expect("the trusted account assumes the role"));
    let s3 = SignedAs::new(&bed, session.clone(), REGION).await.s3();
    let other = aws::unique_bucket(&ns, "other");
    aws::create_bucket(&operators_account.s3(), &other, REGION).await;
    proofs
        .probe(
            "the assumed role lists its bucket",
            Expect::Allowed,
            By::Key(&session),
            "s3:ListBucket",
            s3.list_objects_v2().bucket(&bucket).send(),
        )
        .await;
    proofs
        .probe(
            "the assumed role lists another bucket",
            Expect::Denied,
            By::Key(&session),
            "s3:ListBucket",
            s3.list_objects_v2().bucket(&other).send(),
        )
        .await;
    proofs.finish("cross_account");
}

#[tokio::test]
async fn the_operators_own_credentials_cannot_escape_its_path_boundary_or_policies() {
    let (bed, client, ns) = setup("neg-operator").await;
    let operator = Operator::start(&bed, &ns, &[]);
    create(&client, &ns, "milvus", json!({"region": REGION})).await;
    let status = ready_status(&client, &ns, "milvus", &operator).await;
    let role_arn = status.role_arn.clone().expect("role");
    let policy_arn = status.policy_arn.clone().expect("policy");

    // What the operator gave its own role: path, boundary and tags, as IAM holds them.
    let admin = SignedAs::new(&bed, aws::admin_credentials(&bed), REGION).await;
    let role = aws::role(&admin.iam(), &role_arn).await;
    let boundary = role
        .permissions_boundary()
        .and_then(|b| b.permissions_boundary_arn())
        .unwrap_or_else(|| {
            panic!(
                "the operator's role {role_arn} carries no permissions boundary: the test bed's operator must run \
                 with the recommended boundary and the credentials of deploy/iam/operator-policy.json \
                 (BUCKETWIRE_OPERATOR_AWS_* in target/testbed/env)"
            )
        })
        .to_string();
    let path = role.path().to_string();
    let tags = admin
        .iam()
        .list_role_tags()
        .role_name(role.role_name())
        .send()
        .await
        .expect("role tags")
        .tags;
    let trust = aws::trust_of(&admin.iam(), &role_arn).await.to_string();
    // Policies that are not bucketwire's: one to attach, one as a boundary.
    let foreign = |name: &str| {
        let iam = admin.iam();
        let name = format!("{ns}-{name}");
        async move {
            iam.create_policy()
                .policy_name(name)
                .policy_document(
                    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]})
                        .to_string(),
                )
                .send()
                .await
                .expect("foreign policy")
                .policy
                .and_then(|p| p.arn)
                .expect("ARN")
        }
    };
    let (foreign_policy, foreign_boundary) = (foreign("foreign").await, foreign("foreign-boundary").await);

    let credentials = aws::operator_credentials(&bed);
    let iam = SignedAs::new(&bed, credentials.clone(), REGION).await.iam();
    let create_role = |name: String, path: String, boundary: Option<String>| {
        iam.create_role()
            .role_name(name)
            .path(path)
            .assume_role_policy_document(&trust)
            .set_permissions_boundary(boundary)
            .set_tags(Some(tags.clone()))
            .send()
    };
    let by = || By::Key(&credentials);
    let mut proofs = Proofs::new(&bed);
    // Control: a role exactly like the operator's own (its path, boundary and tags) is allowed,
    // and removed again with the same credentials.
    let control = format!("{ns}-control");
    proofs
        .probe(
            format!("CreateRole at {path} with the boundary and the operator's tags"),
            Expect::Allowed,
            by(),
            "iam:CreateRole",
            create_role(control.clone(), path.clone(), Some(boundary.clone())),
        )
        .await;
    proofs
        .probe(
            "DeleteRole of that role",
            Expect::Allowed,
            by(),
            "iam:DeleteRole",
            iam.delete_role().role_name(&control).send(),
        )
        .await;
    proofs
        .probe(
            "CreateRole outside the operator's path (/tenant/)",
            Expect::Denied,
            by(),
            "iam:CreateRole",
            create_role(format!("{ns}-outside"), "/tenant/".into(), Some(boundary.clone())),
        )
        .await;
    proofs
        .probe(
            "CreateRole at the operator's path without a permissions boundary",
            Expect::Denied,
            by(),
            "iam:CreateRole",
            create_role(format!("{ns}-unbounded"), path.clone(), None),
        )
        .await;
    proofs
        .probe(
            "CreateRole at the operator's path with another permissions boundary",
            Expect::Denied,
            by(),
            "iam:CreateRole",
            create_role(format!("{ns}-wide"), path.clone(), Some(foreign_boundary)),
        )
        .await;
    proofs
        .probe(
            "AttachRolePolicy of the integration's own policy to its role",
            Expect::Allowed,
            by(),
            "iam:AttachRolePolicy",
            iam.attach_role_policy()
                .role_name(role.role_name())
                .policy_arn(&policy_arn)
                .send(),
        )
        .await;
    proofs
        .probe(
            "AttachRolePolicy of a policy that is not bucketwire's to the integration's role",
            Expect::Denied,
            by(),
            "iam:AttachRolePolicy",
            iam.attach_role_policy()
                .role_name(role.role_name())
                .policy_arn(&foreign_policy)
                .send(),
        )
        .await;
    proofs.finish("operator_policy");
}
