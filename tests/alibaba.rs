//! Alibaba Cloud integrations on the test bed, against its FAKES of RAM, STS, ACK and OSS
//! (tests/testbed/alibaba/: no emulator of them exists; their wire format is pinned by
//! tests/alibaba_fake.rs with Alibaba's official SDKs). RRSA becomes Ready and Validated as the
//! Milvus ServiceAccount (TokenRequest, AssumeRoleWithOIDC, the probe through OSS's
//! S3-compatible API); the seed's cross-account flow with an external ID lets exactly the
//! trusted account in; drift is repaired; deletion removes exactly what bucketwire owns; another
//! account's bucket and an account outside the allow-list are refused before any write.

mod common;

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams};
use serde_json::{Value, json};

use bucketwire::api::{Access, BucketIntegration};
use bucketwire::documents::canonical;
use bucketwire::provider::alibaba::Alibaba;
use bucketwire::provider::alibaba::documents::{
    bucket_policy, cross_account_policy, cross_account_trust, rrsa_trust,
};
use bucketwire::provider::alibaba::signer::AccessKey;
use common::integration::{condition, create, ready_status, wait_condition};
use common::operator::Operator;
use common::{TestBed, setup, wait_for};

const REGION: &str = "cn-hangzhou";

fn key(bed: &TestBed, prefix: &str) -> AccessKey {
    AccessKey {
        id: bed.var(&format!("{prefix}ACCESS_KEY_ID")).into(),
        secret: bed.var(&format!("{prefix}ACCESS_KEY_SECRET")).into(),
        security_token: None,
    }
}

/// The main account's administrator (the test's own view of the account).
fn admin(bed: &TestBed) -> AccessKey {
    key(bed, "BUCKETWIRE_TESTBED_ALIBABA_")
}

/// The administrator of the account standing for Zilliz Cloud.
fn second_admin(bed: &TestBed) -> AccessKey {
    key(bed, "BUCKETWIRE_TESTBED_ALIBABA_SECOND_")
}

fn cloud(bed: &TestBed) -> Alibaba {
    Alibaba::new(Some(bed.var("BUCKETWIRE_TESTBED_ALIBABA_ENDPOINT_URL")), None).expect("endpoint")
}

/// The operator's RAM user: exactly deploy/alibaba/operator-policy.json, rendered for the test
/// bed's account, ACK cluster and bucket prefix (tests/testbed/alibaba/seed.py).
fn operator_key(bed: &TestBed) -> AccessKey {
    key(bed, "BUCKETWIRE_TESTBED_ALIBABA_OPERATOR_")
}

fn operator(bed: &TestBed, ns: &str) -> Operator {
    let key = operator_key(bed);
    Operator::start_with_env(
        bed,
        ns,
        &[
            "--alibaba-endpoint-url",
            bed.var("BUCKETWIRE_TESTBED_ALIBABA_ENDPOINT_URL"),
            "--ack-cluster-id",
            bed.var("BUCKETWIRE_TESTBED_ALIBABA_CLUSTER_ID"),
            "--allowed-trusted-accounts",
            bed.var("BUCKETWIRE_TESTBED_ALIBABA_SECOND_ACCOUNT_ID"),
        ],
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", key.id.as_str()),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", key.secret.as_str()),
        ],
    )
}

/// The OSS fake's request log: every request it answered.
fn oss_requests(bed: &TestBed) -> Vec<Value> {
    std::fs::read_to_string(bed.var("BUCKETWIRE_TESTBED_OSS_REQUEST_LOG"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

async fn deleted(client: &kube::Client, ns: &str, name: &str) {
    let api: Api<BucketIntegration> = Api::namespaced(client.clone(), ns);
    api.delete(name, &DeleteParams::default()).await.expect("delete");
    wait_for(
        &format!("{ns}/{name} to be cleaned up and gone"),
        Duration::from_secs(60),
        || async { api.get_opt(name).await.ok().filter(Option::is_none).map(|_| ()) },
    )
    .await;
}

#[tokio::test]
async fn rrsa_is_ready_and_validated_as_the_service_account_repairs_drift_and_cleans_up() {
    let (bed, client, ns) = setup("alirrsa").await;
    let operator = operator(&bed, &ns);
    create(
        &client,
        &ns,
        "milvus",
        json!({"provider": "alibaba", "region": REGION, "identity": {"mode": "RRSA"},
               "bucket": {"deletionPolicy": "Delete"}}),
    )
    .await;
    let status = ready_status(&client, &ns, "milvus", &operator).await;
    let api: Api<BucketIntegration> = Api::namespaced(client.clone(), &ns);
    let bi = api.get("milvus").await.expect("integration");
    let validated = condition(&bi, "Validated").expect("Validated");
    assert_eq!(
        (validated.status.as_str(), validated.reason.as_str()),
        ("True", "Validated"),
        "{validated:?}"
    );
    assert!(validated.message.contains("assumed"), "{}", validated.message);

    let account = bed.var("BUCKETWIRE_TESTBED_ALIBABA_ACCOUNT_ID");
    let provider = bed.var("BUCKETWIRE_TESTBED_ALIBABA_OIDC_PROVIDER_ARN");
    assert_eq!(status.oidc_provider_arn.as_deref(), Some(provider));
    let role_arn = status.role_arn.clone().expect("role");
    assert!(
        role_arn.starts_with(&format!("acs:ram::{account}:role/")),
        "{role_arn}"
    );
    let bucket = status.bucket.clone().and_then(|b| b.name).expect("bucket");
    assert_eq!(
        status.bucket.as_ref().and_then(|b| b.endpoint.clone()).as_deref(),
        Some("oss-cn-hangzhou.aliyuncs.com")
    );

    // The role trusts exactly this ServiceAccount through the cluster's RRSA provider.
    let cloud = cloud(&bed);
    let admin = admin(&bed);
    let role_name = role_arn.rsplit('/').next().expect("name").to_string();
    let role = cloud
        .api
        .get_role(&admin, &role_name)
        .await
        .expect("GetRole")
        .expect("role exists");
    let issuer = bed.var("BUCKETWIRE_TESTBED_ALIBABA_OIDC_ISSUER");
    assert_eq!(
        canonical(&role.trust),
        canonical(&rrsa_trust(provider, issuer, &ns, "milvus"))
    );

    // The values wire OSS the way Milvus's Alibaba credential chain reads it, with no keys.
    let cm = Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .get("milvus-milvus-values")
        .await
        .expect("values");
    let values: Value =
        serde_yaml::from_str(&cm.data.expect("data")["values.yaml"]).expect("values.yaml is YAML");
    let s3 = &values["externalS3"];
    assert_eq!(s3["cloudProvider"], "aliyun");
    assert_eq!(s3["useVirtualHost"], true);
    assert_eq!(s3["useIAM"], true);
    assert_eq!(s3["host"], "oss-cn-hangzhou.aliyuncs.com");
    assert_eq!(
        (s3["accessKey"].as_str(), s3["secretKey"].as_str()),
        (Some(""), Some(""))
    );
    assert_eq!(values["standalone"]["extraEnv"][0]["value"], role_arn.as_str());
    assert_eq!(values["standalone"]["extraEnv"][1]["value"], provider);

    // The probe ran as the role's STS session, through the S3-compatible API, and left nothing.
    let session = format!(":assumed-role/{role_name}/");
    let as_workload: Vec<Value> = oss_requests(&bed)
        .into_iter()
        .filter(|r| {
            r["caller"]
                .as_str()
                .is_some_and(|c| c.to_lowercase().contains(&session.to_lowercase()))
        })
        .collect();
    for operation in ["PutObject", "GetObject", "DeleteObject"] {
        assert!(
            as_workload.iter().any(|r| r["protocol"] == "s3"
                && r["operation"] == operation
                && r["status"].as_u64().is_some_and(|s| (200..300).contains(&s))),
            "{operation} as the workload: {as_workload:#?}"
        );
    }
    let oss = cloud.oss(REGION);
    assert!(
        oss.is_empty(&admin, &bucket).await.expect("ListObjectVersions"),
        "the probe left objects"
    );

    // Drift: the bucket policy, the role's trust and the permission policy are repaired.
    let desired_policy = bucket_policy(account, &bucket);
    let mut loosened = desired_policy.clone();
    loosened["Statement"][0]["Resource"] = json!([format!("acs:oss:*:{account}:{bucket}")]);
    oss.put_policy(&admin, &bucket, &loosened)
        .await
        .expect("PutBucketPolicy");
    let other_trust = cross_account_trust(bed.var("BUCKETWIRE_TESTBED_ALIBABA_SECOND_ACCOUNT_ID"), "x");
    cloud
        .api
        .update_role_trust(&admin, &role_name, &other_trust)
        .await
        .expect("UpdateRole");
    wait_for("the drift to be repaired", Duration::from_secs(30), || async {
        let policy = oss.policy(&admin, &bucket).await.ok()??;
        let role = cloud.api.get_role(&admin, &role_name).await.ok()??;
        (canonical(&policy) == canonical(&desired_policy)
            && canonical(&role.trust) == canonical(&rrsa_trust(provider, issuer, &ns, "milvus")))
        .then_some(())
    })
    .await;

    // Deletion (deletionPolicy Delete): role, policy and the empty bucket go.
    let policy_name = status
        .policy_arn
        .clone()
        .expect("policy")
        .rsplit('/')
        .next()
        .expect("name")
        .to_string();
    deleted(&client, &ns, "milvus").await;
    assert!(
        cloud
            .api
            .get_role(&admin, &role_name)
            .await
            .expect("GetRole")
            .is_none()
    );
    assert!(
        cloud
            .api
            .get_policy(&admin, &policy_name)
            .await
            .expect("GetPolicy")
            .is_none()
    );
    assert!(
        oss.bucket_info(&admin, &bucket)
            .await
            .expect("GetBucketInfo")
            .is_none(),
        "the empty bucket is deleted"
    );
}

#[tokio::test]
async fn the_seeds_cross_account_flow_lets_exactly_the_trusted_account_in_with_its_external_id() {
    let (bed, client, ns) = setup("alixacct").await;
    let operator = operator(&bed, &ns);
    let second = bed.var("BUCKETWIRE_TESTBED_ALIBABA_SECOND_ACCOUNT_ID");
    create(
        &client,
        &ns,
        "zilliz",
        json!({"provider": "alibaba", "region": REGION,
               "identity": {"mode": "CrossAccount", "crossAccount": {"trustedAccountId": second, "externalId": "zilliz-external-id-1"}}}),
    )
    .await;
    let status = ready_status(&client, &ns, "zilliz", &operator).await;
    let bi = Api::<BucketIntegration>::namespaced(client.clone(), &ns)
        .get("zilliz")
        .await
        .expect("integration");
    let validated = condition(&bi, "Validated").expect("Validated");
    assert_eq!(validated.status, "True", "{validated:?}");
    assert!(
        validated.message.contains("checked statically"),
        "{}",
        validated.message
    );
    assert_eq!(status.external_id.as_deref(), Some("zilliz-external-id-1"));
    assert_eq!(status.trusted_account_id.as_deref(), Some(second));

    let account = bed.var("BUCKETWIRE_TESTBED_ALIBABA_ACCOUNT_ID");
    let cloud = cloud(&bed);
    let admin = admin(&bed);
    let role_arn = status.role_arn.clone().expect("role");
    let role_name = role_arn.rsplit('/').next().expect("name").to_string();
    let policy_name = status
        .policy_arn
        .clone()
        .expect("policy")
        .rsplit('/')
        .next()
        .expect("name")
        .to_string();
    let bucket = status.bucket.clone().and_then(|b| b.name).expect("bucket");
    let role = cloud
        .api
        .get_role(&admin, &role_name)
        .await
        .expect("GetRole")
        .expect("role");
    assert_eq!(
        canonical(&role.trust),
        canonical(&cross_account_trust(second, "zilliz-external-id-1"))
    );
    let policy = cloud
        .api
        .get_policy(&admin, &policy_name)
        .await
        .expect("GetPolicy")
        .expect("policy");
    assert_eq!(
        canonical(&policy.document),
        canonical(&cross_account_policy(account, &bucket, Access::ReadWrite, None))
    );

    // The trusted account assumes the role with the external ID and writes to the bucket; with
    // another external ID, or as the bucket's own account, STS refuses.
    let zilliz = second_admin(&bed);
    let session = cloud
        .api
        .assume_role(&zilliz, &role_arn, "zilliz", Some("zilliz-external-id-1"))
        .await
        .expect("the trusted account assumes the role with its external ID");
    cloud
        .s3_compatible(REGION, &session)
        .put_object()
        .bucket(&bucket)
        .key("files/from-zilliz")
        .body(b"vectors".to_vec().into())
        .send()
        .await
        .expect("the role writes to the bucket through OSS's S3-compatible API");
    let wrong = cloud
        .api
        .assume_role(&zilliz, &role_arn, "zilliz", Some("guess"))
        .await;
    assert!(wrong.is_err(), "another external ID is refused");
    let no_id = cloud.api.assume_role(&zilliz, &role_arn, "zilliz", None).await;
    assert!(no_id.is_err(), "no external ID is refused");

    // Deletion with the default deletionPolicy (Retain): role and policy go, the bucket and
    // its data stay.
    deleted(&client, &ns, "zilliz").await;
    assert!(
        cloud
            .api
            .get_role(&admin, &role_name)
            .await
            .expect("GetRole")
            .is_none()
    );
    assert!(
        cloud
            .api
            .get_policy(&admin, &policy_name)
            .await
            .expect("GetPolicy")
            .is_none()
    );
    let oss = cloud.oss(REGION);
    assert!(
        oss.bucket_info(&admin, &bucket)
            .await
            .expect("GetBucketInfo")
            .is_some(),
        "the bucket is kept"
    );
    assert!(
        !oss.is_empty(&admin, &bucket).await.expect("ListObjectVersions"),
        "its data is kept"
    );
}

#[tokio::test]
async fn another_accounts_bucket_and_an_account_outside_the_allow_list_are_refused_before_any_write() {
    let (bed, client, ns) = setup("alihostile").await;
    let operator = operator(&bed, &ns);
    let cloud = cloud(&bed);
    let oss = cloud.oss(REGION);

    // OSS bucket names are global: the other account already holds this one.
    let taken = format!("bw-{ns}-taken");
    oss.create_bucket(&second_admin(&bed), &taken)
        .await
        .expect("the other account's bucket");
    create(
        &client,
        &ns,
        "borrow",
        json!({"provider": "alibaba", "region": REGION, "identity": {"mode": "RRSA"}, "bucket": {"name": taken}}),
    )
    .await;
    let bi = wait_condition(
        &client,
        &ns,
        "borrow",
        "Ready",
        "False",
        Some("BucketOwnedElsewhere"),
        &operator,
    )
    .await;
    let status = bi.status.clone().expect("status");
    assert!(
        condition(&bi, "PolicyReady").is_some_and(|c| c.status != "True"),
        "nothing after the bucket step ran"
    );
    let role_name = status
        .role_arn
        .clone()
        .expect("recorded")
        .rsplit('/')
        .next()
        .expect("name")
        .to_string();
    assert!(
        cloud
            .api
            .get_role(&admin(&bed), &role_name)
            .await
            .expect("GetRole")
            .is_none(),
        "no role was made"
    );

    // An account the operator does not allow.
    create(
        &client,
        &ns,
        "stranger",
        json!({"provider": "alibaba", "region": REGION,
               "identity": {"mode": "CrossAccount", "crossAccount": {"trustedAccountId": "9999888877776666"}}}),
    )
    .await;
    let bi = wait_condition(
        &client,
        &ns,
        "stranger",
        "Ready",
        "False",
        Some("TrustNotAllowed"),
        &operator,
    )
    .await;
    assert!(
        bi.status.as_ref().and_then(|s| s.role_arn.clone()).is_none(),
        "refused before anything was recorded or written"
    );
}
