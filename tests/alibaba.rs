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
use bucketwire::provider::alibaba::documents::{
    bucket_policy, cross_account_policy, cross_account_trust, permission_policy, rrsa_trust,
};
use common::alibaba::{REGION, admin, cloud, operator_key, oss_requests, second_admin, start_operator};
use common::integration::{condition, create, ready_status, wait_condition};
use common::operator::Operator;
use common::{setup, wait_for};

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
    let operator = start_operator(&bed, &ns, &[]);
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
    let policy_name = status
        .policy_arn
        .clone()
        .expect("policy")
        .rsplit('/')
        .next()
        .expect("name")
        .to_string();
    let desired_permissions = permission_policy(account, &bucket, Access::ReadWrite, None);
    let widened = json!({"Version": "1", "Statement": [
        {"Effect": "Allow", "Action": ["oss:*"], "Resource": ["acs:oss:*:*:*"]}]});
    cloud
        .api
        .create_policy_version(&admin, &policy_name, &widened)
        .await
        .expect("CreatePolicyVersion");
    wait_for("the drift to be repaired", Duration::from_secs(30), || async {
        let policy = oss.policy(&admin, &bucket).await.ok()??;
        let role = cloud.api.get_role(&admin, &role_name).await.ok()??;
        let permissions = cloud.api.get_policy(&admin, &policy_name).await.ok()??;
        (canonical(&policy) == canonical(&desired_policy)
            && canonical(&role.trust) == canonical(&rrsa_trust(provider, issuer, &ns, "milvus"))
            && canonical(&permissions.document) == canonical(&desired_permissions))
        .then_some(())
    })
    .await;

    // Deletion (deletionPolicy Delete): role, policy (with its versions) and the empty bucket go.
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
    let operator = start_operator(&bed, &ns, &[]);
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
        .s3_compatible(REGION, &session, "operator")
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
    let operator = start_operator(&bed, &ns, &[]);
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

/// As tests/lifecycle.rs's S3 case: an untagged OSS bucket of the operator's own account is
/// refused until the operator's --adopt-buckets names it; adopted, it gets our uid tag, keeps its
/// own tags and its data.
#[tokio::test]
async fn an_untagged_oss_bucket_is_adopted_only_when_the_operator_allows_it() {
    let (bed, client, ns) = setup("aliadopt").await;
    let cloud = cloud(&bed);
    let oss = cloud.oss(REGION);
    let admin = admin(&bed);
    let legacy = format!("bw-{ns}-legacy");
    oss.create_bucket(&admin, &legacy).await.expect("PutBucket");
    oss.put_tags(
        &admin,
        &legacy,
        &[("owner".to_string(), "data-team".to_string())].into(),
    )
    .await
    .expect("PutBucketTags");
    cloud
        .s3_compatible(REGION, &admin, "operator")
        .put_object()
        .bucket(&legacy)
        .key("files/existing")
        .body(b"precious".to_vec().into())
        .send()
        .await
        .expect("PutObject");

    let mut operator = start_operator(&bed, &ns, &[]);
    create(
        &client,
        &ns,
        "legacy",
        json!({"provider": "alibaba", "region": REGION, "identity": {"mode": "RRSA"},
               "bucket": {"name": legacy, "create": false}}),
    )
    .await;
    let bi = wait_condition(
        &client,
        &ns,
        "legacy",
        "Ready",
        "False",
        Some("BucketOwnedElsewhere"),
        &operator,
    )
    .await;
    assert!(
        condition(&bi, "Ready")
            .expect("ready")
            .message
            .contains("allow-list"),
        "{:?}",
        condition(&bi, "Ready")
    );
    assert!(
        !oss.tags(&admin, &legacy)
            .await
            .expect("GetBucketTags")
            .contains_key("bucketwire.io/uid"),
        "refused means untouched"
    );

    operator.kill();
    let operator = start_operator(&bed, &ns, &["--adopt-buckets", &legacy]);
    let status = ready_status(&client, &ns, "legacy", &operator).await;
    let bi = Api::<BucketIntegration>::namespaced(client.clone(), &ns)
        .get("legacy")
        .await
        .expect("integration");
    assert_eq!(condition(&bi, "BucketReady").expect("bucket").reason, "Adopted");
    assert_eq!(
        status.bucket.and_then(|b| b.name).as_deref(),
        Some(legacy.as_str())
    );
    let tags = oss.tags(&admin, &legacy).await.expect("GetBucketTags");
    assert_eq!(tags.get("bucketwire.io/uid"), bi.metadata.uid.as_ref());
    assert_eq!(
        tags.get("owner").map(String::as_str),
        Some("data-team"),
        "existing tags are kept"
    );
    let existing = cloud
        .s3_compatible(REGION, &admin, "operator")
        .get_object()
        .bucket(&legacy)
        .key("files/existing")
        .send()
        .await
        .expect("GetObject")
        .body
        .collect()
        .await
        .expect("body")
        .into_bytes();
    assert_eq!(&existing[..], b"precious");
}

/// The operator itself by RRSA, with no long-lived key: a RAM role (named outside
/// `bucketwire-*`) trusting the operator's ServiceAccount through the cluster's RRSA provider
/// and carrying exactly the operator policy; the operator reads the three `ALIBABA_CLOUD_*`
/// variables and its token file, as ACK's webhook would give them. With those credentials it
/// cannot rewrite its own policy or its own role's trust.
#[tokio::test]
async fn the_operator_runs_by_rrsa_without_a_key_and_cannot_rewrite_its_own_permissions() {
    use k8s_openapi::api::core::v1::ServiceAccount;
    use kube::api::PostParams;

    let (bed, client, ns) = setup("alioprrsa").await;
    let cloud = cloud(&bed);
    let admin = admin(&bed);
    let provider = bed.var("BUCKETWIRE_TESTBED_ALIBABA_OIDC_PROVIDER_ARN");
    let issuer = bed.var("BUCKETWIRE_TESTBED_ALIBABA_OIDC_ISSUER");
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "bucketwire-operator"}})).expect("sa");
    Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &sa)
        .await
        .expect("ServiceAccount");
    let role_name = format!("BucketwireOperator-{ns}");
    let role = cloud
        .api
        .create_role(
            &admin,
            &role_name,
            &rrsa_trust(provider, issuer, &ns, "bucketwire-operator"),
            "bucketwire's operator by RRSA (test)",
            &Default::default(),
        )
        .await
        .expect("CreateRole");
    cloud
        .api
        .attach_policy_to_role(&admin, "BucketwireOperator", &role_name)
        .await
        .expect("AttachPolicyToRole");
    let token =
        common::aws::service_account_token(&client, &ns, "bucketwire-operator", Some("sts.aliyuncs.com"))
            .await;
    let token_file = std::env::temp_dir().join(format!("bucketwire-{ns}-rrsa-token"));
    std::fs::write(&token_file, &token).expect("token file");

    let operator = Operator::start_with_env(
        &bed,
        &ns,
        &[
            "--alibaba-endpoint-url",
            bed.var("BUCKETWIRE_TESTBED_ALIBABA_ENDPOINT_URL"),
            "--ack-cluster-id",
            bed.var("BUCKETWIRE_TESTBED_ALIBABA_CLUSTER_ID"),
        ],
        &[
            ("ALIBABA_CLOUD_ROLE_ARN", role.arn.as_str()),
            ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", provider),
            (
                "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
                token_file.to_str().expect("path"),
            ),
        ],
    );
    create(
        &client,
        &ns,
        "milvus",
        json!({"provider": "alibaba", "region": REGION, "identity": {"mode": "RRSA"},
               "bucket": {"deletionPolicy": "Delete"}}),
    )
    .await;
    let status = ready_status(&client, &ns, "milvus", &operator).await;
    let bi = Api::<BucketIntegration>::namespaced(client.clone(), &ns)
        .get("milvus")
        .await
        .expect("integration");
    assert_eq!(condition(&bi, "Validated").expect("Validated").status, "True");
    // Every control-plane write was made as the operator's RRSA session.
    let session = format!(":assumed-role/{}/bucketwire-operator", role_name.to_lowercase());
    let log =
        std::fs::read_to_string(bed.var("BUCKETWIRE_TESTBED_ALIBABA_REQUEST_LOG")).expect("request log");
    let as_operator = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| {
            r["caller"]
                .as_str()
                .is_some_and(|c| c.to_lowercase().contains(&session))
        })
        .filter_map(|r| r["action"].as_str().map(str::to_string))
        .collect::<Vec<_>>();
    for action in ["CreatePolicy", "CreateRole", "AttachPolicyToRole"] {
        assert!(
            as_operator.iter().any(|a| a == action),
            "{action} as {session}: {as_operator:?}"
        );
    }
    assert!(status.role_arn.is_some());

    // The operator's own permissions are outside what its policy lets it manage.
    let own = cloud
        .api
        .assume_role_with_oidc(&role.arn, provider, &token, "escalation-check")
        .await
        .expect("the operator's RRSA session");
    let widened =
        json!({"Version": "1", "Statement": [{"Effect": "Allow", "Action": ["*"], "Resource": ["*"]}]});
    let rewrite = cloud
        .api
        .create_policy_version(&own, "BucketwireOperator", &widened)
        .await;
    assert!(rewrite.is_err(), "the operator rewrote its own policy");
    let retrust = cloud
        .api
        .update_role_trust(
            &own,
            &role_name,
            &cross_account_trust(bed.var("BUCKETWIRE_TESTBED_ALIBABA_SECOND_ACCOUNT_ID"), "x"),
        )
        .await;
    assert!(retrust.is_err(), "the operator rewrote its own role's trust");
    deleted(&client, &ns, "milvus").await;
    let _ = std::fs::remove_file(&token_file);
}

#[tokio::test]
async fn bucketwire_validate_proves_alibaba_wiring_from_a_terminal_and_names_what_broke() {
    let (bed, client, ns) = setup("alicli").await;
    let operator = start_operator(&bed, &ns, &[]);
    let second = bed.var("BUCKETWIRE_TESTBED_ALIBABA_SECOND_ACCOUNT_ID");
    create(
        &client,
        &ns,
        "milvus",
        json!({"provider": "alibaba", "region": REGION, "identity": {"mode": "RRSA"}}),
    )
    .await;
    create(
        &client,
        &ns,
        "zilliz",
        json!({"provider": "alibaba", "region": REGION,
               "identity": {"mode": "CrossAccount", "crossAccount": {"trustedAccountId": second}}}),
    )
    .await;
    let rrsa = ready_status(&client, &ns, "milvus", &operator).await;
    let cross = ready_status(&client, &ns, "zilliz", &operator).await;
    // Stopped, so that nothing repairs what the test breaks below.
    drop(operator);

    // The caller's own credentials: here the operator's RAM user (its policy grants what
    // `validate --help` lists).
    let key = operator_key(&bed);
    let env = [
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", key.id.as_str()),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", key.secret.as_str()),
        (
            "BUCKETWIRE_ALIBABA_ENDPOINT_URL",
            bed.var("BUCKETWIRE_TESTBED_ALIBABA_ENDPOINT_URL"),
        ),
    ];
    let kubeconfig = std::path::Path::new(bed.var("KUBECONFIG"));
    let validate =
        |name: &str| common::run_cli_with_env(&bed, &["validate", &format!("{ns}/{name}")], kubeconfig, &env);
    let (code, out) = validate("milvus");
    assert_eq!(code, 0, "{out}");
    let role_arn = rrsa.role_arn.clone().expect("role");
    assert!(
        out.contains(&format!(
            "Validated: True (assumed {role_arn} as system:serviceaccount:{ns}:milvus"
        )),
        "{out}"
    );
    assert!(out.contains("AssumeRoleWithOIDC"), "{out}");
    let (code, out) = validate("zilliz");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("the trust policy lets only account {second} assume")),
        "{out}"
    );
    assert!(out.contains("exists in cn-hangzhou"), "{out}");

    // Broken in RAM: the RRSA role trusts another ServiceAccount; the cross-account policy is
    // widened. Each is named, with exit code 1.
    let cloud = cloud(&bed);
    let admin = admin(&bed);
    let provider = bed.var("BUCKETWIRE_TESTBED_ALIBABA_OIDC_PROVIDER_ARN");
    let issuer = bed.var("BUCKETWIRE_TESTBED_ALIBABA_OIDC_ISSUER");
    let role_name = role_arn.rsplit('/').next().expect("name");
    cloud
        .api
        .update_role_trust(&admin, role_name, &rrsa_trust(provider, issuer, &ns, "neighbour"))
        .await
        .expect("UpdateRole");
    let (code, out) = validate("milvus");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Validated: False, AssumeRoleFailed"), "{out}");
    assert!(
        out.contains(&format!("system:serviceaccount:{ns}:neighbour")),
        "{out}"
    );

    let policy_arn = cross.policy_arn.clone().expect("policy");
    let widened = json!({"Version": "1", "Statement": [
        {"Effect": "Allow", "Action": ["oss:*"], "Resource": ["acs:oss:*:*:*"]}]});
    cloud
        .api
        .create_policy_version(&admin, policy_arn.rsplit('/').next().expect("name"), &widened)
        .await
        .expect("CreatePolicyVersion");
    let (code, out) = validate("zilliz");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("{policy_arn} is not the expected one")),
        "{out}"
    );

    // Not an integration at all: exit code 1, no cloud call needed.
    let (code, out) = validate("absent");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("cannot read BucketIntegration"), "{out}");

    // Cleanup by a new operator (retained buckets stay; role and policy go).
    let operator = start_operator(&bed, &ns, &[]);
    deleted(&client, &ns, "milvus").await;
    deleted(&client, &ns, "zilliz").await;
    drop(operator);
}

#[tokio::test]
async fn a_bucket_made_public_or_versioned_behind_the_operators_back_is_repaired() {
    let (bed, client, ns) = setup("alisettings").await;
    let operator = start_operator(&bed, &ns, &[]);
    let second = bed.var("BUCKETWIRE_TESTBED_ALIBABA_SECOND_ACCOUNT_ID");
    create(
        &client,
        &ns,
        "zilliz",
        json!({"provider": "alibaba", "region": REGION, "bucket": {"deletionPolicy": "Delete"},
               "identity": {"mode": "CrossAccount", "crossAccount": {"trustedAccountId": second}}}),
    )
    .await;
    let status = ready_status(&client, &ns, "zilliz", &operator).await;
    let bucket = status.bucket.and_then(|b| b.name).expect("bucket");
    let admin = admin(&bed);
    let oss = cloud(&bed).oss(REGION);
    let info = oss
        .bucket_info(&admin, &bucket)
        .await
        .expect("GetBucketInfo")
        .expect("bucket");
    assert_eq!(
        (
            info.acl.as_str(),
            info.block_public_access,
            info.sse_algorithm.as_str()
        ),
        ("private", Some(true), "AES256"),
        "{info:?}"
    );

    // Someone opens the bucket to the internet (Block Public Access off, then a public ACL)
    // and turns versioning on.
    oss.put_block_public_access(&admin, &bucket, false)
        .await
        .expect("PutBucketPublicAccessBlock");
    oss.put_acl(&admin, &bucket, "public-read")
        .await
        .expect("PutBucketAcl");
    oss.put_versioning(&admin, &bucket, true)
        .await
        .expect("PutBucketVersioning");
    let repaired = wait_for(
        "the bucket settings to be repaired",
        Duration::from_secs(30),
        || async {
            let info = oss.bucket_info(&admin, &bucket).await.ok()??;
            (info.acl == "private"
                && info.block_public_access == Some(true)
                && info.versioning == "Suspended")
                .then_some(info)
        },
    )
    .await;
    assert_eq!(repaired.sse_algorithm, "AES256");
    // The repair was the operator's, as its RAM user, with the calls its policy grants.
    let key = operator_key(&bed);
    let by_operator: Vec<String> = oss_requests(&bed)
        .into_iter()
        .filter(|r| {
            r["host"]
                .as_str()
                .is_some_and(|h| h.starts_with(&format!("{bucket}.")))
                && r["accessKeyId"] == key.id.as_str()
        })
        .filter(|r| r["status"].as_u64().is_some_and(|s| (200..300).contains(&s)))
        .filter_map(|r| r["operation"].as_str().map(str::to_string))
        .collect();
    for operation in [
        "PutBucketAcl",
        "PutBucketPublicAccessBlock",
        "PutBucketVersioning",
    ] {
        assert!(
            by_operator.iter().any(|o| o == operation),
            "{operation} by the operator: {by_operator:?}"
        );
    }
    deleted(&client, &ns, "zilliz").await;
    assert!(
        oss.bucket_info(&admin, &bucket)
            .await
            .expect("GetBucketInfo")
            .is_none()
    );
}

/// RRSA through ACK's pod-identity webhook (`alibaba.rrsaInjection: Webhook`): the
/// ServiceAccount carries the webhook's role-name annotation and the values carry no RRSA
/// variables (the webhook injects them; the test bed has no such webhook, so what it injects is
/// not exercised here); Ready says the namespace label and the restart it needs. Switching back
/// to the values removes exactly bucketwire's annotation.
#[tokio::test]
async fn rrsa_through_acks_pod_identity_webhook_annotates_the_service_account_instead() {
    use k8s_openapi::api::core::v1::ServiceAccount;
    use kube::ResourceExt;
    use kube::api::{Patch, PatchParams};

    let (bed, client, ns) = setup("aliwebhook").await;
    let operator = start_operator(&bed, &ns, &[]);
    let sa_api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    // An existing ServiceAccount (as Milvus's chart makes it): bucketwire only annotates it.
    sa_api
        .create(
            &Default::default(),
            &serde_json::from_value(json!({"metadata": {"name": "milvus"}})).expect("sa"),
        )
        .await
        .expect("ServiceAccount");
    create(
        &client,
        &ns,
        "milvus",
        json!({"provider": "alibaba", "region": REGION, "identity": {"mode": "RRSA"},
               "serviceAccount": {"create": false}, "alibaba": {"rrsaInjection": "Webhook"}}),
    )
    .await;
    let status = ready_status(&client, &ns, "milvus", &operator).await;
    let api: Api<BucketIntegration> = Api::namespaced(client.clone(), &ns);
    let bi = api.get("milvus").await.expect("integration");
    let ready = condition(&bi, "Ready").expect("Ready");
    assert!(
        ready.message.contains(&format!(
            "kubectl label namespace {ns} pod-identity.alibabacloud.com/injection=on"
        )),
        "{}",
        ready.message
    );
    assert_eq!(condition(&bi, "Validated").expect("Validated").status, "True");
    let role_name = status
        .role_arn
        .as_deref()
        .and_then(|a| a.rsplit('/').next())
        .expect("role")
        .to_string();
    let annotation = |sa: &ServiceAccount| {
        sa.annotations()
            .get("pod-identity.alibabacloud.com/role-name")
            .cloned()
    };
    let sa = sa_api.get("milvus").await.expect("sa");
    assert_eq!(annotation(&sa).as_deref(), Some(role_name.as_str()));
    let values = |cm: ConfigMap| -> Value {
        serde_yaml::from_str(&cm.data.expect("data")["values.yaml"]).expect("values.yaml")
    };
    let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let webhook_values = values(cm_api.get("milvus-milvus-values").await.expect("values"));
    assert_eq!(webhook_values["externalS3"]["useIAM"], true);
    assert!(
        webhook_values["standalone"]["extraEnv"].is_null() && webhook_values["volumes"].is_null(),
        "no RRSA variables or token volume with the webhook: {webhook_values:#}"
    );

    // Back to the values: the annotation goes, the variables come.
    api.patch(
        "milvus",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"alibaba": {"rrsaInjection": "Values"}}})),
    )
    .await
    .expect("patch");
    wait_for(
        "the webhook annotation to go",
        Duration::from_secs(30),
        || async {
            let sa = sa_api.get("milvus").await.ok()?;
            let cm = cm_api.get("milvus-milvus-values").await.ok()?;
            (annotation(&sa).is_none() && !values(cm)["standalone"]["extraEnv"].is_null()).then_some(())
        },
    )
    .await;

    // Someone else's webhook annotation is reported, not removed or overwritten.
    sa_api
        .patch(
            "milvus",
            &PatchParams::apply("gitops"),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": "milvus", "annotations": {"pod-identity.alibabacloud.com/role-name": "someone-elses"}}})),
        )
        .await
        .expect("annotate");
    api.patch(
        "milvus",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"bucketwire.io/validate": "now"}}})),
    )
    .await
    .expect("nudge");
    let refused = wait_condition(
        &client,
        &ns,
        "milvus",
        "Ready",
        "False",
        Some("ServiceAccountOwnedElsewhere"),
        &operator,
    )
    .await;
    let refused = condition(&refused, "Ready").expect("Ready");
    assert!(refused.message.contains("gitops"), "{}", refused.message);
    assert_eq!(
        annotation(&sa_api.get("milvus").await.expect("sa")).as_deref(),
        Some("someone-elses")
    );
    deleted(&client, &ns, "milvus").await;
    assert_eq!(
        annotation(&sa_api.get("milvus").await.expect("sa kept")).as_deref(),
        Some("someone-elses"),
        "the ServiceAccount (not bucketwire's) and the other annotation stay"
    );
}
