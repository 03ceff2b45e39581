//! Deleting the CRD (as an uninstall might) never deletes AWS data: the apiserver deletes every
//! BucketIntegration, the operator runs their cleanup, and the bucket and its objects stay.
//!
//! This is its own test binary: it deletes the CRD for the whole test bed, so it must not run
//! beside other tests (cargo runs test binaries one after another). Every other binary installs
//! the CRD again when it starts.

mod common;

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
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
    // The Delete-policy bucket is not empty, so its cleanup is blocked; everything else goes.
    wait_for(
        "the retained integration to be cleaned up",
        Duration::from_secs(60),
        || async {
            let api: Api<BucketIntegration> = Api::namespaced(client.clone(), &ns);
            api.get_opt("retained").await.ok()?.is_none().then_some(())
        },
    )
    .await;
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

    // Let the CRD finish deleting so that later test binaries can install it again.
    let api: Api<BucketIntegration> = Api::namespaced(client.clone(), &ns);
    api.patch(
        "deletable",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("finalizer released");
    wait_for("the CRD to be gone", Duration::from_secs(60), || async {
        crds.get_opt("bucketintegrations.bucketwire.io")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    install_crd(&client).await;
}
