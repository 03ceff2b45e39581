//! AssumeRoleWithWebIdentity on the test bed is checked the way STS checks it
//! (tests/testbed/web_identity.py): the token's signature against the issuer's keys (the test
//! apiserver's OIDC discovery and JWKS), its expiry and audience, the IAM OIDC provider of its
//! issuer, and the role's trust policy, decided by the IAM policy simulator. Each refusal is
//! asserted with STS's error code and HTTP status, through aws-sdk-sts (the client
//! src/validate.rs uses), so the wire shape is pinned too.
//!
//! Tokens come from TokenRequest, as the operator's validation and the kubelet (for a projected
//! volume, bound to the Pod) get them. Two kinds cannot come from the apiserver: a token signed
//! by another key, and an expired one (TokenRequest's shortest expiry is 10 minutes). Both are
//! forged here from a real token's header and claims: the first signed with a fresh RSA key, the
//! second signed with the test bed's own ServiceAccount signing key (the test plays the cluster,
//! which holds that key; the same forging with a future expiry is accepted, so the refusal is
//! the expiry's alone).

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use aws_sdk_sts::error::ProvideErrorMetadata;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

use common::{TestBed, aws, namespace, results};

const STS_AUDIENCE: &str = "sts.amazonaws.com";

/// STS's answer to one AssumeRoleWithWebIdentity: Ok(assumed-role ARN) or Err((code, HTTP
/// status, message)).
type Answer = Result<String, (String, u16, String)>;

async fn assume(bed: &TestBed, role_arn: &str, token: &str) -> Answer {
    // No credentials: the call is unsigned, as the SDK's web-identity provider makes it.
    let conf = aws_sdk_sts::config::Builder::new()
        .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
        .region(aws_sdk_sts::config::Region::new("us-east-2"))
        .endpoint_url(bed.var("BUCKETWIRE_AWS_ENDPOINT_URL"))
        .build();
    match aws_sdk_sts::Client::from_conf(conf)
        .assume_role_with_web_identity()
        .role_arn(role_arn)
        .role_session_name("web-identity-test")
        .web_identity_token(token)
        .send()
        .await
    {
        Ok(out) => Ok(out
            .assumed_role_user()
            .map(|u| u.arn().to_string())
            .unwrap_or_default()),
        Err(err) => {
            let status = err.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
            let code = err.code().unwrap_or_default().to_string();
            let message = err.message().unwrap_or_default().to_string();
            Err((code, status, message))
        }
    }
}

/// A namespace with ServiceAccounts `milvus` and its neighbour `other`, and a role whose trust
/// policy is the operator's own (bucketwire::documents::trust_policy) for `milvus`.
struct Fixture {
    bed: TestBed,
    client: kube::Client,
    ns: String,
    issuer: String,
    provider_arn: String,
    role_arn: String,
    iam: aws_sdk_iam::Client,
}

impl Fixture {
    async fn new(prefix: &str) -> Self {
        let bed = TestBed::load();
        let client = bed.client().await;
        let ns = namespace(&client, prefix).await;
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
        for name in ["milvus", "other"] {
            let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": name}})).expect("sa");
            sas.create(&PostParams::default(), &sa)
                .await
                .expect("ServiceAccount");
        }
        let issuer = bed.var("BUCKETWIRE_TESTBED_OIDC_ISSUER").to_string();
        let provider_arn = bed.var("BUCKETWIRE_TESTBED_OIDC_PROVIDER_ARN").to_string();
        let iam = aws::iam(&bed, "us-east-2").await;
        let trust = bucketwire::documents::trust_policy(&provider_arn, &issuer, &ns, "milvus");
        let role_arn = create_role(&iam, &format!("{ns}-milvus"), &trust).await;
        Self {
            bed,
            client,
            ns,
            issuer,
            provider_arn,
            role_arn,
            iam,
        }
    }

    /// A TokenRequest token for ServiceAccount `sa` (no audiences: the apiserver's default).
    async fn token(&self, sa: &str, audiences: &[&str], bound: Option<BoundObjectReference>) -> String {
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: audiences.iter().map(|a| a.to_string()).collect(),
                expiration_seconds: Some(600),
                bound_object_ref: bound,
            },
            ..Default::default()
        };
        Api::<ServiceAccount>::namespaced(self.client.clone(), &self.ns)
            .create_token_request(sa, &PostParams::default(), &request)
            .await
            .expect("TokenRequest")
            .status
            .expect("token status")
            .token
    }

    async fn assume(&self, role_arn: &str, token: &str) -> Answer {
        assume(&self.bed, role_arn, token).await
    }

    /// The test bed's ServiceAccount signing key (the apiserver's --service-account-signing-key-file).
    fn cluster_key(&self) -> RsaKeyPair {
        let kubeconfig = std::path::PathBuf::from(self.bed.var("KUBECONFIG"));
        let pem =
            std::fs::read_to_string(kubeconfig.with_file_name("pki").join("sa.key")).expect("sa.key reads");
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        RsaKeyPair::from_pkcs8(&STANDARD.decode(body).expect("PEM")).expect("PKCS#8 RSA key")
    }
}

async fn create_role(iam: &aws_sdk_iam::Client, name: &str, trust: &Value) -> String {
    iam.create_role()
        .role_name(name)
        .assume_role_policy_document(trust.to_string())
        .send()
        .await
        .expect("role created")
        .role
        .expect("role")
        .arn
}

fn segment(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("JSON"))
}

fn decode(segment: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).expect("base64url")).expect("JSON")
}

/// (header, claims) of a compact JWT.
fn parts(token: &str) -> (Value, Value) {
    let mut it = token.split('.');
    let header = decode(it.next().expect("header"));
    let claims = decode(it.next().expect("claims"));
    (header, claims)
}

/// A JWT with this header and these claims, signed RS256 by `key`.
fn sign(header: &Value, claims: &Value, key: &RsaKeyPair) -> String {
    let input = format!("{}.{}", segment(header), segment(claims));
    let mut signature = vec![0; key.public_modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        input.as_bytes(),
        &mut signature,
    )
    .expect("signs");
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// `claims` with issued-at, not-before and expiry moved so that the token expires at `exp`.
fn expiring_at(claims: &Value, exp: i64) -> Value {
    let mut claims = claims.clone();
    claims["exp"] = json!(exp);
    claims["iat"] = json!(exp - 600);
    claims["nbf"] = json!(exp - 600);
    claims
}

fn refused(answer: &Answer) -> (String, u16) {
    match answer {
        Ok(arn) => (format!("credentials for {arn}"), 200),
        Err((code, status, _)) => (code.clone(), *status),
    }
}

#[tokio::test]
async fn the_cluster_the_provider_and_the_apiserver_have_one_issuer() {
    let f = Fixture::new("webid-issuer").await;
    let eks = aws_sdk_eks::Client::new(&aws::sdk_config(&f.bed, "us-east-2").await);
    let cluster = eks
        .describe_cluster()
        .name(f.bed.var("BUCKETWIRE_CLUSTER_NAME"))
        .send()
        .await
        .expect("DescribeCluster");
    let eks_issuer = cluster
        .cluster()
        .and_then(|c| c.identity())
        .and_then(|i| i.oidc())
        .and_then(|o| o.issuer())
        .expect("the cluster's OIDC issuer")
        .to_string();
    let provider = f
        .iam
        .get_open_id_connect_provider()
        .open_id_connect_provider_arn(&f.provider_arn)
        .send()
        .await
        .expect("GetOpenIDConnectProvider");
    let discovery: Value = serde_json::from_str(
        &f.client
            .request_text(
                http::Request::get("/.well-known/openid-configuration")
                    .body(Vec::new())
                    .expect("request"),
            )
            .await
            .expect("the apiserver serves its OIDC discovery"),
    )
    .expect("discovery JSON");
    let (_, claims) = parts(&f.token("milvus", &[STS_AUDIENCE], None).await);

    assert!(
        eks_issuer.starts_with("https://oidc.eks.us-east-2.amazonaws.com/id/"),
        "an EKS-shaped issuer: {eks_issuer}"
    );
    assert_eq!(f.issuer, eks_issuer, "the test bed's issuer is the EKS cluster's");
    assert_eq!(
        provider.url().map(|u| format!("https://{u}")),
        Some(eks_issuer.clone()),
        "the IAM OIDC provider's URL"
    );
    assert_eq!(
        discovery["issuer"],
        json!(eks_issuer),
        "the apiserver's discovery document"
    );
    assert_eq!(claims["iss"], json!(eks_issuer), "the tokens' iss");
}

#[tokio::test]
async fn a_token_for_the_trusted_service_account_is_accepted() {
    let f = Fixture::new("webid-ok").await;
    let token = f.token("milvus", &[STS_AUDIENCE], None).await;
    let arn = f
        .assume(&f.role_arn, &token)
        .await
        .expect("credentials for the trusted ServiceAccount");
    let role_name = f.role_arn.rsplit('/').next().expect("role name");
    assert!(arn.contains(&format!("assumed-role/{role_name}/")), "{arn}");
}

#[tokio::test]
async fn a_pod_bound_token_as_the_kubelet_projects_it_is_accepted() {
    let f = Fixture::new("webid-pod").await;
    // A Pod (never scheduled: the test bed has no node) and a token bound to it, as the kubelet
    // requests one for a projected volume: it carries the Pod's name and uid in its claims.
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "milvus-0"},
        "spec": {"serviceAccountName": "milvus", "automountServiceAccountToken": false,
                 "containers": [{"name": "milvus", "image": "milvusdb/milvus"}]},
    }))
    .expect("pod");
    let pod = Api::<Pod>::namespaced(f.client.clone(), &f.ns)
        .create(&PostParams::default(), &pod)
        .await
        .expect("Pod created");
    let bound = BoundObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
    };
    let token = f.token("milvus", &[STS_AUDIENCE], Some(bound)).await;
    let (_, claims) = parts(&token);
    assert_eq!(
        claims["kubernetes.io"]["pod"]["uid"],
        json!(pod.metadata.uid),
        "a Pod-bound token: {claims}"
    );
    f.assume(&f.role_arn, &token)
        .await
        .expect("credentials for a Pod-bound token");
}

/// Every way a token or a role can be wrong, each refused with STS's code and status.
#[tokio::test]
async fn sts_refuses_what_sts_refuses() {
    let f = Fixture::new("webid-refused").await;
    let good = f.token("milvus", &[STS_AUDIENCE], None).await;
    let (header, claims) = parts(&good);
    let cluster_key = f.cluster_key();

    // A role made for another cluster: it trusts that cluster's provider (which exists in IAM),
    // with the same namespace and ServiceAccount.
    let other_issuer = format!("https://oidc.eks.us-east-2.amazonaws.com/id/{}", f.ns);
    let other_provider = f
        .iam
        .create_open_id_connect_provider()
        .url(&other_issuer)
        .client_id_list(STS_AUDIENCE)
        .thumbprint_list("9e99a48a9960b14926bb7f3b02e22da2b0ab7280")
        .send()
        .await
        .expect("another cluster's provider")
        .open_id_connect_provider_arn
        .expect("provider ARN");
    let other_trust = bucketwire::documents::trust_policy(&other_provider, &other_issuer, &f.ns, "milvus");
    let other_role = create_role(&f.iam, &format!("{}-other-cluster", f.ns), &other_trust).await;

    let fresh_key = RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key");
    let mut unregistered = claims.clone();
    unregistered["iss"] = json!("https://oidc.eks.us-east-2.amazonaws.com/id/NOPROVIDER");
    let mut from_other_cluster = claims.clone();
    from_other_cluster["iss"] = json!(other_issuer);
    let role_arn = f.role_arn.as_str();
    let missing_role = format!("{}-missing", f.role_arn);

    let cases: Vec<(&str, String, &str, (&str, u16))> = vec![
        (
            "token for a neighbouring ServiceAccount in the same namespace",
            f.token("other", &[STS_AUDIENCE], None).await,
            role_arn,
            ("AccessDenied", 403),
        ),
        (
            "token with the apiserver's default audience (no sts.amazonaws.com)",
            f.token("milvus", &[], None).await,
            role_arn,
            ("InvalidIdentityToken", 400),
        ),
        (
            "token's claims signed by a fresh RSA key under the cluster key's kid",
            sign(&header, &claims, &fresh_key),
            role_arn,
            ("InvalidIdentityToken", 400),
        ),
        (
            "token expired a minute ago, signed by the cluster's key",
            sign(&header, &expiring_at(&claims, now() - 60), &cluster_key),
            role_arn,
            ("ExpiredTokenException", 400),
        ),
        (
            "role that trusts another cluster's provider",
            good.clone(),
            other_role.as_str(),
            ("AccessDenied", 403),
        ),
        (
            "issuer with no IAM OIDC provider in the account",
            sign(&header, &unregistered, &cluster_key),
            role_arn,
            ("InvalidIdentityToken", 400),
        ),
        (
            "issuer whose provider exists but whose discovery is not served (another cluster's)",
            sign(&header, &from_other_cluster, &cluster_key),
            role_arn,
            ("InvalidIdentityToken", 400),
        ),
        (
            "role that does not exist",
            good.clone(),
            missing_role.as_str(),
            ("AccessDenied", 403),
        ),
    ];

    let mut table = Vec::new();
    for (case, token, role, expected) in &cases {
        let answer = f.assume(role, token).await;
        let message = answer.as_ref().err().map(|e| e.2.clone()).unwrap_or_default();
        table.push(json!({"case": case, "expected": {"code": expected.0, "status": expected.1},
                          "got": {"code": refused(&answer).0, "status": refused(&answer).1, "message": message}}));
    }
    // Controls: the forging itself makes tokens STS accepts, so each refusal above is due to the
    // one thing that case changed.
    let resigned = f
        .assume(
            role_arn,
            &sign(&header, &expiring_at(&claims, now() + 600), &cluster_key),
        )
        .await;
    let unchanged = f.assume(role_arn, &good).await;
    f.iam
        .delete_open_id_connect_provider()
        .open_id_connect_provider_arn(&other_provider)
        .send()
        .await
        .expect("the other cluster's provider is deleted");
    results::record(
        "web_identity",
        &json!({"refusals": table, "controls": {
            "same claims re-signed by the cluster's key, expiring in 10 minutes": refused(&resigned),
            "the real token": refused(&unchanged)}}),
    );

    assert!(
        resigned.is_ok(),
        "a token forged with the cluster's key and a future expiry: {resigned:?}"
    );
    assert!(unchanged.is_ok(), "the real token: {unchanged:?}");
    for ((case, _, _, expected), row) in cases.iter().zip(&table) {
        assert_eq!(
            (
                row["got"]["code"].as_str().unwrap_or_default(),
                row["got"]["status"].as_u64().unwrap_or(0)
            ),
            (expected.0, u64::from(expected.1)),
            "{case}: {row}"
        );
    }
    let message = |i: usize| {
        table[i]["got"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        message(0),
        "Not authorized to perform sts:AssumeRoleWithWebIdentity"
    );
    assert_eq!(message(1), "Incorrect token audience");
    assert_eq!(
        message(5),
        "No OpenIDConnect provider found in your account for https://oidc.eks.us-east-2.amazonaws.com/id/NOPROVIDER"
    );
    assert!(message(3).starts_with("Token expired"), "{}", message(3));
}
