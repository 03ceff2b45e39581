//! The Milvus Operator as a target (`spec.milvus.milvusRef`), against the real upstream CRD
//! (../shared/fixtures/milvus-operator: zilliztech/milvus-operator v1.3.8, unchanged, installed on
//! the test apiserver by server-side apply). The Milvus Operator's controller and webhook are not
//! available here (their module is not served): where the tests need them, the tests play their
//! part and say so — a "GitOps tool" is a server-side apply with its own field manager, and the
//! Milvus Operator's defaulting of a non-external storage is written the way its webhook writes it.

mod common;

use std::time::Duration;

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use bucketwire::api::BucketIntegration;
use bucketwire::steps::milvus_operator::milvus_resource;
use common::integration::{condition, create, ready_status, wait_condition};
use common::operator::Operator;
use common::{install_milvus_crd, setup, wait_for};

const GITOPS: &str = "argocd-controller";

fn milvuses(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &milvus_resource())
}

/// A Milvus object as a GitOps tool applies it (its own field manager), with fields of its own.
async fn gitops_apply(client: &Client, ns: &str, name: &str, spec: Value) -> DynamicObject {
    let object = json!({
        "apiVersion": "milvus.io/v1beta1",
        "kind": "Milvus",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    });
    milvuses(client, ns)
        .patch(name, &PatchParams::apply(GITOPS), &Patch::Apply(&object))
        .await
        .expect("the GitOps tool's apply")
}

async fn spec_of(client: &Client, ns: &str, name: &str) -> Value {
    let object = milvuses(client, ns).get(name).await.expect("Milvus");
    object.data["spec"].clone()
}

/// The fields (paths) a manager owns in the object, from its managedFields.
async fn owned_by(client: &Client, ns: &str, name: &str, manager: &str) -> Vec<String> {
    let object = milvuses(client, ns).get(name).await.expect("Milvus");
    let mut paths = vec![];
    for entry in object.metadata.managed_fields.unwrap_or_default() {
        if entry.manager.as_deref() != Some(manager) {
            continue;
        }
        if let Some(fields) = entry.fields_v1 {
            collect(&fields.0, String::new(), &mut paths);
        }
    }
    paths.sort();
    paths
}

fn collect(fields: &Value, prefix: String, out: &mut Vec<String>) {
    let Some(map) = fields.as_object() else { return };
    for (key, value) in map {
        if key == "." {
            continue;
        }
        let path = format!("{prefix}.{}", key.trim_start_matches("f:"));
        if value.as_object().is_some_and(|m| m.keys().all(|k| k == ".")) {
            out.push(path);
        } else {
            collect(value, path, out);
        }
    }
}

fn user_spec() -> Value {
    json!({
        "mode": "standalone",
        "components": {"image": "milvusdb/milvus:v2.6.0"},
        "dependencies": {"storage": {"external": true}},
        "config": {"milvus": {"log": {"level": "info"}}},
    })
}

#[tokio::test]
async fn a_milvus_object_is_wired_ready_and_validated_and_released_on_deletion() {
    let (bed, client, ns) = setup("milvuscr").await;
    install_milvus_crd(&client).await;
    // The safe GitOps order's second form: the Milvus object created with external storage.
    gitops_apply(&client, &ns, "my-milvus", user_spec()).await;
    let operator = Operator::start(&bed, &ns, &[]);
    create(
        &client,
        &ns,
        "milvus",
        json!({"region": "us-east-2", "milvus": {"milvusRef": {"name": "my-milvus"}}}),
    )
    .await;
    let status = ready_status(&client, &ns, "milvus", &operator).await;
    assert_eq!(status.milvus_object.as_deref(), Some("my-milvus"));
    let (code, out) = common::run_cli(&bed, &["describe", &format!("{ns}/milvus")]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "Milvus object:    {ns}/my-milvus (milvus.io/v1beta1; wired: my-milvus)"
        )),
        "{out}"
    );
    let bucket = status.bucket.and_then(|b| b.name).expect("bucket");
    let validated = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Validated")
        .expect("Validated");
    assert_eq!(validated.status, "True");

    let spec = spec_of(&client, &ns, "my-milvus").await;
    assert_eq!(
        spec["dependencies"]["storage"],
        json!({"external": true, "type": "S3", "endpoint": "s3.us-east-2.amazonaws.com:443", "secretRef": ""})
    );
    assert_eq!(
        spec["config"]["minio"],
        json!({"bucketName": bucket, "rootPath": "files", "useSSL": true, "useIAM": true,
               "cloudProvider": "aws", "region": "us-east-2"})
    );
    assert_eq!(spec["components"]["serviceAccountName"], "milvus");
    // The user's fields are untouched.
    assert_eq!(spec["mode"], "standalone");
    assert_eq!(spec["components"]["image"], "milvusdb/milvus:v2.6.0");
    assert_eq!(spec["config"]["milvus"]["log"]["level"], "info");

    // bucketwire's manager owns exactly its fields (external is shared with the GitOps tool,
    // which set the same value).
    let ours = owned_by(&client, &ns, "my-milvus", "bucketwire/milvus").await;
    assert_eq!(
        ours,
        vec![
            ".spec.components.serviceAccountName",
            ".spec.config.minio.bucketName",
            ".spec.config.minio.cloudProvider",
            ".spec.config.minio.region",
            ".spec.config.minio.rootPath",
            ".spec.config.minio.useIAM",
            ".spec.config.minio.useSSL",
            ".spec.dependencies.storage.endpoint",
            ".spec.dependencies.storage.external",
            ".spec.dependencies.storage.secretRef",
            ".spec.dependencies.storage.type",
        ]
    );
    assert!(
        !ours
            .iter()
            .any(|f| f.ends_with("minio.address") || f.ends_with("minio.port")),
        "never address/port"
    );

    // A resync writes nothing: the object's resourceVersion holds.
    let before = milvuses(&client, &ns)
        .get("my-milvus")
        .await
        .expect("Milvus")
        .resource_version();
    common::operator::unchanged_for("the Milvus object", Duration::from_secs(5), || async {
        milvuses(&client, &ns)
            .get("my-milvus")
            .await
            .ok()
            .and_then(|o| o.resource_version())
    })
    .await;
    assert_eq!(
        milvuses(&client, &ns)
            .get("my-milvus")
            .await
            .expect("Milvus")
            .resource_version(),
        before
    );

    // Deleting the integration releases exactly bucketwire's fields.
    Api::<BucketIntegration>::namespaced(client.clone(), &ns)
        .delete("milvus", &DeleteParams::default())
        .await
        .expect("deleted");
    wait_for("the integration to be gone", Duration::from_secs(60), || async {
        Api::<BucketIntegration>::namespaced(client.clone(), &ns)
            .get_opt("milvus")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        owned_by(&client, &ns, "my-milvus", "bucketwire/milvus")
            .await
            .is_empty()
    );
    let spec = spec_of(&client, &ns, "my-milvus").await;
    assert_eq!(spec["config"]["minio"], Value::Null, "{spec}");
    assert_eq!(spec["components"]["serviceAccountName"], Value::Null, "{spec}");
    assert_eq!(
        spec["dependencies"]["storage"]["external"], true,
        "the GitOps tool's own value stays"
    );
    assert_eq!(spec["mode"], "standalone");
    assert_eq!(spec["config"]["milvus"]["log"]["level"], "info");
}

#[tokio::test]
async fn a_field_owned_by_gitops_is_a_conflict_not_a_fight_and_in_cluster_minio_is_never_switched() {
    let (bed, client, ns) = setup("milvusconf").await;
    install_milvus_crd(&client).await;
    let operator = Operator::start(&bed, &ns, &[]);

    // The GitOps tool owns bucketName with another value.
    let mut spec = user_spec();
    spec["config"]["minio"] = json!({"bucketName": "someone-elses-bucket"});
    gitops_apply(&client, &ns, "owned", spec).await;
    create(
        &client,
        &ns,
        "conflict",
        json!({"region": "us-east-2", "milvus": {"milvusRef": {"name": "owned"}}}),
    )
    .await;
    let bi = wait_condition(
        &client,
        &ns,
        "conflict",
        "MilvusReady",
        "False",
        Some("MilvusFieldConflict"),
        &operator,
    )
    .await;
    let message = condition(&bi, "MilvusReady").expect("MilvusReady").message;
    assert!(
        message.contains(".spec.config.minio.bucketName") && message.contains(GITOPS),
        "{message}"
    );
    assert_eq!(
        condition(&bi, "Ready").map(|c| (c.status, c.reason)),
        Some(("False".to_string(), "MilvusFieldConflict".to_string()))
    );
    assert_eq!(
        spec_of(&client, &ns, "owned").await["config"]["minio"]["bucketName"],
        "someone-elses-bucket",
        "nothing forced"
    );

    // A Milvus the Milvus Operator already set up with in-cluster MinIO (its defaulting webhook,
    // played here, gives a non-external storage an inCluster section and the MinIO endpoint).
    gitops_apply(
        &client,
        &ns,
        "minio",
        json!({"mode": "standalone", "dependencies": {"storage": {"external": false,
            "endpoint": format!("minio-minio.{ns}:9000"),
            "inCluster": {"deletionPolicy": "Retain", "values": {"mode": "standalone"}}}}}),
    )
    .await;
    let before = milvuses(&client, &ns)
        .get("minio")
        .await
        .expect("Milvus")
        .resource_version();
    create(
        &client,
        &ns,
        "incluster",
        json!({"region": "us-east-2", "milvus": {"milvusRef": {"name": "minio"}}}),
    )
    .await;
    let bi = wait_condition(
        &client,
        &ns,
        "incluster",
        "MilvusReady",
        "False",
        Some("InClusterStorage"),
        &operator,
    )
    .await;
    let message = condition(&bi, "MilvusReady").expect("MilvusReady").message;
    assert!(message.contains("in-cluster MinIO"), "{message}");
    assert_eq!(
        milvuses(&client, &ns)
            .get("minio")
            .await
            .expect("Milvus")
            .resource_version(),
        before,
        "nothing written to a Milvus with in-cluster storage"
    );
}

#[tokio::test]
async fn the_integration_first_then_the_milvus_object_and_retargeting_releases_the_old_one() {
    let (bed, client, ns) = setup("milvusorder").await;
    install_milvus_crd(&client).await;
    let operator = Operator::start(&bed, &ns, &[]);
    // The safe GitOps order's first form: the integration before the Milvus object.
    create(
        &client,
        &ns,
        "milvus",
        json!({"region": "us-east-2", "milvus": {"milvusRef": {"name": "first"}}}),
    )
    .await;
    let bi = wait_condition(
        &client,
        &ns,
        "milvus",
        "MilvusReady",
        "False",
        Some("MilvusNotFound"),
        &operator,
    )
    .await;
    assert!(
        condition(&bi, "MilvusReady")
            .expect("MilvusReady")
            .message
            .contains("does not exist yet")
    );
    gitops_apply(&client, &ns, "first", user_spec()).await;
    ready_status(&client, &ns, "milvus", &operator).await;
    assert_eq!(
        spec_of(&client, &ns, "first").await["components"]["serviceAccountName"],
        "milvus"
    );

    // Retarget: the first Milvus gets its fields back, the second one is wired.
    gitops_apply(&client, &ns, "second", user_spec()).await;
    Api::<BucketIntegration>::namespaced(client.clone(), &ns)
        .patch(
            "milvus",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"milvus": {"milvusRef": {"name": "second"}}}})),
        )
        .await
        .expect("retargeted");
    wait_for("the second Milvus wired", Duration::from_secs(30), || async {
        let spec = spec_of(&client, &ns, "second").await;
        (spec["components"]["serviceAccountName"] == "milvus").then_some(())
    })
    .await;
    wait_for("the first Milvus released", Duration::from_secs(30), || async {
        owned_by(&client, &ns, "first", "bucketwire/milvus")
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    assert_eq!(
        spec_of(&client, &ns, "first").await["config"]["minio"],
        Value::Null
    );
    let bi = Api::<BucketIntegration>::namespaced(client.clone(), &ns)
        .get("milvus")
        .await
        .expect("integration");
    assert_eq!(bi.status.and_then(|s| s.milvus_object).as_deref(), Some("second"));
}

/// `provider: alibaba` (the test bed's FAKES of RAM, STS, ACK and OSS): the same object wired to
/// OSS through RRSA. Without ACK's webhook the RRSA token and variables go on every component
/// (`spec.components.env`/`volumes`/`volumeMounts`); with it they are released and the
/// ServiceAccount annotated instead. A GitOps tool that owns the Pods' env is a conflict that
/// names the webhook option, and with it the integration is Ready without touching that env.
#[tokio::test]
async fn an_alibaba_milvus_object_gets_oss_and_rrsa_and_the_webhook_option_releases_the_pod_fields() {
    use bucketwire::provider::alibaba::documents::{rrsa_env, rrsa_volume_mounts, rrsa_volumes};
    use common::alibaba::{REGION, start_operator};
    use k8s_openapi::api::core::v1::ServiceAccount;

    let (bed, client, ns) = setup("milvusali").await;
    install_milvus_crd(&client).await;
    gitops_apply(&client, &ns, "my-milvus", user_spec()).await;
    let operator = start_operator(&bed, &ns, &[]);
    let rrsa = |name: &str, injection: &str| {
        json!({"provider": "alibaba", "region": REGION, "identity": {"mode": "RRSA"},
               "serviceAccount": {"name": name},
               "alibaba": {"rrsaInjection": injection},
               "milvus": {"milvusRef": {"name": name}}})
    };
    // The ServiceAccount is named after the Milvus object, so each integration has its own.
    gitops_apply(&client, &ns, "gitops-env", {
        let mut spec = user_spec();
        spec["components"]["env"] = json!([{"name": "TEAM", "value": "search"}]);
        spec
    })
    .await;
    create(&client, &ns, "milvus", rrsa("my-milvus", "Values")).await;
    let status = ready_status(&client, &ns, "milvus", &operator).await;
    let api: Api<BucketIntegration> = Api::namespaced(client.clone(), &ns);
    let bi = api.get("milvus").await.expect("integration");
    assert_eq!(condition(&bi, "Validated").expect("Validated").status, "True");
    let ready = condition(&bi, "MilvusReady").expect("MilvusReady");
    assert_eq!(ready.status, "True", "{ready:?}");
    let bucket = status.bucket.and_then(|b| b.name).expect("bucket");
    let role_arn = status.role_arn.expect("role");
    let provider_arn = status.oidc_provider_arn.expect("provider");
    assert_eq!(
        provider_arn,
        bed.var("BUCKETWIRE_TESTBED_ALIBABA_OIDC_PROVIDER_ARN")
    );

    let spec = spec_of(&client, &ns, "my-milvus").await;
    assert_eq!(
        spec["dependencies"]["storage"],
        json!({"external": true, "type": "S3", "endpoint": "oss-cn-hangzhou.aliyuncs.com:443", "secretRef": ""})
    );
    assert_eq!(
        spec["config"]["minio"],
        json!({"bucketName": bucket, "rootPath": "files", "useSSL": true, "useIAM": true,
               "cloudProvider": "aliyun", "region": REGION, "useVirtualHost": true})
    );
    assert_eq!(spec["components"]["serviceAccountName"], "my-milvus");
    assert_eq!(spec["components"]["env"], rrsa_env(&role_arn, &provider_arn));
    assert_eq!(spec["components"]["volumes"], rrsa_volumes());
    assert_eq!(spec["components"]["volumeMounts"], rrsa_volume_mounts());
    assert_eq!(
        spec["components"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]["audience"],
        "sts.aliyuncs.com"
    );
    assert_eq!(
        spec["components"]["image"], "milvusdb/milvus:v2.6.0",
        "the user's field stays"
    );
    let ours = owned_by(&client, &ns, "my-milvus", "bucketwire/milvus").await;
    for field in [
        ".spec.components.env",
        ".spec.components.volumeMounts",
        ".spec.components.volumes",
        ".spec.config.minio.useVirtualHost",
    ] {
        assert!(ours.contains(&field.to_string()), "{field} not in {ours:?}");
    }

    // The webhook option: the Pod fields are released (nobody else set them, so they go), the
    // storage wiring stays, the ServiceAccount carries the webhook's annotation.
    api.patch(
        "milvus",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"alibaba": {"rrsaInjection": "Webhook"}}})),
    )
    .await
    .expect("patch");
    let role_name = role_arn.rsplit('/').next().expect("role name").to_string();
    let sa_api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    wait_for(
        "the Pod fields to be released",
        Duration::from_secs(30),
        || async {
            let spec = spec_of(&client, &ns, "my-milvus").await;
            let sa = sa_api.get("my-milvus").await.ok()?;
            let annotated =
                sa.annotations().get("pod-identity.alibabacloud.com/role-name") == Some(&role_name);
            (annotated && spec["components"]["env"].is_null() && spec["components"]["volumes"].is_null())
                .then_some(spec)
        },
    )
    .await;
    let spec = spec_of(&client, &ns, "my-milvus").await;
    assert!(spec["components"]["volumeMounts"].is_null(), "{spec}");
    assert_eq!(spec["config"]["minio"]["cloudProvider"], "aliyun");
    assert_eq!(spec["components"]["serviceAccountName"], "my-milvus");

    // A GitOps tool owns the Pods' env: a conflict naming the field, its manager and the
    // webhook option; the tool's env is not touched.
    create(&client, &ns, "second", rrsa("gitops-env", "Values")).await;
    let bi = wait_condition(
        &client,
        &ns,
        "second",
        "MilvusReady",
        "False",
        Some("MilvusFieldConflict"),
        &operator,
    )
    .await;
    let message = condition(&bi, "MilvusReady").expect("MilvusReady").message;
    assert!(
        message.contains(".spec.components.env")
            && message.contains(GITOPS)
            && message.contains("spec.alibaba.rrsaInjection: Webhook"),
        "{message}"
    );
    assert_eq!(
        spec_of(&client, &ns, "gitops-env").await["components"]["env"],
        json!([{"name": "TEAM", "value": "search"}])
    );
    api.patch(
        "second",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"alibaba": {"rrsaInjection": "Webhook"}}})),
    )
    .await
    .expect("patch");
    wait_condition(&client, &ns, "second", "MilvusReady", "True", None, &operator).await;
    let spec = spec_of(&client, &ns, "gitops-env").await;
    assert_eq!(
        spec["components"]["env"],
        json!([{"name": "TEAM", "value": "search"}])
    );
    assert_eq!(spec["config"]["minio"]["useVirtualHost"], true);

    // Deletion releases exactly bucketwire's fields; the object and the user's fields stay.
    api.delete("milvus", &DeleteParams::default())
        .await
        .expect("deleted");
    wait_for("the integration to be gone", Duration::from_secs(60), || async {
        api.get_opt("milvus").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(
        owned_by(&client, &ns, "my-milvus", "bucketwire/milvus")
            .await
            .is_empty()
    );
    let spec = spec_of(&client, &ns, "my-milvus").await;
    assert_eq!(spec["config"]["minio"], Value::Null, "{spec}");
    assert_eq!(spec["mode"], "standalone");
    assert_eq!(spec["components"]["image"], "milvusdb/milvus:v2.6.0");
}
