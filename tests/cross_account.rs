//! Cross-account integrations (the Zilliz Cloud flow) on the test bed: a role that exactly one
//! other account may assume with an external ID, the documented permissions, details ready to
//! paste, in-place trust updates, drift repair and deletion that keeps the bucket.

mod common;

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use bucketwire::api::BucketIntegration;
use bucketwire::documents::canonical;
use common::aws::{policy_of, trust_of};
use common::integration::{condition, create, ready_status, wait_ready};
use common::operator::Operator;
use common::{aws, run_cli, setup, wait_for};

fn trust(partition: &str, account: &str, external_id: &str) -> Value {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": format!("arn:{partition}:iam::{account}:root")},
        "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"sts:ExternalId": external_id}}}]})
}

#[tokio::test]
async fn a_generated_external_id_lets_exactly_one_account_in_and_survives_the_lifecycle() {
    let (bed, client, ns) = setup("xacct").await;
    let operator = Operator::start(
        &bed,
        &ns,
        &["--allowed-trusted-accounts", "999988887777,111122223333"],
    );
    create(
        &client,
        &ns,
        "zilliz",
        json!({"region": "us-east-2", "identity": {"mode": "CrossAccount", "crossAccount": {"trustedAccountId": "999988887777"}}}),
    )
    .await;
    let bi = wait_ready(&client, &ns, "zilliz", &operator).await;
    let status = bi.status.clone().expect("status");
    let external_id = status.external_id.clone().expect("external ID recorded");
    assert!(
        external_id.len() >= 32 && external_id.chars().all(|c| c.is_ascii_alphanumeric()),
        "{external_id}"
    );
    assert_eq!(status.trusted_account_id.as_deref(), Some("999988887777"));
    let role_arn = status.role_arn.clone().expect("role");
    let policy_arn = status.policy_arn.clone().expect("policy");
    let bucket = status.bucket.clone().and_then(|b| b.name).expect("bucket");

    // Exactly the trust and the documented permissions, nothing wider.
    let iam = aws::iam(&bed, "us-east-1").await;
    assert_eq!(
        canonical(&trust_of(&iam, &role_arn).await),
        canonical(&trust("aws", "999988887777", &external_id))
    );
    let expected_policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetBucketLocation", "s3:ListBucket"], "Resource": format!("arn:aws:s3:::{bucket}")},
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": format!("arn:aws:s3:::{bucket}/*")}]});
    assert_eq!(
        canonical(&policy_of(&iam, &policy_arn).await),
        canonical(&expected_policy)
    );

    // No ServiceAccount, no Helm values, no conditions about them.
    assert!(
        Api::<ServiceAccount>::namespaced(client.clone(), &ns)
            .get_opt("zilliz")
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        Api::<ConfigMap>::namespaced(client.clone(), &ns)
            .get_opt("zilliz-milvus-values")
            .await
            .expect("get")
            .is_none()
    );
    assert!(condition(&bi, "ServiceAccountReady").is_none() && condition(&bi, "ValuesReady").is_none());
    assert!(status.service_account.is_none() && status.values_config_map.is_none());
    let validated = condition(&bi, "Validated").expect("validated");
    assert_eq!(validated.status, "True");
    assert!(
        validated.message.contains("Not checked: assuming the role"),
        "{}",
        validated.message
    );

    // Ready to paste into the service's console.
    let (code, out) = run_cli(&bed, &["describe", &format!("{ns}/zilliz")]);
    assert_eq!(code, 0, "{out}");
    for expected in [
        role_arn.as_str(),
        external_id.as_str(),
        bucket.as_str(),
        "us-east-2",
        bi.uid().expect("uid").as_str(),
    ] {
        assert!(out.contains(expected), "{expected} missing from:\n{out}");
    }
    let (code, out) = run_cli(&bed, &["validate", &format!("{ns}/zilliz")]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("not-checked") && out.contains("999988887777"),
        "{out}"
    );

    // The generated ID is stable across resyncs.
    let reconciles = operator.reconciles().await;
    wait_for("two resyncs", Duration::from_secs(20), || async {
        (operator.reconciles().await >= reconciles + 2).then_some(())
    })
    .await;
    let api: Api<BucketIntegration> = Api::namespaced(client.clone(), &ns);
    let again = api
        .get("zilliz")
        .await
        .expect("get")
        .status
        .and_then(|s| s.external_id);
    assert_eq!(again.as_deref(), Some(external_id.as_str()));

    // Drift of the trust policy is repaired.
    iam.update_assume_role_policy()
        .role_name(role_arn.rsplit('/').next().expect("name"))
        .policy_document(trust("aws", "444455556666", &external_id).to_string())
        .send()
        .await
        .expect("trust changed out of band");
    wait_for("the trust to be repaired", Duration::from_secs(30), || async {
        (canonical(&trust_of(&iam, &role_arn).await)
            == canonical(&trust("aws", "999988887777", &external_id)))
        .then_some(())
    })
    .await;

    // Another account and a given external ID: the same role, its trust updated in place.
    api.patch(
        "zilliz",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"identity": {"crossAccount": {"trustedAccountId": "111122223333", "externalId": "given-ext:id/2"}}}})),
    )
    .await
    .expect("spec changed");
    wait_for("the new trust", Duration::from_secs(30), || async {
        (canonical(&trust_of(&iam, &role_arn).await)
            == canonical(&trust("aws", "111122223333", "given-ext:id/2")))
        .then_some(())
    })
    .await;
    let bi = wait_ready(&client, &ns, "zilliz", &operator).await;
    let status = bi.status.expect("status");
    assert_eq!(status.role_arn.as_deref(), Some(role_arn.as_str()), "no new role");
    assert_eq!(status.external_id.as_deref(), Some("given-ext:id/2"));
    let creates: u64 = operator
        .aws_calls()
        .await
        .iter()
        .filter(|((_, op, _), _)| op == "CreateRole")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(creates, 1, "the role was created once and updated in place");

    // Deletion removes the role and the policy and keeps the bucket.
    api.delete("zilliz", &Default::default()).await.expect("deleted");
    wait_for("the integration to be gone", Duration::from_secs(30), || async {
        api.get_opt("zilliz").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(
        iam.get_role()
            .role_name(role_arn.rsplit('/').next().expect("name"))
            .send()
            .await
            .is_err()
    );
    assert!(iam.get_policy().policy_arn(&policy_arn).send().await.is_err());
    assert!(
        aws::s3(&bed, "us-east-2")
            .await
            .head_bucket()
            .bucket(&bucket)
            .send()
            .await
            .is_ok(),
        "the bucket is kept"
    );
}

#[tokio::test]
async fn china_partition_with_a_given_external_id_and_sse_kms() {
    let (bed, client, ns) = setup("xacct-cn").await;
    let key = "arn:aws-cn:kms:cn-north-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    // The operator's role in the China partition: the policy rendered for it, and its boundary.
    let settings = aws::OperatorSettings {
        region: "cn-north-1".into(),
        ..aws::OperatorSettings::testbed(&bed)
    };
    let identity = aws::operator_identity(&bed, &settings).await;
    let operator = Operator::start_as(
        &bed,
        &ns,
        &[
            "--allowed-trusted-accounts",
            "999988887777",
            "--allowed-kms-keys",
            key,
        ],
        &[],
        &identity,
    );
    create(
        &client,
        &ns,
        "zilliz",
        json!({"region": "cn-north-1",
               "bucket": {"encryption": {"type": "SSE-KMS", "kmsKeyArn": key}},
               "identity": {"mode": "CrossAccount", "crossAccount": {"trustedAccountId": "999988887777", "externalId": "zilliz-cn-42"}}}),
    )
    .await;
    let status = ready_status(&client, &ns, "zilliz", &operator).await;
    let role_arn = status.role_arn.expect("role");
    assert!(role_arn.starts_with("arn:aws-cn:iam::"), "{role_arn}");
    assert_eq!(status.external_id.as_deref(), Some("zilliz-cn-42"));
    let bucket = status.bucket.and_then(|b| b.name).expect("bucket");
    let iam = aws::iam(&bed, "cn-north-1").await;
    assert_eq!(
        canonical(&trust_of(&iam, &role_arn).await),
        canonical(&trust("aws-cn", "999988887777", "zilliz-cn-42"))
    );
    let expected_policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetBucketLocation", "s3:ListBucket"], "Resource": format!("arn:aws-cn:s3:::{bucket}")},
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": format!("arn:aws-cn:s3:::{bucket}/*")},
        {"Effect": "Allow", "Action": "kms:GenerateDataKey", "Resource": key,
         "Condition": {"StringEquals": {"kms:ViaService": "s3.cn-north-1.amazonaws.com.cn",
                                        "kms:EncryptionContext:aws:s3:arn": format!("arn:aws-cn:s3:::{bucket}")}}}]});
    assert_eq!(
        canonical(&policy_of(&iam, status.policy_arn.as_deref().expect("policy")).await),
        canonical(&expected_policy)
    );
}

#[tokio::test]
async fn an_adopted_buckets_kms_key_comes_from_its_own_encryption() {
    let (bed, client, ns) = setup("xacct-adopt").await;
    let name = aws::unique_bucket(&ns, "kms");
    let key = "arn:aws:kms:us-east-2:123456789012:key/9876abcd-12ab-34cd-56ef-1234567890ab";
    let s3 = aws::s3(&bed, "us-east-2").await;
    aws::create_bucket(&s3, &name, "us-east-2").await;
    let default = aws_sdk_s3::types::ServerSideEncryptionByDefault::builder()
        .sse_algorithm(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
        .kms_master_key_id(key)
        .build()
        .expect("default");
    let rule = aws_sdk_s3::types::ServerSideEncryptionRule::builder()
        .apply_server_side_encryption_by_default(default)
        .build();
    s3.put_bucket_encryption()
        .bucket(&name)
        .server_side_encryption_configuration(
            aws_sdk_s3::types::ServerSideEncryptionConfiguration::builder()
                .rules(rule)
                .build()
                .expect("config"),
        )
        .send()
        .await
        .expect("encryption");

    // The adopted bucket's own key needs no --allowed-kms-keys entry (the bucket's owner chose
    // it, and --adopt-buckets trusts the bucket).
    let operator = Operator::start(
        &bed,
        &ns,
        &[
            "--adopt-buckets",
            &name,
            "--allowed-trusted-accounts",
            "999988887777",
        ],
    );
    // The spec says nothing about KMS: the bucket's own configuration decides.
    create(
        &client,
        &ns,
        "zilliz",
        json!({"region": "us-east-2", "bucket": {"name": name, "create": false},
               "identity": {"mode": "CrossAccount", "crossAccount": {"trustedAccountId": "999988887777"}}}),
    )
    .await;
    let status = ready_status(&client, &ns, "zilliz", &operator).await;
    let iam = aws::iam(&bed, "us-east-1").await;
    let policy = policy_of(&iam, status.policy_arn.as_deref().expect("policy")).await;
    let kms: Vec<_> = policy["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .filter(|s| s["Resource"] == key || s["Resource"] == json!([key]))
        .collect();
    assert_eq!(kms.len(), 1, "{policy}");
    // Only through S3 of the region, for this bucket: its ARN (bucket keys) or one of its
    // objects' (objects written before bucketwire adopted it may have no bucket key).
    let bucket_arn = format!("arn:aws:s3:::{name}");
    assert_eq!(
        canonical(&json!({"Version": "2012-10-17", "Statement": [kms[0]]})),
        canonical(&json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": "kms:GenerateDataKey", "Resource": key,
            "Condition": {"StringEquals": {"kms:ViaService": "s3.us-east-2.amazonaws.com"},
                          "StringLike": {"kms:EncryptionContext:aws:s3:arn": [bucket_arn.clone(), format!("{bucket_arn}/*")]}}}]}))
    );
}
