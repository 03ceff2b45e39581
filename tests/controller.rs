//! The controller on the test bed (real kube-apiserver + moto): the happy path checked through
//! the AWS SDK, partitions, idempotency measured with the operator's own AWS call counter, and
//! the ServiceAccount and values it writes.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

use bucketwire::documents::{canonical, parse_document};
use common::integration::{create, events, ready_status, wait_ready};
use common::operator::{CACHED_LOOKUPS, Operator, sample, unchanged_for};
use common::{aws, setup, wait_for};

fn doc(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture JSON")
}

/// Compares IAM documents semantically (order, Sids, string-vs-list do not matter).
fn assert_same_document(actual: &Value, expected: &Value) {
    assert_eq!(
        canonical(actual),
        canonical(expected),
        "\nactual:   {actual}\nexpected: {expected}"
    );
}

#[tokio::test]
async fn example_becomes_ready_with_everything_in_place() {
    let (bed, client, ns) = setup("happy").await;
    // An existing ServiceAccount keeps its own annotations and labels.
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {
        "name": "milvus-s3-access-sa",
        "labels": {"team": "search"},
        "annotations": {"example.com/owner": "search-team"}}}))
    .expect("sa");
    Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &sa)
        .await
        .expect("sa created");

    // With the recommended permissions boundary (the test bed's, which its operator policy demands).
    let operator = Operator::start(&bed, &ns, &[]);
    create(
        &client,
        &ns,
        "milvus-prod",
        json!({
            "description": "vector data for milvus-prod",
            "region": "us-east-2",
            "bucket": {"rootPath": "files", "tags": {"team": "search"}},
            "serviceAccount": {"name": "milvus-s3-access-sa"},
        }),
    )
    .await;
    let bi = wait_ready(&client, &ns, "milvus-prod", &operator).await;
    let status = bi.status.clone().expect("status");
    let bucket = status
        .bucket
        .as_ref()
        .and_then(|b| b.name.clone())
        .expect("bucket name in status");
    let uid = bi.uid().expect("uid");
    let issuer = bed.var("BUCKETWIRE_TESTBED_OIDC_ISSUER");
    let host_path = issuer.trim_start_matches("https://");
    let account = bed.var("BUCKETWIRE_TESTBED_ACCOUNT_ID");

    // Status: every field and condition.
    assert_eq!(status.integration_id.as_deref(), Some(uid.as_str()));
    assert_eq!(status.observed_generation, bi.metadata.generation);
    let b = status.bucket.clone().expect("bucket status");
    assert_eq!(b.arn.as_deref(), Some(format!("arn:aws:s3:::{bucket}").as_str()));
    assert_eq!(b.region.as_deref(), Some("us-east-2"));
    assert_eq!(b.endpoint.as_deref(), Some("s3.us-east-2.amazonaws.com"));
    let role_arn = status.role_arn.clone().expect("role arn");
    let policy_arn = status.policy_arn.clone().expect("policy arn");
    assert!(
        role_arn.starts_with(&format!("arn:aws:iam::{account}:role/bucketwire/bucketwire-")),
        "{role_arn}"
    );
    assert!(
        policy_arn.starts_with(&format!("arn:aws:iam::{account}:policy/bucketwire/bucketwire-")),
        "{policy_arn}"
    );
    assert_eq!(
        status.oidc_provider_arn.as_deref(),
        Some(bed.var("BUCKETWIRE_TESTBED_OIDC_PROVIDER_ARN"))
    );
    assert_eq!(
        status.service_account.as_deref(),
        Some(format!("{ns}/milvus-s3-access-sa").as_str())
    );
    assert_eq!(
        status.values_config_map.as_deref(),
        Some("milvus-prod-milvus-values")
    );
    let types: Vec<_> = status.conditions.iter().map(|c| c.type_.as_str()).collect();
    for t in [
        "Ready",
        "BucketReady",
        "PolicyReady",
        "RoleReady",
        "ServiceAccountReady",
        "ValuesReady",
        "Validated",
    ] {
        assert!(types.contains(&t), "condition {t} missing: {types:?}");
    }
    let validated = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Validated")
        .expect("Validated");
    assert_eq!(
        (validated.status.as_str(), validated.reason.as_str()),
        ("True", "Validated")
    );
    assert!(status.last_validated.is_some(), "lastValidated is set");
    for c in &status.conditions {
        assert!(!c.reason.is_empty() && !c.message.is_empty(), "{c:?}");
        assert_eq!(c.observed_generation, bi.metadata.generation);
    }

    // The bucket, checked through the SDK.
    let s3 = aws::s3(&bed, "us-east-2").await;
    let location = s3
        .get_bucket_location()
        .bucket(&bucket)
        .send()
        .await
        .expect("location");
    assert_eq!(
        location.location_constraint().map(|c| c.as_str()),
        Some("us-east-2")
    );
    let pab = s3
        .get_public_access_block()
        .bucket(&bucket)
        .send()
        .await
        .expect("pab");
    let pab = pab.public_access_block_configuration().expect("pab config");
    assert_eq!(
        (
            pab.block_public_acls(),
            pab.ignore_public_acls(),
            pab.block_public_policy(),
            pab.restrict_public_buckets()
        ),
        (Some(true), Some(true), Some(true), Some(true))
    );
    let ownership = s3
        .get_bucket_ownership_controls()
        .bucket(&bucket)
        .send()
        .await
        .expect("ownership");
    assert_eq!(
        ownership.ownership_controls().expect("controls").rules()[0]
            .object_ownership()
            .as_str(),
        "BucketOwnerEnforced"
    );
    assert_eq!(
        aws::default_encryption(&s3, &bucket).await,
        ("AES256".to_string(), None)
    );
    let policy = s3
        .get_bucket_policy()
        .bucket(&bucket)
        .send()
        .await
        .expect("bucket policy");
    assert_same_document(
        &parse_document(policy.policy().expect("policy")).expect("json"),
        &doc(&format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Deny","Principal":"*","Action":"s3:*",
                "Resource":["arn:aws:s3:::{bucket}","arn:aws:s3:::{bucket}/*"],
                "Condition":{{"Bool":{{"aws:SecureTransport":"false"}}}}}}]}}"#
        )),
    );
    let tags: BTreeMap<_, _> = s3
        .get_bucket_tagging()
        .bucket(&bucket)
        .send()
        .await
        .expect("tags")
        .tag_set()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    assert_eq!(tags.get("bucketwire.io/uid"), Some(&uid));
    assert_eq!(
        tags.get("bucketwire.io/managed-by").map(String::as_str),
        Some("bucketwire")
    );
    assert_eq!(
        tags.get("bucketwire.io/cluster").map(String::as_str),
        Some(bed.var("BUCKETWIRE_CLUSTER_NAME"))
    );
    assert_eq!(tags.get("bucketwire.io/namespace"), Some(&ns));
    assert_eq!(
        tags.get("bucketwire.io/name").map(String::as_str),
        Some("milvus-prod")
    );
    assert_eq!(tags.get("team").map(String::as_str), Some("search"));

    // The policy: exactly the least-privilege document.
    let iam = aws::iam(&bed, "us-east-1").await;
    let p = iam
        .get_policy()
        .policy_arn(&policy_arn)
        .send()
        .await
        .expect("policy")
        .policy
        .expect("policy");
    let version = iam
        .get_policy_version()
        .policy_arn(&policy_arn)
        .version_id(p.default_version_id().expect("default version"))
        .send()
        .await
        .expect("version");
    let document =
        parse_document(version.policy_version().and_then(|v| v.document()).expect("doc")).expect("json");
    assert_same_document(
        &document,
        &doc(&format!(
            r#"{{"Version":"2012-10-17","Statement":[
                {{"Effect":"Allow","Action":["s3:ListBucket","s3:GetBucketLocation"],"Resource":"arn:aws:s3:::{bucket}"}},
                {{"Effect":"Allow","Action":["s3:GetObject","s3:PutObject","s3:DeleteObject","s3:AbortMultipartUpload",
                  "s3:ListMultipartUploadParts"],"Resource":"arn:aws:s3:::{bucket}/*"}}]}}"#
        )),
    );

    // The role: trust through the cluster's OIDC provider for exactly this ServiceAccount.
    let role_name = role_arn.rsplit('/').next().expect("role name");
    let role = iam
        .get_role()
        .role_name(role_name)
        .send()
        .await
        .expect("role")
        .role
        .expect("role");
    assert_eq!(role.path(), "/bucketwire/");
    assert_eq!(
        role.permissions_boundary()
            .and_then(|b| b.permissions_boundary_arn()),
        Some(bed.var("BUCKETWIRE_TESTBED_PERMISSIONS_BOUNDARY"))
    );
    let trust = parse_document(role.assume_role_policy_document().expect("trust")).expect("json");
    assert_same_document(
        &trust,
        &doc(&format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow",
                "Principal":{{"Federated":"{provider}"}},"Action":"sts:AssumeRoleWithWebIdentity",
                "Condition":{{"StringEquals":{{"{host_path}:sub":"system:serviceaccount:{ns}:milvus-s3-access-sa",
                                             "{host_path}:aud":"sts.amazonaws.com"}}}}}}]}}"#,
            provider = bed.var("BUCKETWIRE_TESTBED_OIDC_PROVIDER_ARN"),
        )),
    );
    let attached = iam
        .list_attached_role_policies()
        .role_name(role_name)
        .send()
        .await
        .expect("attached");
    let attached: Vec<_> = attached
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn())
        .collect();
    assert_eq!(attached, [policy_arn.as_str()]);

    // The ServiceAccount: annotated, its own annotations and labels kept.
    let sa = Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .get("milvus-s3-access-sa")
        .await
        .expect("sa");
    assert_eq!(
        sa.annotations().get("eks.amazonaws.com/role-arn"),
        Some(&role_arn)
    );
    assert_eq!(
        sa.annotations().get("example.com/owner").map(String::as_str),
        Some("search-team")
    );
    assert_eq!(sa.labels().get("team").map(String::as_str), Some("search"));

    // The values ConfigMap: exactly the documented keys, owned by the integration.
    let cm = Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .get("milvus-prod-milvus-values")
        .await
        .expect("cm");
    assert_eq!(
        cm.owner_references().first().map(|o| o.uid.as_str()),
        Some(uid.as_str())
    );
    assert_eq!(
        cm.labels()
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("bucketwire")
    );
    assert_eq!(
        cm.labels().get("bucketwire.io/integration").map(String::as_str),
        Some("milvus-prod")
    );
    let values: Value = serde_yaml::from_str(&cm.data.expect("data")["values.yaml"]).expect("values yaml");
    assert_eq!(
        values,
        json!({
            "serviceAccount": {"create": false, "name": "milvus-s3-access-sa"},
            "minio": {"enabled": false},
            "externalS3": {"enabled": true, "host": "s3.us-east-2.amazonaws.com", "port": "443", "useSSL": true,
                "bucketName": bucket, "rootPath": "files", "useIAM": true, "cloudProvider": "aws",
                "iamEndpoint": "", "region": "us-east-2", "useVirtualHost": false, "accessKey": "", "secretKey": ""}
        })
    );

    // Metrics: the integration is counted as Ready, and reconciles and their duration are recorded.
    let metrics = operator.metrics().await;
    assert!(
        metrics.contains(r#"bucketwire_integrations{condition="Ready",status="True"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("bucketwire_reconcile_duration_seconds_count"),
        "{metrics}"
    );
    assert!(operator.reconciles().await >= 1);

    // Events say what was created.
    let reasons: Vec<_> = events(&client, &ns, "milvus-prod")
        .await
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    assert!(
        reasons.iter().filter(|r| *r == "Created").count() >= 4,
        "{reasons:?}"
    );
}

#[tokio::test]
async fn sse_kms_bucket_gets_the_key_and_a_kms_statement() {
    let (bed, client, ns) = setup("kms").await;
    // A real key: KMS decides with its key policy whether the role may use it.
    let kms = aws_sdk_kms::Client::new(&aws::sdk_config(&bed, "us-east-2").await);
    let key = aws::create_kms_key(&kms).await;
    let key = key.as_str();
    let operator = Operator::start(&bed, &ns, &["--allowed-kms-keys", key]);
    create(
        &client,
        &ns,
        "kms",
        json!({"region": "us-east-2", "bucket": {"encryption": {"type": "SSE-KMS", "kmsKeyArn": key}}}),
    )
    .await;
    let status = ready_status(&client, &ns, "kms", &operator).await;
    let bucket = status.bucket.and_then(|b| b.name).expect("bucket");
    let s3 = aws::s3(&bed, "us-east-2").await;
    assert_eq!(
        aws::default_encryption(&s3, &bucket).await,
        ("aws:kms".to_string(), Some(key.to_string()))
    );

    let iam = aws::iam(&bed, "us-east-1").await;
    let policy_arn = status.policy_arn.expect("policy");
    let version = iam
        .get_policy_version()
        .policy_arn(&policy_arn)
        .version_id("v1")
        .send()
        .await
        .expect("version");
    let document =
        parse_document(version.policy_version().and_then(|v| v.document()).expect("doc")).expect("json");
    assert_same_document(
        &document,
        &doc(&format!(
            r#"{{"Version":"2012-10-17","Statement":[
                {{"Effect":"Allow","Action":["s3:ListBucket","s3:GetBucketLocation"],"Resource":"arn:aws:s3:::{bucket}"}},
                {{"Effect":"Allow","Action":["s3:GetObject","s3:PutObject","s3:DeleteObject","s3:AbortMultipartUpload",
                  "s3:ListMultipartUploadParts"],"Resource":"arn:aws:s3:::{bucket}/*"}},
                {{"Effect":"Allow","Action":["kms:GenerateDataKey","kms:Decrypt"],"Resource":"{key}",
                  "Condition":{{"StringEquals":{{"kms:ViaService":"s3.us-east-2.amazonaws.com",
                    "kms:EncryptionContext:aws:s3:arn":"arn:aws:s3:::{bucket}"}}}}}}]}}"#
        )),
    );
}

/// A China or GovCloud integration: ARNs and endpoints of its partition. The test bed's account
/// has the cluster's IAM OIDC provider in that partition too.
async fn partition_case(region: &str, partition: &str, host: &str) {
    let (bed, client, ns) = setup(&format!("part-{partition}")).await;
    // The operator's role in that partition: the policy rendered for it, and its boundary.
    let settings = aws::OperatorSettings {
        region: region.into(),
        ..aws::OperatorSettings::testbed(&bed)
    };
    let identity = aws::operator_identity(&bed, &settings).await;
    let operator = Operator::start_as(&bed, &ns, &[], &[], &identity);
    create(&client, &ns, "vectors", json!({"region": region})).await;
    let status = ready_status(&client, &ns, "vectors", &operator).await;
    let bucket = status.bucket.clone().expect("bucket");
    let provider = status.oidc_provider_arn.clone().expect("provider");
    for arn in [
        bucket.arn.clone().expect("bucket arn"),
        status.role_arn.clone().expect("role"),
        status.policy_arn.clone().expect("policy"),
        provider.clone(),
    ] {
        assert!(arn.starts_with(&format!("arn:{partition}:")), "{arn}");
    }
    assert_eq!(bucket.endpoint.as_deref(), Some(host));
    let cm = Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .get("vectors-milvus-values")
        .await
        .expect("cm");
    let values: Value = serde_yaml::from_str(&cm.data.expect("data")["values.yaml"]).expect("yaml");
    assert_eq!(values["externalS3"]["host"], host);
    assert_eq!(values["externalS3"]["region"], region);
    // The role, in the partition's IAM, trusts the partition's provider.
    let iam = aws::iam(&bed, region).await;
    let role_name = status
        .role_arn
        .as_deref()
        .and_then(|a| a.rsplit('/').next())
        .expect("name")
        .to_string();
    let role = iam
        .get_role()
        .role_name(&role_name)
        .send()
        .await
        .expect("role")
        .role
        .expect("role");
    let trust = parse_document(role.assume_role_policy_document().expect("trust")).expect("json");
    assert_eq!(trust["Statement"][0]["Principal"]["Federated"], provider.as_str());
}

#[tokio::test]
async fn china_region_uses_the_aws_cn_partition() {
    partition_case("cn-north-1", "aws-cn", "s3.cn-north-1.amazonaws.com.cn").await;
}

#[tokio::test]
async fn govcloud_region_uses_the_aws_us_gov_partition() {
    partition_case("us-gov-west-1", "aws-us-gov", "s3.us-gov-west-1.amazonaws.com").await;
}

#[tokio::test]
async fn an_unchanged_integration_makes_no_mutating_aws_call_on_resync() {
    let (bed, client, ns) = setup("idem").await;
    let operator = Operator::start(&bed, &ns, &[]);
    create(&client, &ns, "idem", json!({"region": "us-east-2"})).await;
    wait_ready(&client, &ns, "idem", &operator).await;
    // Let the first reconcile's own follow-ups settle, then measure several resyncs.
    let settled = operator.reconciles().await;
    wait_for("a resync", Duration::from_secs(20), || async {
        (operator.reconciles().await > settled).then_some(())
    })
    .await;
    let before = operator.mutating_calls().await;
    let reconciles_before = operator.reconciles().await;
    wait_for("three more resyncs", Duration::from_secs(30), || async {
        (operator.reconciles().await >= reconciles_before + 3).then_some(())
    })
    .await;
    let after = operator.mutating_calls().await;
    assert_eq!(before, after, "a no-op resync must not write to AWS");
    assert!(
        !before.is_empty(),
        "the counter saw the creating calls: {before:?}"
    );
    assert!(
        before.contains_key("S3:CreateBucket") && before.contains_key("IAM:CreateRole"),
        "{before:?}"
    );
}

#[tokio::test]
async fn creating_takes_at_most_14_aws_calls_and_a_resync_at_most_10_reads() {
    let (bed, client, ns) = setup("calls").await;
    // A long resync: the only reconciles are the ones this test causes.
    let mut operator = Operator::start(&bed, &ns, &["--resync-interval", "1h"]);
    create(&client, &ns, "calls", json!({"region": "us-east-2"})).await;
    wait_ready(&client, &ns, "calls", &operator).await;
    // Ready is written last: the create's calls are all made. Nothing it sets off (its own
    // ConfigMap write, say) makes another AWS call: checked across 3 s.
    let created = unchanged_for("the AWS calls after Ready", Duration::from_secs(3), || {
        operator.aws_calls()
    })
    .await;
    let creating = per_operation(&created);
    let counted: u64 = creating
        .iter()
        .filter(|(op, _)| !CACHED_LOOKUPS.contains(&op.as_str()))
        .map(|(_, n)| n)
        .sum();
    assert!(counted <= 14, "{counted} calls to create: {creating:?}");
    assert!(creating.contains_key("S3:CreateBucket"), "{creating:?}");
    assert!(
        !operator.workload_calls().await.is_empty(),
        "the validation probe ran (as the workload, counted apart)"
    );

    // A restarted operator reconciles every integration once: a no-op resync, measured exactly.
    operator.kill();
    let operator = Operator::start(&bed, &ns, &["--resync-interval", "1h"]);
    wait_for(
        "the resync after the restart",
        Duration::from_secs(30),
        || async { (operator.reconciles().await >= 1).then_some(()) },
    )
    .await;
    let resync = per_operation(&operator.aws_calls().await);
    let reads: BTreeMap<&String, &u64> = resync
        .iter()
        .filter(|(op, _)| !CACHED_LOOKUPS.contains(&op.as_str()))
        .collect();
    assert!(operator.mutating_calls().await.is_empty(), "{resync:?}");
    assert!(
        reads.values().copied().sum::<u64>() <= 11,
        "a no-op resync read {reads:?}"
    );
    // Enough to notice drift in every setting we own (the tests' cadence reads every bucket
    // setting on each resync); IAM's bulk view stands for the role and policy reads.
    for op in [
        "S3:GetBucketTagging",
        "S3:GetBucketPolicy",
        "S3:GetBucketEncryption",
        "S3:GetPublicAccessBlock",
        "S3:GetBucketOwnershipControls",
        "S3:GetBucketVersioning",
        "IAM:GetAccountAuthorizationDetails",
    ] {
        assert!(reads.contains_key(&op.to_string()), "{op} missing: {reads:?}");
    }
    for op in [
        "IAM:GetPolicyVersion",
        "IAM:GetRole",
        "IAM:ListAttachedRolePolicies",
        "IAM:ListRolePolicies",
    ] {
        assert!(
            !reads.contains_key(&op.to_string()),
            "{op} read one by one: {reads:?}"
        );
    }
}

#[tokio::test]
async fn an_edited_or_deleted_values_config_map_is_repaired_without_waiting_for_the_resync() {
    let (bed, client, ns) = setup("values").await;
    let operator = Operator::start(&bed, &ns, &["--resync-interval", "1h"]);
    create(&client, &ns, "vals", json!({"region": "us-east-2"})).await;
    wait_ready(&client, &ns, "vals", &operator).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let name = "vals-milvus-values";
    let original = cms.get(name).await.expect("values").data.expect("data");
    // Two reconciles: the one that adds the finalizer, and the create (counted right after it
    // wrote Ready). The operator's own ConfigMap write sets off no third: checked across 5 s.
    wait_for(
        "the create's reconcile to be counted",
        Duration::from_secs(10),
        || async { (operator.reconciles().await >= 2).then_some(()) },
    )
    .await;
    let settled = unchanged_for(
        "the reconcile count with nothing changed",
        Duration::from_secs(5),
        || operator.reconciles(),
    )
    .await;
    assert_eq!(settled, 2, "no reconcile without a change");

    let edit = json!({"data": {"values.yaml": "externalS3: {bucketName: someone-elses}\n"}});
    cms.patch(
        name,
        &kube::api::PatchParams {
            field_manager: Some("kubectl-edit".into()),
            ..Default::default()
        },
        &kube::api::Patch::Merge(&edit),
    )
    .await
    .expect("edit");
    wait_for(
        "the edited values to be repaired",
        Duration::from_secs(20),
        || async {
            let data = cms.get(name).await.ok()?.data?;
            (data == original).then_some(())
        },
    )
    .await;

    cms.delete(name, &Default::default()).await.expect("delete");
    wait_for(
        "the deleted values to be recreated",
        Duration::from_secs(20),
        || async {
            let data = cms.get_opt(name).await.ok()??.data?;
            (data == original).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn iam_requests_wait_for_the_client_side_rate_limit() {
    let (bed, client, ns) = setup("ratelimit").await;
    let operator = Operator::start(
        &bed,
        &ns,
        &["--iam-requests-per-second", "2", "--resync-interval", "1h"],
    );
    let started = std::time::Instant::now();
    for name in ["rl1", "rl2"] {
        create(&client, &ns, name, json!({"region": "us-east-2"})).await;
    }
    for name in ["rl1", "rl2"] {
        wait_ready(&client, &ns, name, &operator).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let metrics = operator.metrics().await;
    let iam_requests = sample(
        &metrics,
        r#"bucketwire_aws_request_duration_seconds_count{service="iam"}"#,
    );
    let waited = sample(
        &metrics,
        r#"bucketwire_aws_rate_limit_wait_seconds_total{service="iam"}"#,
    );
    assert!(iam_requests >= 10.0, "{iam_requests} IAM requests");
    // A burst of 2, then 2 per second: they cannot have gone out faster. (A lower bound, which a
    // slow machine only makes easier to meet.)
    assert!(
        elapsed >= (iam_requests - 2.0) / 2.0,
        "{iam_requests} IAM requests in {elapsed:.1} s at a limit of 2 per second"
    );
    assert!(waited > 0.0, "the wait is on /metrics");
    // S3 is not limited.
    assert_eq!(
        sample(
            &metrics,
            r#"bucketwire_aws_rate_limit_wait_seconds_total{service="s3"}"#
        ),
        0.0
    );
}

/// Calls by "Service:Operation", outcomes summed.
fn per_operation(calls: &BTreeMap<(String, String, String), u64>) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for ((service, op, _), n) in calls {
        *out.entry(format!("{service}:{op}")).or_default() += n;
    }
    out
}

#[tokio::test]
async fn health_endpoints_answer_and_json_logs_are_structured() {
    let (bed, client, ns) = setup("obs").await;
    let operator = Operator::start(&bed, &ns, &["--log-format", "json"]);
    create(&client, &ns, "obs", json!({"region": "us-east-2"})).await;
    wait_ready(&client, &ns, "obs", &operator).await;
    assert_eq!(operator.health("/healthz").await.as_deref(), Ok("ok\n"));
    assert_eq!(operator.health("/readyz").await.as_deref(), Ok("ok\n"));
    assert!(operator.health("/nope").await.is_err());
    let log = operator.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in &lines {
        let entry: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            entry.get("level").is_some() && entry.get("timestamp").is_some(),
            "{line}"
        );
    }
    assert!(
        lines.iter().any(|l| l.contains("created bucket")),
        "reconcile steps are logged"
    );
}
