//! The BucketIntegration CRD on a real kube-apiserver: it installs, the DESIGN.md example is
//! accepted and defaulted as documented, and invalid objects are rejected at admission with
//! a message that names the field.

mod common;

use common::admission::{Layer, fixture, merge, object};
use common::{TestBed, install_crd, namespace, results};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, Error};
use serde_json::{Value, json};

use bucketwire::api::{Access, BucketIntegration, DeletionPolicy, EncryptionType, IdentityMode};

async fn setup(prefix: &str) -> (Client, String) {
    let client = TestBed::load().client().await;
    install_crd(&client).await;
    let ns = namespace(&client, prefix).await;
    (client, ns)
}

/// Untyped access, so that tests can send objects the Rust types could never produce.
fn raw_api(client: &Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("bucketwire.io", "v1alpha1", "BucketIntegration");
    Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk(&gvk))
}

async fn create(client: &Client, ns: &str, obj: &Value) -> Result<DynamicObject, Error> {
    let obj: DynamicObject = serde_json::from_value(obj.clone()).expect("object is well-formed");
    raw_api(client, ns).create(&PostParams::default(), &obj).await
}

/// The apiserver's rejection message, or a panic naming what was accepted.
fn rejection(result: Result<DynamicObject, Error>, case: &str) -> String {
    match result {
        Err(Error::Api(status)) => {
            assert_eq!(status.code, 422, "{case}: expected 422 Invalid, got {status:?}");
            status.message
        }
        Err(other) => panic!("{case}: unexpected error {other}"),
        Ok(obj) => panic!("{case}: the apiserver accepted {:?}", obj.data),
    }
}

#[tokio::test]
async fn design_example_is_accepted_and_defaulted_as_documented() {
    let (client, ns) = setup("example").await;
    let example = json!({
        "apiVersion": "bucketwire.io/v1alpha1",
        "kind": "BucketIntegration",
        "metadata": {"name": "milvus-prod"},
        "spec": {
            "description": "vector data for milvus-prod",
            "region": "us-east-2",
            "bucket": {"name": "", "create": true, "rootPath": "files", "encryption": {"type": "SSE-S3"},
                       "versioning": false, "deletionPolicy": "Retain", "tags": {}},
            "access": "ReadWrite",
            "identity": {"mode": "IRSA", "eksClusterName": "", "oidcIssuer": ""},
            "serviceAccount": {"name": "milvus-s3-access-sa", "create": true},
            "milvus": {"valuesConfigMap": ""},
            "validation": {"enabled": true}
        }
    });
    create(&client, &ns, &example)
        .await
        .expect("the DESIGN.md example is accepted");

    // A minimal object gets every documented default from the apiserver itself.
    let minimal = object("minimal", json!({"region": "eu-west-1"}));
    create(&client, &ns, &minimal)
        .await
        .expect("a minimal object is accepted");
    let typed: Api<BucketIntegration> = Api::namespaced(client.clone(), &ns);
    let stored = typed.get("minimal").await.expect("reads back as the Rust type");
    let spec = stored.spec;
    assert_eq!(spec.region, "eu-west-1");
    assert_eq!(
        spec.bucket.name, None,
        "the bucket name stays empty (derived later)"
    );
    assert!(spec.bucket.create);
    assert_eq!(spec.bucket.root_path, "files");
    assert_eq!(spec.bucket.encryption.kind, EncryptionType::SseS3);
    assert_eq!(spec.bucket.encryption.kms_key_arn, None);
    assert!(!spec.bucket.versioning);
    assert_eq!(spec.bucket.deletion_policy, DeletionPolicy::Retain);
    assert_eq!(spec.access, Access::ReadWrite);
    assert_eq!(spec.identity.mode, IdentityMode::Irsa);
    assert_eq!(
        spec.service_account.name, None,
        "defaults to metadata.name in the operator"
    );
    assert!(spec.service_account.create);
    assert!(spec.validation.enabled);

    // And the defaults are really stored, not only filled in by our deserializer.
    let raw = raw_api(&client, &ns).get("minimal").await.expect("reads back");
    let raw_spec = &raw.data["spec"];
    assert_eq!(raw_spec["bucket"]["rootPath"], "files");
    assert_eq!(raw_spec["bucket"]["create"], true);
    assert_eq!(raw_spec["bucket"]["deletionPolicy"], "Retain");
    assert_eq!(raw_spec["bucket"]["encryption"]["type"], "SSE-S3");
    assert_eq!(raw_spec["access"], "ReadWrite");
    assert_eq!(raw_spec["identity"]["mode"], "IRSA");
    assert_eq!(raw_spec["serviceAccount"]["create"], true);
    assert_eq!(raw_spec["validation"]["enabled"], true);
}

/// Every BucketIntegration in examples/ is accepted (the Milvus objects beside them are the
/// Milvus Operator's and are checked in tests/milvus_operator.rs's way, not here).
#[tokio::test]
async fn every_example_integration_is_accepted() {
    let (client, ns) = setup("examples").await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut accepted = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("example reads");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let mut obj: Value = serde::Deserialize::deserialize(doc).expect("YAML");
            if obj["kind"] != "BucketIntegration" {
                continue;
            }
            obj["metadata"]["namespace"] = json!(ns);
            if let Err(err) = create(&client, &ns, &obj).await {
                panic!("{}: rejected: {err}", path.display());
            }
            accepted += 1;
        }
    }
    assert!(accepted >= 3, "the examples hold {accepted} integrations");
}

#[tokio::test]
async fn every_valid_fixture_is_accepted() {
    let (client, ns) = setup("valid").await;
    let f = fixture();
    for (i, case) in f.valid.iter().enumerate() {
        let obj = object(&format!("valid-{i}"), merge(&f.base, &case.spec));
        if let Err(err) = create(&client, &ns, &obj).await {
            panic!("{}: rejected: {err}", case.name);
        }
    }
}

#[tokio::test]
async fn invalid_objects_are_rejected_with_a_message_naming_the_field() {
    let (client, ns) = setup("invalid").await;
    let f = fixture();
    assert!(f.invalid.len() >= 25);
    let mut failures = vec![];
    for (i, case) in f.invalid.iter().enumerate() {
        let obj = object(&format!("invalid-{i}"), merge(&f.base, &case.spec));
        let message = rejection(create(&client, &ns, &obj).await, &case.name);
        if !message.contains(&case.field) || !message.contains(&case.message) {
            failures.push(format!(
                "{} ({:?}): expected {:?} and {:?} in {message:?}",
                case.name, case.layer, case.field, case.message
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Both layers are exercised: CEL rules and the OpenAPI schema.
    let by_layer = |layer| f.invalid.iter().filter(|c| c.layer == layer).count();
    assert!(by_layer(Layer::Schema) > 0);
    assert!(by_layer(Layer::Cel) >= 25);
    results::record(
        "admission_invalid",
        &json!({
            "test": "tests/admission.rs::invalid_objects_are_rejected_with_a_message_naming_the_field",
            "fixture": "tests/fixtures/admission.yaml",
            "rejected": f.invalid.len(),
            "rejected_by_cel_rule": by_layer(Layer::Cel),
            "rejected_by_schema": by_layer(Layer::Schema),
            "hostile": f.invalid.iter().filter(|c| c.name.starts_with("hostile:")).count(),
        }),
    );
}

#[tokio::test]
async fn immutable_fields_cannot_be_changed() {
    let (client, ns) = setup("immutable").await;
    let f = fixture();
    let api = raw_api(&client, &ns);
    for (i, case) in f.transitions.iter().enumerate() {
        let name = format!("immutable-{i}");
        let old_spec = merge(&f.base, &case.old);
        create(&client, &ns, &object(&name, old_spec.clone()))
            .await
            .expect("old object is valid");
        // A merge patch sends exactly the change, as `kubectl edit` or a GitOps sync would.
        let result = api
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": case.new})),
            )
            .await;
        let message = rejection(result, &case.name);
        assert!(
            message.contains(&case.field) && message.contains(&case.message),
            "{}: expected {:?} and {:?} in {message:?}",
            case.name,
            case.field,
            case.message
        );
    }
    results::record(
        "admission_transitions",
        &json!({
            "test": "tests/admission.rs::immutable_fields_cannot_be_changed",
            "fixture": "tests/fixtures/admission.yaml",
            "rejected": f.transitions.len(),
            "cases": f.transitions.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        }),
    );
}

#[tokio::test]
async fn bucket_name_is_immutable_once_recorded_in_status() {
    let (client, ns) = setup("recorded").await;
    let f = fixture();
    let api = raw_api(&client, &ns);
    let spec = merge(&f.base, &json!({"bucket": {"name": ""}}));
    create(&client, &ns, &object("recorded", spec))
        .await
        .expect("created");

    // The operator records the bucket it derived.
    let status = json!({"apiVersion": "bucketwire.io/v1alpha1", "kind": "BucketIntegration",
                        "status": {"bucket": {"name": "bw-derived-name"}}});
    api.patch_status(
        "recorded",
        &PatchParams::apply("bucketwire").force(),
        &Patch::Apply(&status),
    )
    .await
    .expect("status is written through the status subresource");

    // Naming another bucket in the spec is refused...
    let result = api
        .patch(
            "recorded",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"bucket": {"name": "other-bucket"}}})),
        )
        .await;
    let message = rejection(result, "another bucket after status recorded one");
    assert!(message.contains("spec.bucket.name"), "{message}");
    assert!(
        message.contains("immutable once recorded in status.bucket.name"),
        "{message}"
    );

    // ...while spelling out the recorded name is fine.
    api.patch(
        "recorded",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"bucket": {"name": "bw-derived-name"}}})),
    )
    .await
    .expect("the recorded name itself may be written into the spec");
}

#[tokio::test]
async fn status_is_a_subresource_and_printer_columns_are_served() {
    let (client, ns) = setup("columns").await;
    let api = raw_api(&client, &ns);
    create(&client, &ns, &object("cols", json!({"region": "us-east-2"})))
        .await
        .expect("created");
    // A status in the main resource is ignored (status subresource).
    api.patch(
        "cols",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"roleArn": "forged"}})),
    )
    .await
    .expect("patch accepted");
    let got = api.get("cols").await.expect("reads");
    assert!(
        got.data.get("status").and_then(|s| s.get("roleArn")).is_none(),
        "status must only change through /status"
    );

    // `kubectl get bi` columns come from the CRD; the short name is registered for discovery.
    let crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
        Api::all(client.clone())
            .get("bucketintegrations.bucketwire.io")
            .await
            .expect("CRD reads");
    let version = &crd.spec.versions[0];
    let columns: Vec<_> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        columns,
        [
            "Bucket",
            "Region",
            "Ready",
            "Validated",
            "Age",
            "Role",
            "External ID",
            "Integration ID"
        ]
    );
    // The last three only with `kubectl get bi -o wide`.
    let wide: Vec<_> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .filter(|c| c.priority == Some(1))
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(wide, ["Role", "External ID", "Integration ID"]);
    assert_eq!(crd.spec.names.short_names, Some(vec!["bi".to_string()]));
    assert!(
        version
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some()
    );
}
