//! The Helm chart with the real Helm CLI (built from its Go module by tests/helm): `helm template`
//! is what deploy/ holds, `helm install` on the test bed is accepted, and the operator running
//! with the chart's ServiceAccount (its RBAC, nothing else) completes and deletes an
//! integration, while a verb it was not granted is refused. With `watchNamespace`, that RBAC is
//! a Role in the watched namespace: no token for any other namespace's ServiceAccount. And the
//! uninstall paths (`helm uninstall`, `kubectl delete -k deploy/`) remove the operator only:
//! every integration, role, policy, bucket and annotation stays, and the reinstalled operator
//! takes them up again.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde::Deserialize;
use serde_json::json;

use bucketwire::api::BucketIntegration;
use common::cli::{helm, kubectl, root};
use common::integration::{condition, create, wait_ready};
use common::operator::Operator;
use common::{TestBed, aws, namespace, setup, wait_for};

/// The permissions boundary `make deploy` renders deploy/ with (a placeholder the kustomization
/// asks users to replace).
const DEPLOY_BOUNDARY: &str = "permissionsBoundary=arn:aws:iam::123456789012:policy/bucketwire-boundary";

/// `--set permissionsBoundary=...` with the test bed's boundary, for an install on the test bed.
fn testbed_boundary(bed: &TestBed) -> String {
    format!(
        "permissionsBoundary={}",
        bed.var("BUCKETWIRE_TESTBED_PERMISSIONS_BOUNDARY")
    )
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
        "--set",
        DEPLOY_BOUNDARY,
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
        "alibaba.ackClusterId=c0123456789abcdef",
        "alibaba.endpointUrl=http://127.0.0.1:5001",
        "writeProbeInterval=24h",
        "restartSpread=30m",
    ]);
    for var in vars {
        assert!(
            rendered.contains(&format!("- name: {var}\n")),
            "the chart's Deployment does not set {var}"
        );
    }
}

/// The operator's own RRSA, as the chart wires it: a projected token of audience
/// `sts.aliyuncs.com` mounted where `ALIBABA_CLOUD_OIDC_TOKEN_FILE` points, and the role and
/// provider ARNs under the names the operator's credential chain reads
/// (`bucketwire::provider::alibaba::*_ENV`; `tests/alibaba.rs` runs the operator by RRSA with
/// exactly these). A key Secret and RRSA together are refused.
#[test]
fn the_chart_wires_the_operators_own_rrsa_with_no_key() {
    use bucketwire::provider::alibaba::{
        ACCESS_KEY_ID_ENV, OIDC_PROVIDER_ARN_ENV, OIDC_TOKEN_FILE_ENV, ROLE_ARN_ENV,
    };
    let role = "acs:ram::1234567890123456:role/BucketwireOperator";
    let provider = "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c0123456789abcdef";
    let rendered = render_with(&[
        &format!("alibaba.rrsa.roleArn={role}"),
        &format!("alibaba.rrsa.oidcProviderArn={provider}"),
    ]);
    let deployment: serde_json::Value = serde_yaml::Deserializer::from_str(&rendered)
        .filter_map(|d| serde_json::Value::deserialize(d).ok())
        .find(|d| d["kind"] == "Deployment")
        .expect("a Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let env = |name: &str| {
        container["env"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(env(ROLE_ARN_ENV).as_deref(), Some(role));
    assert_eq!(env(OIDC_PROVIDER_ARN_ENV).as_deref(), Some(provider));
    assert_eq!(env(ACCESS_KEY_ID_ENV), None, "no key with RRSA");
    let token_file = env(OIDC_TOKEN_FILE_ENV).expect("the token file");
    let (dir, file) = token_file.rsplit_once('/').expect("a path");
    let mount = container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["mountPath"] == dir)
        .unwrap_or_else(|| panic!("nothing mounted at {dir}: {container}"));
    assert_eq!(mount["readOnly"], true);
    let volume = pod["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == mount["name"])
        .expect("the mounted volume");
    let token = &volume["projected"]["sources"][0]["serviceAccountToken"];
    assert_eq!(token["audience"], "sts.aliyuncs.com");
    assert_eq!(token["path"], file);

    // Without RRSA: no token volume, no RRSA variables.
    let plain = render();
    assert!(!plain.contains(ROLE_ARN_ENV) && !plain.contains("rrsa-oidc-token"));
    // Both identities, or half of RRSA: refused, naming what to fix.
    let both = helm(
        &[
            "template",
            "x",
            "charts/bucketwire",
            "--kube-version",
            "1.35.0",
            "--set",
            "clusterName=c",
            "--set",
            DEPLOY_BOUNDARY,
            "--set",
            "alibaba.credentialsSecret=operator-key",
            "--set",
            &format!("alibaba.rrsa.roleArn={role}"),
            "--set",
            &format!("alibaba.rrsa.oidcProviderArn={provider}"),
        ],
        None,
    );
    assert!(!both.status.success());
    assert!(String::from_utf8_lossy(&both.stderr).contains("set one"));
    let half = helm(
        &[
            "template",
            "x",
            "charts/bucketwire",
            "--kube-version",
            "1.35.0",
            "--set",
            "clusterName=c",
            "--set",
            DEPLOY_BOUNDARY,
            "--set",
            &format!("alibaba.rrsa.roleArn={role}"),
        ],
        None,
    );
    assert!(!half.status.success());
    assert!(String::from_utf8_lossy(&half.stderr).contains("alibaba.rrsa.oidcProviderArn is required"));
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
        &[
            "template",
            "x",
            "charts/bucketwire",
            "--kube-version",
            "1.35.0",
            "--set",
            DEPLOY_BOUNDARY,
        ],
        None,
    );
    assert!(!out.status.success(), "clusterName is required");
    assert!(String::from_utf8_lossy(&out.stderr).contains("clusterName is required"));
    // The boundary too: the operator's IAM policy creates roles with that boundary only.
    let out = helm(
        &[
            "template",
            "x",
            "charts/bucketwire",
            "--kube-version",
            "1.35.0",
            "--set",
            "clusterName=c",
        ],
        None,
    );
    assert!(!out.status.success(), "permissionsBoundary is required");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("permissionsBoundary"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The default bucket prefix is the one derived names have, and the policy's ${BUCKET_PREFIX}.
    let rendered = render();
    assert!(
        rendered.contains("- name: BUCKETWIRE_BUCKET_PREFIX\n              value: \"bw-\""),
        "{rendered}"
    );
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

/// What an uninstall path kept, and how soon the operator installed again validated it all.
fn record_uninstall(name: &str, integrations: usize, kept: usize, ready_again: Duration) {
    common::results::record(
        name,
        &json!({
            "integrations": integrations,
            "kept": {
                "integrations_with_finalizer_not_deleting": kept,
                "roles_same_trust_tagged": kept,
                "policies_same_document_attached": kept,
                "buckets_tagged": kept,
                "service_account_annotations": kept,
                "values_config_maps": kept,
                "objects_in_the_retain_bucket_intact": 1,
            },
            "crd_kept": true,
            "validated_again_with_same_role_policy_bucket": kept,
            "roles_policies_buckets_per_integration_after_install_again": 1,
            "seconds_from_operator_start_to_validated_again": (ready_again.as_secs_f64() * 10.0).round() / 10.0,
        }),
    );
}

/// Whether the operator's log shows a request the apiserver refused (403 Forbidden). Not a bare
/// "403": the log also holds port numbers.
fn refused(log: &str) -> bool {
    log.to_lowercase().contains("forbidden")
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
            "--set",
            &testbed_boundary(&bed),
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
        !refused(&operator.log()),
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

/// The operator's own IAM policy: valid JSON, no wildcard action, every resource in the
/// `${PARTITION}` placeholder's partition and scoped to bucketwire's path, prefix, role names or
/// cluster (the two `*` are `s3:ListAllMyBuckets` and `iam:GetAccountAuthorizationDetails`, each
/// a read that has no resource type, each alone in its statement), every IAM write
/// conditioned on our tag, roles created only with the boundary, IAM tags only in our namespace,
/// and no action that could lift a boundary or hand a role to a service.
#[test]
fn the_operator_iam_policy_is_scoped() {
    let text = std::fs::read_to_string(root().join("deploy/iam/operator-policy.json")).expect("policy");
    assert!(
        !text.contains("arn:aws:"),
        "the partition is a placeholder: {text}"
    );
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
        if resource == "*" {
            assert!(
                actions == ["s3:ListAllMyBuckets"] || actions == ["iam:GetAccountAuthorizationDetails"],
                "unscoped resource in {statement}"
            );
        } else {
            assert!(resource.starts_with("arn:${PARTITION}:"), "{statement}");
            let scoped = [
                "${BUCKET_PREFIX}*",
                "${ROLE_PATH}*",
                ":role/bucketwire-*",
                "/id/*",
                "cluster/${CLUSTER_NAME}",
                "podidentityassociation/${CLUSTER_NAME}/*",
            ]
            .iter()
            .any(|s| resource.contains(s))
                || resource.ends_with(":key/*")
                    && statement["Condition"].to_string().contains("kms:RequestAlias");
            assert!(scoped, "{statement}");
        }
        let conditions = statement["Condition"].to_string();
        let writes_iam = actions
            .iter()
            .any(|a| a.starts_with("iam:") && !a.starts_with("iam:Get") && !a.starts_with("iam:List"));
        if writes_iam {
            assert!(
                conditions.contains("bucketwire.io/managed-by"),
                "IAM write without the tag condition: {statement}"
            );
        }
        let tags = actions.iter().any(|a| {
            [
                "iam:CreateRole",
                "iam:CreatePolicy",
                "iam:TagRole",
                "iam:TagPolicy",
            ]
            .contains(&a.as_str())
        });
        if tags {
            assert_eq!(
                statement["Condition"]["ForAllValues:StringLike"]["aws:TagKeys"], "bucketwire.io/*",
                "IAM tags outside bucketwire.io/: {statement}"
            );
        }
        if actions.iter().any(|a| a == "iam:CreateRole") {
            assert!(conditions.contains("iam:PermissionsBoundary"), "{statement}");
        }
        // PassRole only to EKS Pod Identity (its associations), only of the operator's roles.
        if actions.iter().any(|a| a == "iam:PassRole") {
            assert_eq!(
                statement["Condition"]["StringEquals"]["iam:PassedToService"], "pods.eks.amazonaws.com",
                "{statement}"
            );
            assert_eq!(
                statement["Action"], "iam:PassRole",
                "PassRole in a statement of its own"
            );
            assert!(
                statement["Resource"]
                    .as_str()
                    .is_some_and(|r| r.ends_with(":role${ROLE_PATH}*")),
                "{statement}"
            );
        }
        // Tags on pod identity associations: bucketwire's own keys only.
        if actions.iter().any(|a| a == "eks:TagResource") {
            assert_eq!(
                statement["Condition"]["ForAllValues:StringLike"]["aws:TagKeys"], "bucketwire.io/*",
                "EKS tags outside bucketwire.io/: {statement}"
            );
        }
        for never in [
            "iam:DeleteRolePermissionsBoundary",
            "iam:PutRolePolicy",
            "iam:UntagRole",
            "iam:UntagPolicy",
            "s3:DeleteObject",
            "s3:GetObject",
            "s3:PutObject",
        ] {
            assert!(!actions.iter().any(|a| a == never), "{never} in {statement}");
        }
    }
}

/// The RBAC objects of a rendered manifest: (kind, namespace, name, rules).
fn rbac_objects(manifest: &str) -> Vec<(String, String, String, Vec<serde_json::Value>)> {
    serde_yaml::Deserializer::from_str(manifest)
        .filter_map(|doc| serde_json::to_value(serde_yaml::Value::deserialize(doc).ok()?).ok())
        .filter(|v| matches!(v["kind"].as_str(), Some("ClusterRole" | "Role")))
        .map(|v| {
            (
                v["kind"].as_str().unwrap_or_default().to_string(),
                v["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                v["metadata"]["name"].as_str().unwrap_or_default().to_string(),
                v["rules"].as_array().cloned().unwrap_or_default(),
            )
        })
        .collect()
}

fn grants(rules: &[serde_json::Value], resource: &str) -> bool {
    rules.iter().any(|r| {
        r["resources"]
            .as_array()
            .is_some_and(|rs| rs.iter().any(|x| x == resource))
    })
}

/// The one cluster-scoped rule of a namespaced install: `get` on the BucketIntegration CRD.
fn is_crd_get(rule: &serde_json::Value) -> bool {
    *rule
        == json!({
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "resourceNames": ["bucketintegrations.bucketwire.io"],
            "verbs": ["get"],
        })
}

#[test]
fn both_modes_render_the_crd_rule_and_only_the_cluster_mode_a_cluster_token_grant() {
    // watchNamespace empty: every namespace, through a ClusterRole.
    let cluster = rbac_objects(&render());
    assert!(
        cluster
            .iter()
            .any(|(kind, _, _, rules)| kind == "ClusterRole" && grants(rules, "serviceaccounts/token")),
        "{cluster:?}"
    );
    // watchNamespace set: Roles in that namespace, and one cluster-scoped rule.
    let namespaced = rbac_objects(&render_with(&["watchNamespace=milvus"]));
    for (kind, ns, name, rules) in &namespaced {
        match kind.as_str() {
            "ClusterRole" => assert!(
                rules.iter().all(is_crd_get),
                "ClusterRole {name} grants more than reading the CRD: {rules:?}"
            ),
            _ => assert!(
                ns == "milvus" || ns == "bucketwire-system",
                "Role {ns}/{name} is outside the watched and the release namespace"
            ),
        }
    }
    for objects in [&cluster, &namespaced] {
        assert!(
            objects.iter().any(|(kind, _, _, rules)| kind == "ClusterRole"
                && rules.len() == 1
                && is_crd_get(&rules[0])),
            "the CRD rule is rendered in both modes: {objects:?}"
        );
    }
    assert!(
        namespaced.iter().any(|(kind, ns, _, rules)| kind == "Role"
            && ns == "milvus"
            && grants(rules, "serviceaccounts/token")),
        "{namespaced:?}"
    );
}

/// An RBAC refusal (403), as opposed to success or any other error.
fn forbidden<T>(r: &Result<T, kube::Error>) -> bool {
    matches!(r, Err(kube::Error::Api(s)) if s.code == 403)
}

fn sts_token_request() -> TokenRequest {
    TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec!["sts.amazonaws.com".into()],
            expiration_seconds: Some(600),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Waits until the apiserver's RBAC cache has the new bindings (a refusal after this can only
/// mean a missing rule).
async fn wait_rbac(as_operator: &Client, ns: &str) {
    wait_for(
        "the chart's RBAC to be in effect",
        Duration::from_secs(10),
        || async {
            let configmaps = Api::<ConfigMap>::namespaced(as_operator.clone(), ns);
            configmaps.list(&ListParams::default()).await.ok().map(|_| ())
        },
    )
    .await;
}

#[tokio::test]
async fn with_watch_namespace_the_operator_cannot_mint_tokens_elsewhere() {
    let (bed, admin, ns) = setup("chart-ns").await;
    let release_ns = namespace(&admin, "chart-ns-release").await;
    let other = namespace(&admin, "chart-ns-other").await;
    // A ServiceAccount in another namespace: the admin can mint its token, the operator must not.
    let victim: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "victim"}})).expect("sa");
    Api::<ServiceAccount>::namespaced(admin.clone(), &other)
        .create(&Default::default(), &victim)
        .await
        .expect("ServiceAccount created");

    let release = format!("bwns{}", std::process::id());
    let service_account = format!("{release}-bucketwire");
    let out = helm(
        &[
            "install",
            &release,
            "charts/bucketwire",
            "--namespace",
            &release_ns,
            "--set",
            "clusterName=my-eks-cluster",
            "--set",
            &testbed_boundary(&bed),
            "--set",
            &format!("watchNamespace={ns}"),
        ],
        Some(bed.var("KUBECONFIG")),
    );
    assert!(
        out.status.success(),
        "helm install failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // What was installed: no ClusterRole grants anything but reading the CRD.
    let manifest = helm(
        &["get", "manifest", &release, "--namespace", &release_ns],
        Some(bed.var("KUBECONFIG")),
    );
    let installed = rbac_objects(&String::from_utf8_lossy(&manifest.stdout));
    assert!(!installed.is_empty(), "helm get manifest lists the RBAC objects");
    let cluster_rules: Vec<_> = installed
        .iter()
        .filter(|(kind, ..)| kind == "ClusterRole")
        .flat_map(|(.., rules)| rules.clone())
        .collect();
    assert!(
        !grants(&cluster_rules, "serviceaccounts/token"),
        "{cluster_rules:?}"
    );
    assert!(cluster_rules.iter().all(is_crd_get), "{cluster_rules:?}");

    let (as_operator, kubeconfig) = client_as(&bed, &admin, &release_ns, &service_account).await;
    let kubeconfig = kubeconfig.to_string_lossy().to_string();
    wait_rbac(&as_operator, &ns).await;
    let operator = Operator::start_with_env(
        &bed,
        &ns,
        &["--leader-election-namespace", &release_ns],
        &[("KUBECONFIG", kubeconfig.as_str())],
    );
    create(&admin, &ns, "milvus", json!({"region": "us-east-2"})).await;
    let ready = wait_ready(&admin, &ns, "milvus", &operator).await;
    assert!(
        !refused(&operator.log()),
        "no request was refused:\n{}",
        operator.log()
    );

    // In the watched namespace the operator mints the Milvus token (validation did too)...
    let milvus_sa = ready
        .status
        .and_then(|s| s.service_account)
        .and_then(|sa| sa.split_once('/').map(|(_, name)| name.to_string()))
        .expect("status.serviceAccount");
    let own = Api::<ServiceAccount>::namespaced(as_operator.clone(), &ns)
        .create_token_request(&milvus_sa, &Default::default(), &sts_token_request())
        .await;
    assert!(
        own.is_ok(),
        "token in the watched namespace: {:?}",
        own.as_ref().map(|_| "issued")
    );
    // ...and nowhere else: a token for another namespace's ServiceAccount, that namespace's
    // ConfigMaps and ServiceAccounts, and integrations across the cluster are refused.
    let elsewhere = Api::<ServiceAccount>::namespaced(as_operator.clone(), &other)
        .create_token_request("victim", &Default::default(), &sts_token_request())
        .await;
    // (The token itself is never printed.)
    assert!(
        forbidden(&elsewhere),
        "TokenRequest for {other}/victim was not refused: {:?}",
        elsewhere.as_ref().map(|_| "a token was issued")
    );
    let admin_can = Api::<ServiceAccount>::namespaced(admin.clone(), &other)
        .create_token_request("victim", &Default::default(), &sts_token_request())
        .await;
    assert!(
        admin_can.is_ok(),
        "the ServiceAccount exists: {:?}",
        admin_can.as_ref().map(|_| "issued")
    );
    assert!(forbidden(
        &Api::<ServiceAccount>::namespaced(as_operator.clone(), &other)
            .get("victim")
            .await
    ));
    assert!(forbidden(
        &Api::<ConfigMap>::namespaced(as_operator.clone(), &other)
            .list(&ListParams::default())
            .await
    ));
    // In the watched namespace too, only what the operator uses.
    assert!(forbidden(
        &Api::<Secret>::namespaced(as_operator.clone(), &ns)
            .list(&ListParams::default())
            .await
    ));
    assert!(forbidden(
        &Api::<ConfigMap>::namespaced(as_operator.clone(), &ns)
            .delete("anything", &DeleteParams::default())
            .await
    ));
    assert!(forbidden(
        &Api::<BucketIntegration>::all(as_operator.clone())
            .list(&ListParams::default())
            .await
    ));
    common::results::record(
        "rbac_namespaced",
        &json!({
            "cluster_roles_granting_serviceaccounts_token": 0,
            "cluster_scoped_rules": cluster_rules,
            "integration_ready_under_namespaced_rbac": true,
            "token_request_in_watched_namespace": "allowed",
            "token_request_in_other_namespace_http_status": 403,
        }),
    );

    // Clean up with the same permissions, then uninstall.
    let api: Api<BucketIntegration> = Api::namespaced(admin.clone(), &ns);
    api.delete("milvus", &DeleteParams::default())
        .await
        .expect("deleted");
    wait_for("cleanup as the operator", Duration::from_secs(30), || async {
        api.get_opt("milvus").await.ok()?.is_none().then_some(())
    })
    .await;
    drop(operator);
    let out = helm(
        &["uninstall", &release, "--namespace", &release_ns],
        Some(bed.var("KUBECONFIG")),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// One integration's wiring as the operator reported it when Ready.
#[derive(Debug, Clone)]
struct Wiring {
    name: String,
    uid: String,
    bucket: String,
    role_arn: String,
    policy_arn: String,
    service_account: String,
    values_config_map: String,
    /// The role's trust policy and the policy's document as IAM held them when Ready.
    documents: Option<(serde_json::Value, serde_json::Value)>,
    /// `status.lastValidated` as last read: a newer one was written by a later reconcile.
    last_validated: Option<String>,
}

impl Wiring {
    fn of(bi: &BucketIntegration) -> Self {
        let status = bi.status.clone().expect("status");
        Self {
            name: bi.metadata.name.clone().expect("name"),
            uid: bi.metadata.uid.clone().expect("uid"),
            bucket: status.bucket.and_then(|b| b.name).expect("bucket"),
            role_arn: status.role_arn.expect("role ARN"),
            policy_arn: status.policy_arn.expect("policy ARN"),
            service_account: status
                .service_account
                .and_then(|sa| sa.split_once('/').map(|(_, n)| n.to_string()))
                .expect("ServiceAccount"),
            values_config_map: status
                .values_config_map
                .map(|cm| cm.rsplit('/').next().unwrap_or_default().to_string())
                .expect("values ConfigMap"),
            documents: None,
            last_validated: status.last_validated.map(|t| t.0.to_string()),
        }
    }
}

/// Two integrations Ready under the operator: `retain` (the default policy) holding data, and
/// `delete` (`deletionPolicy: Delete`) with an empty bucket, which a cleanup run by mistake
/// would delete.
async fn two_ready(admin: &Client, ns: &str, operator: &Operator) -> Vec<Wiring> {
    create(admin, ns, "retain", json!({"region": "us-east-2"})).await;
    create(
        admin,
        ns,
        "delete",
        json!({"region": "us-east-2", "bucket": {"deletionPolicy": "Delete"}}),
    )
    .await;
    let iam = aws::iam(&TestBed::load(), "us-east-2").await;
    let mut out = Vec::new();
    for name in ["retain", "delete"] {
        let mut w = Wiring::of(&wait_ready(admin, ns, name, operator).await);
        w.documents = Some((
            aws::trust_of(&iam, &w.role_arn).await,
            aws::policy_of(&iam, &w.policy_arn).await,
        ));
        out.push(w);
    }
    out
}

fn tag<'a>(tags: impl IntoIterator<Item = (&'a str, &'a str)>, key: &str) -> Option<String> {
    tags.into_iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.to_string())
}

/// Asserts, from AWS and the apiserver (not from the operator), that everything of `wiring`
/// is in place and still tagged, and that the integration is not being deleted (and still has
/// its finalizer). Returns the wiring as read now (its `lastValidated`, for `assert_readopted`).
async fn assert_kept(bed: &TestBed, admin: &Client, ns: &str, wiring: &[Wiring]) -> Vec<Wiring> {
    use bucketwire::documents::{ROLE_ARN_ANNOTATION, TAG_MANAGED_BY, TAG_UID};
    let iam = aws::iam(bed, "us-east-2").await;
    let s3 = aws::s3(bed, "us-east-2").await;
    let api: Api<BucketIntegration> = Api::namespaced(admin.clone(), ns);
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), ns);
    let mut now = Vec::new();
    for w in wiring {
        let bi = api
            .get_opt(&w.name)
            .await
            .expect("reads")
            .unwrap_or_else(|| panic!("integration {ns}/{} is gone", w.name));
        assert!(
            bi.metadata.deletion_timestamp.is_none(),
            "{} is being deleted",
            w.name
        );
        assert_eq!(
            bi.metadata.uid.as_deref(),
            Some(w.uid.as_str()),
            "the same object"
        );
        assert!(
            bi.metadata
                .finalizers
                .as_ref()
                .is_some_and(|f| f.iter().any(|f| f == bucketwire::api::FINALIZER)),
            "{} keeps its finalizer",
            w.name
        );

        let role_name = w.role_arn.rsplit('/').next().expect("role name");
        let role_tags = iam
            .list_role_tags()
            .role_name(role_name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("role {} kept: {e:?}", w.role_arn));
        let role_tags = role_tags.tags().iter().map(|t| (t.key(), t.value()));
        assert_eq!(tag(role_tags.clone(), TAG_UID).as_deref(), Some(w.uid.as_str()));
        assert_eq!(tag(role_tags, TAG_MANAGED_BY).as_deref(), Some("bucketwire"));
        let attached = iam
            .list_attached_role_policies()
            .role_name(role_name)
            .send()
            .await
            .expect("attachments");
        assert!(
            attached
                .attached_policies()
                .iter()
                .any(|p| p.policy_arn() == Some(w.policy_arn.as_str())),
            "{} keeps its policy attached",
            w.role_arn
        );
        let documents = (
            aws::trust_of(&iam, &w.role_arn).await,
            aws::policy_of(&iam, &w.policy_arn).await,
        );
        assert_eq!(
            Some(&documents),
            w.documents.as_ref(),
            "{}: the same trust and permissions",
            w.name
        );
        let policy_tags = iam
            .list_policy_tags()
            .policy_arn(&w.policy_arn)
            .send()
            .await
            .unwrap_or_else(|e| panic!("policy {} kept: {e:?}", w.policy_arn));
        assert_eq!(
            tag(policy_tags.tags().iter().map(|t| (t.key(), t.value())), TAG_UID).as_deref(),
            Some(w.uid.as_str())
        );
        let bucket_tags = s3
            .get_bucket_tagging()
            .bucket(&w.bucket)
            .send()
            .await
            .unwrap_or_else(|e| panic!("bucket {} kept with its tags: {e:?}", w.bucket));
        let bucket_tags = bucket_tags.tag_set().iter().map(|t| (t.key(), t.value()));
        assert_eq!(tag(bucket_tags.clone(), TAG_UID).as_deref(), Some(w.uid.as_str()));
        assert_eq!(tag(bucket_tags, TAG_MANAGED_BY).as_deref(), Some("bucketwire"));
        if w.name == "retain" {
            assert_eq!(
                aws::get_object(&s3, &w.bucket, "files/segment").await.as_deref(),
                Some("vectors"),
                "{} keeps its data",
                w.bucket
            );
        }

        Api::<ConfigMap>::namespaced(admin.clone(), ns)
            .get(&w.values_config_map)
            .await
            .unwrap_or_else(|e| panic!("values ConfigMap {} kept: {e}", w.values_config_map));
        let sa = sas.get(&w.service_account).await.expect("ServiceAccount kept");
        assert_eq!(
            sa.metadata
                .annotations
                .unwrap_or_default()
                .get(ROLE_ARN_ANNOTATION),
            Some(&w.role_arn),
            "{} keeps its annotation",
            w.service_account
        );
        now.push(Wiring::of(&bi));
    }
    now
}

/// After the operator is back: each integration is Ready again with the same role, policy and
/// bucket, and nothing was created twice (every bucket, role and policy tagged with the
/// integration's uid, listed from AWS). Returns how long after `started` the last one was
/// validated again.
async fn assert_readopted(
    bed: &TestBed,
    admin: &Client,
    ns: &str,
    before: &[Wiring],
    operator: &Operator,
    started: std::time::Instant,
) -> Duration {
    let api: Api<BucketIntegration> = Api::namespaced(admin.clone(), ns);
    for w in before {
        // Ready again, validated by the operator that is back (a newer lastValidated).
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let again = loop {
            let bi = api.get(&w.name).await.expect("integration reads");
            let ready = condition(&bi, "Ready").is_some_and(|c| c.status == "True");
            let again = Wiring::of(&bi);
            if ready && again.last_validated.is_some() && again.last_validated != w.last_validated {
                break again;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} was not validated again within 60s; status: {:?}\noperator log:\n{}",
                w.name,
                bi.status,
                operator.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(again.role_arn, w.role_arn, "the same role");
        assert_eq!(again.policy_arn, w.policy_arn, "the same policy");
        assert_eq!(again.bucket, w.bucket, "the same bucket");
    }
    let validated_again = started.elapsed();
    let uids = before.iter().map(|w| w.uid.clone()).collect();
    let found = aws::inventory(bed, "us-east-2", ns, &uids).await;
    for w in before {
        assert_eq!(found.roles.get(&w.uid).map(Vec::len), Some(1), "{found:?}");
        assert_eq!(found.policies.get(&w.uid).map(Vec::len), Some(1), "{found:?}");
        assert_eq!(found.buckets.get(&w.uid).map(Vec::len), Some(1), "{found:?}");
    }
    validated_again
}

/// Deletes the integrations (the path that does clean up) and waits until they are gone.
async fn delete_all(admin: &Client, ns: &str, wiring: &[Wiring]) {
    let api: Api<BucketIntegration> = Api::namespaced(admin.clone(), ns);
    for w in wiring {
        api.delete(&w.name, &DeleteParams::default())
            .await
            .expect("deleted");
    }
    for w in wiring {
        wait_for("cleanup", Duration::from_secs(60), || async {
            api.get_opt(&w.name).await.ok()?.is_none().then_some(())
        })
        .await;
    }
}

/// Puts an object in every bucket, as Milvus would.
async fn write_data(bed: &TestBed, wiring: &[Wiring]) {
    let s3 = aws::s3(bed, "us-east-2").await;
    for w in wiring.iter().filter(|w| w.name == "retain") {
        aws::put_object(&s3, &w.bucket, "files/segment", "vectors").await;
    }
}

/// The operator as `service_account` (its token), with leader election off: the Lease RBAC is
/// proven by the first chart test, and here a restarted operator would only wait out the
/// stopped one's Lease.
async fn operator_as(bed: &TestBed, admin: &Client, ns: &str, sa_ns: &str, sa: &str) -> Operator {
    let (as_operator, kubeconfig) = client_as(bed, admin, sa_ns, sa).await;
    wait_rbac(&as_operator, ns).await;
    Operator::start_with_env(
        bed,
        ns,
        &["--leader-elect", "false"],
        &[("KUBECONFIG", kubeconfig.to_string_lossy().as_ref())],
    )
}

#[tokio::test]
async fn helm_uninstall_leaves_every_integration_wired_and_reinstall_readopts_it() {
    let (bed, admin, ns) = setup("uninstall-helm").await;
    let release_ns = namespace(&admin, "uninstall-helm-release").await;
    let release = format!("bwu{}", std::process::id());
    let service_account = format!("{release}-bucketwire");
    let kubeconfig = bed.var("KUBECONFIG");
    let boundary = testbed_boundary(&bed);
    let install = || {
        let out = helm(
            &[
                "install",
                &release,
                "charts/bucketwire",
                "--namespace",
                &release_ns,
                "--set",
                "clusterName=my-eks-cluster",
                "--set",
                &boundary,
            ],
            Some(kubeconfig),
        );
        assert!(
            out.status.success(),
            "helm install failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    install();
    let mut operator = operator_as(&bed, &admin, &ns, &release_ns, &service_account).await;
    let wiring = two_ready(&admin, &ns, &operator).await;
    write_data(&bed, &wiring).await;

    // The uninstall runs while the operator still runs, as a Deployment being deleted would.
    let out = helm(
        &["uninstall", &release, "--namespace", &release_ns, "--wait"],
        Some(kubeconfig),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    operator.kill();
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    let crd = crds
        .get("bucketintegrations.bucketwire.io")
        .await
        .expect("helm uninstall keeps the CRD");
    assert!(crd.metadata.deletion_timestamp.is_none());
    let kept = assert_kept(&bed, &admin, &ns, &wiring).await;
    let checked = kept.len();

    install();
    let started = std::time::Instant::now();
    let operator = operator_as(&bed, &admin, &ns, &release_ns, &service_account).await;
    let ready_again = assert_readopted(&bed, &admin, &ns, &kept, &operator, started).await;
    record_uninstall("uninstall_helm", wiring.len(), checked, ready_again);

    delete_all(&admin, &ns, &wiring).await;
    drop(operator);
    let _ = helm(
        &["uninstall", &release, "--namespace", &release_ns],
        Some(kubeconfig),
    );
}

/// `kubectl apply -k deploy/crds` then `kubectl apply -k deploy/` (kubectl from PyPI, with its
/// built-in kustomize) as the README says; the operator runs as the manifests' ServiceAccount;
/// `kubectl delete -k deploy/` removes the operator and leaves the CRD, every integration and
/// everything in AWS; applying again re-adopts them. The objects are cluster-wide and fixed
/// names (`bucketwire`, namespace `bucketwire-system`), so this is the only test that applies
/// them.
#[tokio::test]
async fn kubectl_delete_k_deploy_removes_the_operator_and_nothing_else() {
    let (bed, admin, ns) = setup("uninstall-kubectl").await;
    let (ok, out) = kubectl(&bed, &["kustomize", "deploy/"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("value: my-eks-cluster"),
        "the kustomization sets the cluster name: {out}"
    );
    assert!(
        !out.contains("kind: CustomResourceDefinition"),
        "the CRD is not in deploy/"
    );
    let (ok, out) = kubectl(&bed, &["kustomize", "deploy/crds"]);
    assert!(ok && out.contains("kind: CustomResourceDefinition"), "{out}");

    let (ok, out) = kubectl(&bed, &["apply", "-k", "deploy/crds"]);
    assert!(ok, "kubectl apply -k deploy/crds was refused:\n{out}");
    let apply = || {
        let (ok, out) = kubectl(&bed, &["apply", "-k", "deploy/"]);
        assert!(ok, "kubectl apply -k deploy/ was refused:\n{out}");
        for object in [
            "namespace/bucketwire-system",
            "deployment.apps/bucketwire",
            "clusterrole.rbac.authorization.k8s.io/bucketwire ",
            "clusterrole.rbac.authorization.k8s.io/bucketwire-crd",
            "serviceaccount/bucketwire",
        ] {
            assert!(out.contains(object), "{object} missing from:\n{out}");
        }
    };
    apply();
    let mut operator = operator_as(&bed, &admin, &ns, "bucketwire-system", "bucketwire").await;
    let wiring = two_ready(&admin, &ns, &operator).await;
    write_data(&bed, &wiring).await;

    // The delete runs while the operator still runs, as a Deployment being deleted would.
    let (ok, out) = kubectl(&bed, &["delete", "-k", "deploy/", "--timeout=60s"]);
    assert!(ok, "kubectl delete -k deploy/ did not finish:\n{out}");
    assert!(
        !out.contains("customresourcedefinition"),
        "the CRD is not deleted:\n{out}"
    );
    operator.kill();
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    let crd = crds
        .get("bucketintegrations.bucketwire.io")
        .await
        .expect("kubectl delete -k deploy/ keeps the CRD");
    assert!(crd.metadata.deletion_timestamp.is_none());
    let kept = assert_kept(&bed, &admin, &ns, &wiring).await;
    let checked = kept.len();

    apply();
    let started = std::time::Instant::now();
    let operator = operator_as(&bed, &admin, &ns, "bucketwire-system", "bucketwire").await;
    let ready_again = assert_readopted(&bed, &admin, &ns, &kept, &operator, started).await;
    record_uninstall("uninstall_kubectl_delete_k", wiring.len(), checked, ready_again);

    delete_all(&admin, &ns, &wiring).await;
    drop(operator);
    let (ok, out) = kubectl(&bed, &["delete", "-k", "deploy/", "--timeout=60s"]);
    assert!(ok, "{out}");
}
