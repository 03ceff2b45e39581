//! The Helm chart with the real Helm CLI (built from its Go module by tests/helm): `helm template`
//! is what deploy/ holds, `helm install` on the test bed is accepted, and the operator running
//! with the chart's ServiceAccount (its ClusterRole, nothing else) completes and deletes an
//! integration, while a verb it was not granted is refused.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;

use bucketwire::api::BucketIntegration;
use common::integration::{create, wait_ready};
use common::operator::Operator;
use common::{TestBed, namespace, setup, wait_for};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `helm` (target/testbed/bin/helm, built by `make testbed`) with the test bed's kubeconfig.
fn helm(args: &[&str], kubeconfig: Option<&str>) -> std::process::Output {
    let bin = root().join("target/testbed/bin/helm");
    let cache = root().join("target/testbed/helm-home");
    let mut cmd = Command::new(&bin);
    cmd.current_dir(root())
        .args(args)
        .env("HELM_CACHE_HOME", cache.join("cache"))
        .env("HELM_CONFIG_HOME", cache.join("config"))
        .env("HELM_DATA_HOME", cache.join("data"));
    if let Some(k) = kubeconfig {
        cmd.env("KUBECONFIG", k);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("{} runs (built by `make testbed`): {e}", bin.display()))
}

/// `helm template`, exactly as `make deploy` runs it.
fn render() -> String {
    render_with(&[])
}

/// `helm template` with more `--set`s.
fn render_with(sets: &[&str]) -> String {
    let mut args = vec![
        "template",
        "bucketwire",
        "charts/bucketwire",
        "--namespace",
        "bucketwire-system",
        "--kube-version",
        "1.35.0",
        "--set",
        "clusterName=my-eks-cluster",
    ];
    for set in sets {
        args.extend(["--set", set]);
    }
    let out = helm(&args, None);
    assert!(
        out.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn deploy_manifests_are_the_rendered_chart() {
    let rendered = render();
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
fn every_operator_setting_is_set_by_the_chart() {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_bucketwire"))
        .args(["run", "--help"])
        .output()
        .expect("bucketwire runs");
    let help = String::from_utf8_lossy(&help.stdout);
    let vars: Vec<&str> = help
        .split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split(['=', ']']).next())
        .collect();
    assert!(vars.len() >= 15, "settings found in --help: {vars:?}");
    // Optional settings appear when set.
    let rendered = render_with(&[
        "oidcIssuer=https://oidc.example.com/id/1",
        "permissionsBoundary=arn:aws:iam::111122223333:policy/boundary",
        "bucketPrefix=team-a-",
        "adoptBuckets={legacy}",
        "awsEndpointUrl=http://127.0.0.1:5000",
        "watchNamespace=milvus",
    ]);
    for var in vars {
        assert!(
            rendered.contains(&format!("- name: {var}\n")),
            "the chart's Deployment does not set {var}"
        );
    }
}

#[test]
fn values_are_checked_against_the_schema() {
    let out = helm(
        &[
            "template",
            "x",
            "charts/bucketwire",
            "--kube-version",
            "1.35.0",
            "--set",
            "clusterName=c",
            "--set",
            "logFormat=xml",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("logFormat"));
    let out = helm(
        &["template", "x", "charts/bucketwire", "--kube-version", "1.35.0"],
        None,
    );
    assert!(!out.status.success(), "clusterName is required");
    assert!(String::from_utf8_lossy(&out.stderr).contains("clusterName is required"));
}

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
    // A release name of its own: the ClusterRole and its binding are cluster-wide, named after it.
    let release = format!("bw{}", std::process::id());
    let service_account = format!("{release}-bucketwire");
    // helm install, as a user would; the CRD is already installed, as crds/ is only ever
    // installed once by Helm. Every object must be accepted by the apiserver.
    let out = helm(
        &[
            "install",
            &release,
            "charts/bucketwire",
            "--namespace",
            &release_ns,
            "--set",
            "clusterName=my-eks-cluster",
        ],
        Some(bed.var("KUBECONFIG")),
    );
    assert!(
        out.status.success(),
        "helm install failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The operator with the chart's ServiceAccount credentials, and nothing else.
    let (as_operator, kubeconfig) = client_as(&bed, &admin, &release_ns, &service_account).await;
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
        let actions = bucketwire::documents::string_list(&statement["Action"]);
        assert!(!actions.is_empty(), "a statement without actions: {statement}");
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

/// `kubectl apply -k deploy/` (kubectl from PyPI, with its built-in kustomize): every object is
/// accepted by the apiserver. A server-side dry run, so the test bed keeps only the namespace.
#[test]
fn kubectl_apply_k_deploy_is_accepted() {
    let bed = TestBed::load();
    let kubectl = root().join("target/testbed/venv/bin/kubectl");
    let run = |args: &[&str]| {
        let out = Command::new(&kubectl)
            .current_dir(root())
            .args(args)
            .env("KUBECONFIG", bed.var("KUBECONFIG"))
            .output()
            .expect("kubectl runs (installed by `make testbed`)");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, out) = run(&["kustomize", "deploy/"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("value: my-eks-cluster"),
        "the kustomization sets the cluster name: {out}"
    );
    let _ = run(&["create", "namespace", "bucketwire-system"]);
    let (ok, out) = run(&["apply", "-k", "deploy/", "--dry-run=server"]);
    assert!(ok, "kubectl apply -k deploy/ was refused:\n{out}");
    for object in [
        "deployment.apps/bucketwire",
        "clusterrole.rbac.authorization.k8s.io/bucketwire",
        "serviceaccount/bucketwire",
    ] {
        assert!(out.contains(object), "{object} missing from:\n{out}");
    }
}
