//! Deleting the CRD (as an uninstall might) never takes Milvus down: the apiserver deletes every
//! BucketIntegration, and the operator, seeing the CRD itself being deleted, releases each one
//! without deleting anything in AWS: bucket, objects, role, policy and the ServiceAccount
//! annotation all stay, still tagged, and nothing is left stuck on a finalizer. Integrations
//! applied again later (GitOps re-applying the same objects) re-adopt what their predecessors
//! left.
//!
//! This is its own test binary: it deletes the CRD for the whole test bed, so it must not run
//! beside other tests (cargo runs test binaries one after another). Every other binary installs
//! the CRD again when it starts.

mod common;

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;

use bucketwire::api::BucketIntegration;
use common::integration::{create, wait_ready};
use common::operator::Operator;
use common::{TestBed, aws, install_crd, namespace, wait_for};

#[tokio::test]
async fn deleting_the_crd_keeps_every_bucket_and_object() {
    let bed = TestBed::load();
    let client = bed.client().await;
    install_crd(&client).await;

    // Integrations left by earlier test binaries have no operator any more; their finalizers
    // would hold the CRD in Terminating. Releasing a finalizer never touches AWS.
    let all: Api<BucketIntegration> = Api::all(client.clone());
    for bi in all.list(&ListParams::default()).await.expect("list").items {
        let ns = bi.metadata.namespace.clone().unwrap_or_default();
        let api: Api<BucketIntegration> = Api::namespaced(client.clone(), &ns);
        let name = bi.metadata.name.clone().unwrap_or_default();
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .expect("finalizer released");
    }

    let ns = namespace(&client, "crd").await;
    let operator = Operator::start(&bed, &ns, &[]);
    create(&client, &ns, "retained", json!({"region": "us-east-2"})).await;
    create(
        &client,
        &ns,
        "deletable",
        json!({"region": "us-east-2", "bucket": {"deletionPolicy": "Delete"}}),
    )
    .await;
    let retained = wait_ready(&client, &ns, "retained", &operator).await;
    let deletable = wait_ready(&client, &ns, "deletable", &operator).await;
    let bucket_of = |bi: &BucketIntegration| {
        bi.status
            .clone()
            .and_then(|s| s.bucket)
            .and_then(|b| b.name)
            .expect("bucket")
    };
    let s3 = aws::s3(&bed, "us-east-2").await;
    for bucket in [bucket_of(&retained), bucket_of(&deletable)] {
        s3.put_object()
            .bucket(&bucket)
            .key("files/segment")
            .body(ByteStream::from_static(b"vectors"))
            .send()
            .await
            .expect("object written");
    }

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.delete("bucketintegrations.bucketwire.io", &DeleteParams::default())
        .await
        .expect("CRD delete accepted");
    // Nothing is stuck: the operator releases every integration, so the CRD goes by itself.
    wait_for("the CRD to be gone", Duration::from_secs(60), || async {
        crds.get_opt("bucketintegrations.bucketwire.io")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    let iam = aws::iam(&bed, "us-east-2").await;
    let sa_api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    for bi in [&retained, &deletable] {
        let status = bi.status.clone().expect("status");
        let uid = status.integration_id.clone().expect("uid");
        let role_arn = status.role_arn.clone().expect("role");
        let role = aws::role(&iam, &role_arn).await;
        assert!(
            role.tags()
                .iter()
                .any(|t| t.key() == "bucketwire.io/uid" && t.value() == uid),
            "the role {role_arn} is kept, still tagged"
        );
        let policy_arn = status.policy_arn.clone().expect("policy");
        let policy = iam
            .get_policy()
            .policy_arn(&policy_arn)
            .send()
            .await
            .expect("the policy is kept");
        assert!(policy.policy().is_some());
        let tags = s3
            .get_bucket_tagging()
            .bucket(bucket_of(bi))
            .send()
            .await
            .expect("bucket tags");
        assert!(
            tags.tag_set()
                .iter()
                .any(|t| t.key() == "bucketwire.io/uid" && t.value() == uid)
        );
        let sa_name = bi.metadata.name.clone().expect("name");
        let sa = sa_api.get(&sa_name).await.expect("the ServiceAccount is kept");
        assert_eq!(
            sa.annotations().get("eks.amazonaws.com/role-arn"),
            Some(&role_arn),
            "Milvus keeps its role annotation"
        );
    }
    for bucket in [bucket_of(&retained), bucket_of(&deletable)] {
        let object = s3
            .get_object()
            .bucket(&bucket)
            .key("files/segment")
            .send()
            .await
            .expect("object kept");
        let body = object.body.collect().await.expect("body").into_bytes();
        assert_eq!(&body[..], b"vectors", "{bucket} kept its data");
    }

    // The operator comes back with the CRD, and the same objects are applied again: each new
    // integration re-adopts its predecessor's bucket, role and policy (same names, no second one).
    install_crd(&client).await;
    create(&client, &ns, "retained", json!({"region": "us-east-2"})).await;
    create(
        &client,
        &ns,
        "deletable",
        json!({"region": "us-east-2", "bucket": {"deletionPolicy": "Delete"}}),
    )
    .await;
    for old in [&retained, &deletable] {
        let name = old.metadata.name.clone().expect("name");
        let again = wait_ready(&client, &ns, &name, &operator).await;
        let (old_status, new_status) = (
            old.status.clone().expect("old"),
            again.status.clone().expect("new"),
        );
        assert_eq!(new_status.role_arn, old_status.role_arn, "{name}: the same role");
        assert_eq!(
            new_status.policy_arn, old_status.policy_arn,
            "{name}: the same policy"
        );
        assert_eq!(bucket_of(&again), bucket_of(old), "{name}: the same bucket");
        let uid = new_status.integration_id.clone().expect("uid");
        let role = aws::role(&iam, new_status.role_arn.as_deref().expect("role")).await;
        assert!(
            role.tags()
                .iter()
                .any(|t| t.key() == "bucketwire.io/uid" && t.value() == uid),
            "re-tagged for its new owner"
        );
    }
    common::results::record(
        "uninstall-crd-deletion",
        &json!({
            "integrations": 2,
            "rolesPoliciesBucketsAnnotationsKept": true,
            "crdGoneWithoutManualFinalizerRemoval": true,
            "reAdoptedWithTheSameRoleArn": true,
        }),
    );
}
