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
    ok: bool,
}

/// The rows of one group of proofs.
#[derive(Default)]
struct Proofs {
    rows: Vec<Row>,
}

impl Proofs {
    fn check(&mut self, case: impl Into<String>, expected: Expect, got: Outcome) {
        let ok = match expected {
            Expect::Allowed => got == Outcome::Allowed,
            Expect::Denied => got.is_denied(),
            Expect::TokenRefused => matches!(got, Outcome::TokenRefused(_)),
        };
        self.rows.push(Row {
            case: case.into(),
            expected,
            got: format!("{got:?}"),
            ok,
        });
    }

    /// Asserts every row, then adds the group to target/reliability/negative_proofs.json.
    fn finish(self, group: &'static str) {
        let report = self
            .rows
            .iter()
            .map(|r| {
                format!(
                    "{} {} | expected {:?} | got {}",
                    if r.ok { "ok  " } else { "FAIL" },
                    r.case,
                    r.expected,
                    r.got
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
    let mut proofs = Proofs::default();
    use Expect::{Allowed, Denied};

    // Controls: what Milvus does on its own bucket, over TLS.
    proofs.check(
        "PutObject own bucket",
        Allowed,
        aws::outcome(put(&https, &bucket, "files/a").send().await),
    );
    proofs.check(
        "GetObject own bucket",
        Allowed,
        aws::outcome(https.get_object().bucket(&bucket).key("files/mine").send().await),
    );
    proofs.check(
        "ListObjectsV2 own bucket",
        Allowed,
        aws::outcome(
            https
                .list_objects_v2()
                .bucket(&bucket)
                .prefix("files/")
                .send()
                .await,
        ),
    );
    proofs.check(
        "DeleteObject own bucket",
        Allowed,
        aws::outcome(https.delete_object().bucket(&bucket).key("files/a").send().await),
    );

    // Another bucket of the same account.
    proofs.check(
        "PutObject another bucket",
        Denied,
        aws::outcome(put(&https, &other, "files/a").send().await),
    );
    proofs.check(
        "GetObject another bucket",
        Denied,
        aws::outcome(https.get_object().bucket(&other).key("files/secret").send().await),
    );
    proofs.check(
        "ListObjectsV2 another bucket",
        Denied,
        aws::outcome(https.list_objects_v2().bucket(&other).send().await),
    );
    proofs.check(
        "HeadBucket another bucket",
        Denied,
        aws::head_outcome(https.head_bucket().bucket(&other).send().await),
    );

    // Its own bucket, beyond what Milvus needs.
    proofs.check(
        "DeleteBucket own bucket",
        Denied,
        aws::outcome(https.delete_bucket().bucket(&bucket).send().await),
    );
    proofs.check(
        "PutBucketPolicy own bucket",
        Denied,
        aws::outcome(
            https
                .put_bucket_policy()
                .bucket(&bucket)
                .policy(json!({"Version": "2012-10-17", "Statement": []}).to_string())
                .send()
                .await,
        ),
    );

    // Its own bucket over plain HTTP: the bucket policy the operator wrote denies it.
    let http = SignedAs::insecure(&bed, creds, REGION).await.s3();
    proofs.check(
        "PutObject own bucket over plain HTTP",
        Denied,
        aws::outcome(put(&http, &bucket, "files/b").send().await),
    );
    proofs.check(
        "GetObject own bucket over plain HTTP",
        Denied,
        aws::outcome(http.get_object().bucket(&bucket).key("files/mine").send().await),
    );
    proofs.check(
        "ListObjectsV2 own bucket over plain HTTP",
        Denied,
        aws::outcome(
            http.list_objects_v2()
                .bucket(&bucket)
                .prefix("files/")
                .send()
                .await,
        ),
    );
    proofs.finish("workload_scope");
}

#[tokio::test]
async fn workload_credentials_cannot_encrypt_with_another_kms_key() {
    let (bed, client, ns) = setup("neg-kms").await;
    let admin = SignedAs::new(&bed, aws::admin_credentials(&bed), REGION).await;
    let new_key = || async {
        let out = admin
            .kms()
            .create_key()
            .description(format!("{ns} negative proofs"))
            .send()
            .await
            .expect("key");
        out.key_metadata()
            .and_then(|m| m.arn())
            .expect("key ARN")
            .to_string()
    };
    // Both keys keep the default key policy (IAM policies decide), so a denial on the second
    // comes from the role's own policy.
    let (key, other_key) = (new_key().await, new_key().await);
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
    let s3 = SignedAs::new(&bed, creds, REGION).await.s3();
    let kms_put = |object: &str, key_arn: &str| {
        put(&s3, &bucket, object)
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(key_arn)
    };
    let mut proofs = Proofs::default();
    proofs.check(
        "PutObject SSE-KMS with the integration's key",
        Expect::Allowed,
        aws::outcome(kms_put("files/own-key", &key).send().await),
    );
    proofs.check(
        "GetObject of an object under the integration's key",
        Expect::Allowed,
        aws::outcome(s3.get_object().bucket(&bucket).key("files/own-key").send().await),
    );
    proofs.check(
        "PutObject SSE-KMS naming another key of the account",
        Expect::Denied,
        aws::outcome(kms_put("files/other-key", &other_key).send().await),
    );
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
    let mut proofs = Proofs::default();
    proofs.check(
        "the integration's ServiceAccount, audience sts.amazonaws.com",
        Expect::Allowed,
        attempt(ns.clone(), "milvus", Some("sts.amazonaws.com")).await,
    );
    proofs.check(
        "a neighbouring ServiceAccount of the same namespace",
        Expect::Denied,
        attempt(ns.clone(), "neighbour", Some("sts.amazonaws.com")).await,
    );
    proofs.check(
        "a ServiceAccount of the same name in another namespace",
        Expect::Denied,
        attempt(elsewhere.clone(), "milvus", Some("sts.amazonaws.com")).await,
    );
    proofs.check(
        "the integration's ServiceAccount with the apiserver's default audience",
        Expect::TokenRefused,
        attempt(ns.clone(), "milvus", None).await,
    );
    proofs.finish("web_identity");
}

#[tokio::test]
async fn the_cross_account_role_admits_only_the_trusted_account_with_its_external_id() {
    let (bed, client, ns) = setup("neg-xacct").await;
    let (trusted, trusted_admin) = aws::second_account(&bed);
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

    let trusted_admin = SignedAs::new(&bed, trusted_admin, REGION).await;
    // A principal of the trusted account that its own account does not allow sts:AssumeRole.
    let (_, unallowed) = aws::create_user(
        &trusted_admin.iam(),
        &format!("{ns}-no-assume"),
        &[json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*"}]})],
    )
    .await;
    let unallowed = SignedAs::new(&bed, unallowed, REGION).await;
    let operators_account = SignedAs::new(&bed, aws::admin_credentials(&bed), REGION).await;
    let assume = |who: &SignedAs, external_id: Option<&str>| {
        who.sts()
            .assume_role()
            .role_arn(&role_arn)
            .role_session_name("negative-proof")
            .set_external_id(external_id.map(str::to_string))
            .send()
    };
    let mut proofs = Proofs::default();
    let granted = assume(&trusted_admin, Some(&external_id)).await;
    let session = granted.as_ref().ok().and_then(|out| out.credentials.clone());
    proofs.check(
        "trusted account, right external ID",
        Expect::Allowed,
        aws::outcome(granted),
    );
    proofs.check(
        "trusted account, wrong external ID",
        Expect::Denied,
        aws::outcome(assume(&trusted_admin, Some("wrong-external-id")).await),
    );
    proofs.check(
        "trusted account, no external ID",
        Expect::Denied,
        aws::outcome(assume(&trusted_admin, None).await),
    );
    proofs.check(
        "trusted account, right external ID, a principal its account does not allow sts:AssumeRole",
        Expect::Denied,
        aws::outcome(assume(&unallowed, Some(&external_id)).await),
    );
    proofs.check(
        "another account (the operator's own administrator), right external ID",
        Expect::Denied,
        aws::outcome(assume(&operators_account, Some(&external_id)).await),
    );
    if let Some(session) = session {
        let s3 = SignedAs::new(&bed, aws::sts_credentials(session), REGION)
            .await
            .s3();
        let other = aws::unique_bucket(&ns, "other");
        aws::create_bucket(&operators_account.s3(), &other, REGION).await;
        proofs.check(
            "the assumed role lists its bucket",
            Expect::Allowed,
            aws::outcome(s3.list_objects_v2().bucket(&bucket).send().await),
        );
        proofs.check(
            "the assumed role lists another bucket",
            Expect::Denied,
            aws::outcome(s3.list_objects_v2().bucket(&other).send().await),
        );
    }
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
        .unwrap_or_else(|| panic!("the operator's role {role_arn} carries no permissions boundary"))
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

    let iam = SignedAs::new(&bed, aws::operator_credentials(&bed), REGION)
        .await
        .iam();
    let create_role = |name: String, path: String, boundary: Option<String>| {
        iam.create_role()
            .role_name(name)
            .path(path)
            .assume_role_policy_document(&trust)
            .set_permissions_boundary(boundary)
            .set_tags(Some(tags.clone()))
            .send()
    };
    let mut proofs = Proofs::default();
    // Control: a role exactly like the operator's own (its path, boundary and tags) is allowed,
    // and removed again with the same credentials.
    let control = format!("{ns}-control");
    proofs.check(
        format!("CreateRole at {path} with the boundary and the operator's tags"),
        Expect::Allowed,
        aws::outcome(create_role(control.clone(), path.clone(), Some(boundary.clone())).await),
    );
    proofs.check(
        "DeleteRole of that role",
        Expect::Allowed,
        aws::outcome(iam.delete_role().role_name(&control).send().await),
    );
    proofs.check(
        "CreateRole outside the operator's path (/tenant/)",
        Expect::Denied,
        aws::outcome(create_role(format!("{ns}-outside"), "/tenant/".into(), Some(boundary.clone())).await),
    );
    proofs.check(
        "CreateRole at the operator's path without a permissions boundary",
        Expect::Denied,
        aws::outcome(create_role(format!("{ns}-unbounded"), path.clone(), None).await),
    );
    proofs.check(
        "CreateRole at the operator's path with another permissions boundary",
        Expect::Denied,
        aws::outcome(create_role(format!("{ns}-wide"), path.clone(), Some(foreign_boundary)).await),
    );
    proofs.check(
        "AttachRolePolicy of the integration's own policy to its role",
        Expect::Allowed,
        aws::outcome(
            iam.attach_role_policy()
                .role_name(role.role_name())
                .policy_arn(&policy_arn)
                .send()
                .await,
        ),
    );
    proofs.check(
        "AttachRolePolicy of a policy that is not bucketwire's to the integration's role",
        Expect::Denied,
        aws::outcome(
            iam.attach_role_policy()
                .role_name(role.role_name())
                .policy_arn(&foreign_policy)
                .send()
                .await,
        ),
    );
    proofs.finish("operator_policy");
}
