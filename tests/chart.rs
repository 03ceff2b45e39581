//! The Helm chart, rendered by Helm's own engine (tests/helmrender) and applied to the test bed:
//! every object is accepted, deploy/ is the rendered chart, and the operator running with the
//! chart's ServiceAccount (its ClusterRole, nothing else) completes and deletes an integration,
//! while a verb it was not granted is refused.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::{Discovery, Scope};
use kube::{Client, Config, ResourceExt};
use serde_json::json;

use bucketwire::api::BucketIntegration;
use common::integration::{create, wait_ready};
use common::operator::Operator;
use common::{TestBed, namespace, setup, wait_for};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `helmrender` (Helm's engine), as `make deploy` runs it.
fn render(release_namespace: &str, extra: &[&str]) -> String {
    let bin = root().join("target/testbed/bin/helmrender");
    let out = Command::new(&bin)
        .current_dir(root())
        .args([
            "--chart",
            "charts/bucketwire",
            "--release",
            "bucketwire",
            "--namespace",
            release_namespace,
        ])
        .args(["--set-string", "clusterName=my-eks-cluster"])
        .args(extra)
        .output()
        .unwrap_or_else(|e| panic!("{} runs (built by `make testbed`): {e}", bin.display()));
    assert!(
        out.status.success(),
        "helm rendering failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn deploy_manifests_are_the_rendered_chart() {
    let rendered = render("bucketwire-system", &[]);
    let committed =
        std::fs::read_to_string(root().join("deploy/bucketwire.yaml")).expect("deploy/bucketwire.yaml");
    let body = committed
        .split_once('\n')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    assert!(
        body == rendered,
        "deploy/bucketwire.yaml is out of date: run `make deploy` and commit the result"
    );
    let chart_crd =
        std::fs::read_to_string(root().join("charts/bucketwire/crds/bucketintegration.yaml")).expect("crd");
    let deploy_crd = std::fs::read_to_string(root().join("deploy/crds/bucketintegration.yaml")).expect("crd");
    assert_eq!(chart_crd, deploy_crd);
}

#[test]
fn values_are_checked_against_the_schema() {
    let bin = root().join("target/testbed/bin/helmrender");
    let out = Command::new(&bin)
        .current_dir(root())
        .args([
            "--chart",
            "charts/bucketwire",
            "--set-string",
            "clusterName=c",
            "--set-string",
            "logFormat=xml",
        ])
        .output()
        .expect("helmrender runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("logFormat"));
}

/// Applies every rendered object by server-side apply, as `kubectl apply --server-side` would.
async fn apply_all(client: &Client, yaml: &str) {
    let discovery = Discovery::new(client.clone()).run().await.expect("discovery");
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let value = serde_yaml::Value::deserialize(doc).expect("yaml");
        if value.is_null() {
            continue;
        }
        let obj: DynamicObject = serde_yaml::from_value(value).expect("object");
        let gvk = obj
            .types
            .as_ref()
            .map(|t| kube::core::GroupVersionKind::try_from(t).expect("gvk"))
            .expect("types");
        let (resource, caps) = discovery
            .resolve_gvk(&gvk)
            .unwrap_or_else(|| panic!("{gvk:?} is served"));
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => Api::namespaced_with(
                client.clone(),
                obj.namespace().as_deref().unwrap_or("default"),
                &resource,
            ),
            Scope::Cluster => Api::all_with(client.clone(), &resource),
        };
        let name = obj.name_any();
        if let Err(err) = api
            .patch(
                &name,
                &PatchParams::apply("bucketwire-tests").force(),
                &Patch::Apply(&obj),
            )
            .await
        {
            panic!("the apiserver refused {} {name}: {err}", gvk.kind);
        }
    }
}

use serde::Deserialize;

/// A client that authenticates as the operator's ServiceAccount, and a kubeconfig file for it.
async fn client_as(bed: &TestBed, admin: &Client, ns: &str, sa: &str) -> (Client, PathBuf) {
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = Api::<ServiceAccount>::namespaced(admin.clone(), ns)
        .create_token_request(sa, &Default::default(), &request)
        .await
        .expect("token for the operator")
        .status
        .expect("status")
        .token;
    let mut kubeconfig = Kubeconfig::read_from(bed.var("KUBECONFIG")).expect("kubeconfig");
    for user in &mut kubeconfig.auth_infos {
        if let Some(auth) = user.auth_info.as_mut() {
            auth.client_certificate_data = None;
            auth.client_key_data = None;
            auth.token = Some(token.clone().into());
        }
    }
    let path = root().join(format!("target/testbed/kubeconfig-{ns}-{sa}"));
    std::fs::write(&path, serde_yaml::to_string(&kubeconfig).expect("yaml")).expect("kubeconfig written");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("config");
    (Client::try_from(config).expect("client"), path)
}

#[tokio::test]
async fn the_chart_applies_and_its_rbac_is_enough_and_no_more() {
    let (bed, admin, ns) = setup("chart-tenant").await;
    let release_ns = namespace(&admin, "chart").await;
    apply_all(&admin, &render(&release_ns, &["--include-crds"])).await;

    // The operator with the chart's ServiceAccount credentials, and nothing else.
    let (as_operator, kubeconfig) = client_as(&bed, &admin, &release_ns, "bucketwire").await;
    let kubeconfig = kubeconfig.to_string_lossy().to_string();
    // The apiserver's RBAC cache picks up the new bindings within moments; wait for it so that a
    // refusal below can only mean a missing rule.
    wait_for(
        "the chart's RBAC to be in effect",
        Duration::from_secs(10),
        || async {
            let configmaps = Api::<ConfigMap>::namespaced(as_operator.clone(), &ns);
            configmaps.list(&ListParams::default()).await.ok().map(|_| ())
        },
    )
    .await;
    let operator = Operator::start_with_env(
        &bed,
        &ns,
        &["--leader-election-namespace", &release_ns],
        &[("KUBECONFIG", kubeconfig.as_str())],
    );
    create(&admin, &ns, "milvus", json!({"region": "us-east-2"})).await;
    wait_ready(&admin, &ns, "milvus", &operator).await;
    assert!(
        !operator.log().contains("403"),
        "no request was refused:\n{}",
        operator.log()
    );

    // Cleanup works with the same permissions.
    let api: Api<BucketIntegration> = Api::namespaced(admin.clone(), &ns);
    api.delete("milvus", &DeleteParams::default())
        .await
        .expect("deleted");
    wait_for("cleanup as the operator", Duration::from_secs(30), || async {
        api.get_opt("milvus").await.ok()?.is_none().then_some(())
    })
    .await;

    // What it was not granted is refused.
    let refused = |r: Result<_, kube::Error>| matches!(r, Err(kube::Error::Api(s)) if s.code == 403);
    assert!(refused(
        Api::<Secret>::namespaced(as_operator.clone(), &ns)
            .list(&ListParams::default())
            .await
            .map(|_| ())
    ));
    assert!(refused(
        Api::<ConfigMap>::namespaced(as_operator.clone(), &ns)
            .delete("anything", &DeleteParams::default())
            .await
            .map(|_| ())
    ));
    assert!(refused(
        Api::<BucketIntegration>::namespaced(as_operator.clone(), &ns)
            .delete("anything", &DeleteParams::default())
            .await
            .map(|_| ())
    ));
}

/// The operator's own IAM policy: valid JSON, no wildcard action, every resource scoped to
/// bucketwire's path, prefix or cluster, and every IAM write conditioned on our tag.
#[test]
fn the_operator_iam_policy_is_scoped() {
    let text = std::fs::read_to_string(root().join("deploy/iam/operator-policy.json")).expect("policy");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    for statement in doc["Statement"].as_array().expect("statements") {
        let actions: Vec<String> = match &statement["Action"] {
            serde_json::Value::String(a) => vec![a.clone()],
            list => list
                .as_array()
                .expect("actions")
                .iter()
                .map(|a| a.as_str().expect("action").to_string())
                .collect(),
        };
        assert!(
            actions.iter().all(|a| !a.contains('*')),
            "wildcard action in {statement}"
        );
        let resource = statement["Resource"]
            .as_str()
            .expect("one resource per statement");
        assert!(resource != "*", "unscoped resource in {statement}");
        let writes_iam = actions
            .iter()
            .any(|a| a.starts_with("iam:") && !a.starts_with("iam:Get"));
        if writes_iam {
            let conditions = statement["Condition"].to_string();
            assert!(
                conditions.contains("bucketwire.io/managed-by"),
                "IAM write without the tag condition: {statement}"
            );
        }
        if actions.iter().any(|a| a == "iam:CreateRole") {
            assert!(
                statement["Condition"]
                    .to_string()
                    .contains("iam:PermissionsBoundary"),
                "{statement}"
            );
        }
    }
}
