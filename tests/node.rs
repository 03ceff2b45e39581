//! On the test bed's node (tests/testbed/node.py: a real kubelet, kube-proxy, containerd and
//! runc), the way users run bucketwire:
//!
//! - a workload Pod on the wired ServiceAccount gets its credentials the way EKS injects them
//!   (the pod identity webhook's mutation, reproduced by the test bed's stand-in,
//!   tests/testbed/eks-pod-identity-webhook.yaml) and, with no keys, reads and writes under its
//!   rootPath with the AWS SDK's default chain; a Pod on a neighbouring ServiceAccount that
//!   claims the same role is refused by STS;
//! - the operator installed by its chart from its own image (`make image`), two replicas with
//!   leader election, IRSA for its own role, the chart's RBAC, probes, securityContext and
//!   PodDisruptionBudget proven by running Pods; `helm upgrade` to a new image keeps every
//!   integration Ready; `helm uninstall` keeps every integration and its AWS resources; the same
//!   install with `kubectl apply -k` over deploy/.
//!
//! These tests need the node (`BUCKETWIRE_TESTBED_NODE` in the test bed's environment) and the
//! operator's image archive (`make image`, target/image/bucketwire.oci.tar). They share the
//! node and the fixed namespace `bucketwire-system`, so they take turns.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use serde::Deserialize;
use serde_json::{Value, json};

use bucketwire::api::BucketIntegration;
use common::cli::{helm, kubectl, root};
use common::integration::{condition, create, ready_status};
use common::operator::Operator;
use common::{TestBed, aws, setup, wait_for};

/// One test at a time on the node: the chart's operator watches every namespace.
static NODE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const OPERATOR_NAMESPACE: &str = "bucketwire-system";
/// The operator's image under the names the tests install (imported from `make image`'s
/// archive; the second has one more label, so another digest: a new image of the same build).
const IMAGE_REPOSITORY: &str = "localhost/bucketwire";
const IMAGE_TAG: &str = "testbed";
const UPGRADE_TAG: &str = "testbed-upgrade";

/// What the workload Pod's S3 client (tests/workload) reports.
#[derive(Debug, Deserialize)]
struct WorkloadReport {
    #[serde(default)]
    identity: String,
    done: Vec<String>,
    #[serde(default, rename = "errorCode")]
    error_code: String,
    #[serde(default)]
    error: String,
}

struct WorkloadRun {
    pod: Pod,
    exit_code: i32,
    report: WorkloadReport,
}

/// Runs the S3 client as a Pod on `service_account` (no keys: only what the EKS webhook
/// stand-in injects, and the emulator's address), until it exits.
async fn run_workload(
    client: &Client,
    bed: &TestBed,
    ns: &str,
    name: &str,
    service_account: &str,
    bucket: &str,
    prefix: &str,
) -> WorkloadRun {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "serviceAccountName": service_account,
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532},
            "containers": [{
                "name": "s3",
                "image": bed.var("BUCKETWIRE_TESTBED_WORKLOAD_IMAGE"),
                "imagePullPolicy": "Never",
                "args": [bucket, prefix],
                // The emulator stands for AWS's endpoints; on EKS neither is set. The Go SDK's
                // web-identity provider resolves credentials before the general endpoint
                // (config.LoadDefaultConfig), so STS's own setting is needed too.
                "env": [
                    {"name": "AWS_ENDPOINT_URL", "value": bed.var("BUCKETWIRE_TESTBED_POD_ENDPOINT_URL")},
                    {"name": "AWS_ENDPOINT_URL_STS", "value": bed.var("BUCKETWIRE_TESTBED_POD_ENDPOINT_URL")},
                ],
                "securityContext": {"readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false},
            }],
        },
    }))
    .expect("pod");
    // The webhook stand-in is a MutatingAdmissionPolicy whose parameters (the namespace's
    // ServiceAccounts) come from the apiserver's informer: a ServiceAccount annotated just now
    // may not be there yet. Await, with server-side dry runs, the mutation its annotation asks
    // for before the Pod is created for real.
    let annotated_role = Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .get(service_account)
        .await
        .ok()
        .and_then(|sa| sa.metadata.annotations)
        .and_then(|a| a.get("eks.amazonaws.com/role-arn").cloned());
    if let Some(role) = annotated_role {
        let dry_run = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        wait_for(
            &format!("the webhook stand-in to see ServiceAccount {ns}/{service_account}"),
            Duration::from_secs(30),
            || async {
                let admitted = pods.create(&dry_run, &pod).await.ok()?;
                (env_of(&admitted).get("AWS_ROLE_ARN") == Some(&role)).then_some(())
            },
        )
        .await;
    }
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("the Pod is admitted");
    let done = wait_for(
        &format!("Pod {ns}/{name} to finish"),
        Duration::from_secs(90),
        || async {
            let pod = pods.get(name).await.ok()?;
            let phase = pod.status.as_ref()?.phase.clone()?;
            (phase == "Succeeded" || phase == "Failed").then_some(pod)
        },
    )
    .await;
    let exit_code = done
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.as_ref())
        .map(|t| t.exit_code)
        .expect("the container terminated");
    let log = pods
        .logs(name, &LogParams::default())
        .await
        .expect("kubectl logs works through the kubelet");
    // The last line: the SDK may log warnings before it.
    let report: WorkloadReport = serde_json::from_str(log.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("the workload printed one JSON line ({e}): {log}"));
    WorkloadRun {
        pod: done,
        exit_code,
        report,
    }
}

fn env_of(pod: &Pod) -> BTreeMap<String, String> {
    pod.spec.as_ref().expect("spec").containers[0]
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect()
}

#[tokio::test]
async fn a_workload_pod_gets_credentials_the_way_eks_injects_them_and_reaches_its_bucket() {
    let _turn = NODE.lock().await;
    let (bed, client, ns) = setup("node-workload").await;
    bed.node();
    let operator = Operator::start(&bed, &ns, &[]);
    create(
        &client,
        &ns,
        "milvus",
        json!({"region": "us-east-2", "bucket": {"rootPath": "files"}, "serviceAccount": {"name": "milvus"}}),
    )
    .await;
    let status = ready_status(&client, &ns, "milvus", &operator).await;
    let role = status.role_arn.clone().expect("role ARN");
    let bucket = status
        .bucket
        .as_ref()
        .and_then(|b| b.name.clone())
        .expect("bucket");

    let wired = run_workload(&client, &bed, &ns, "wired", "milvus", &bucket, "files").await;
    // The mutation EKS's webhook makes, on the running Pod.
    let env = env_of(&wired.pod);
    assert_eq!(env.get("AWS_ROLE_ARN"), Some(&role), "{env:?}");
    assert_eq!(
        env.get("AWS_WEB_IDENTITY_TOKEN_FILE").map(String::as_str),
        Some("/var/run/secrets/eks.amazonaws.com/serviceaccount/token")
    );
    assert_eq!(
        env.get("AWS_STS_REGIONAL_ENDPOINTS").map(String::as_str),
        Some("regional")
    );
    assert_eq!(env.get("AWS_REGION").map(String::as_str), Some("us-east-2"));
    assert_eq!(
        env.get("AWS_DEFAULT_REGION").map(String::as_str),
        Some("us-east-2")
    );
    assert!(
        !env.keys()
            .any(|k| k.contains("ACCESS_KEY") || k.contains("SECRET")),
        "no keys: {env:?}"
    );
    let volume = wired
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .and_then(|v| v.iter().find(|v| v.name == "aws-iam-token"))
        .expect("the aws-iam-token volume");
    let token = volume
        .projected
        .as_ref()
        .and_then(|p| p.sources.as_ref())
        .and_then(|s| s.first())
        .and_then(|s| s.service_account_token.as_ref())
        .expect("a projected ServiceAccount token");
    assert_eq!(token.audience.as_deref(), Some("sts.amazonaws.com"));
    assert_eq!(token.expiration_seconds, Some(86400));
    assert_eq!(
        wired.exit_code, 0,
        "the wired workload reaches its bucket: {:?}",
        wired.report
    );
    assert_eq!(
        wired.report.done,
        ["PutObject", "GetObject", "ListObjectsV2", "DeleteObject"]
    );
    let role_name = role.rsplit('/').next().expect("role name");
    assert!(
        wired.report.identity.starts_with(&format!(
            "arn:aws:sts::{}:assumed-role/{role_name}/",
            bed.var("BUCKETWIRE_TESTBED_ACCOUNT_ID")
        )),
        "the workload acts as the integration's role: {}",
        wired.report.identity
    );

    // A neighbouring ServiceAccount claims the same role: anyone who may edit a ServiceAccount
    // can write the annotation, and the webhook injects it. The role's trust names exactly
    // `milvus`, so STS refuses the neighbour's token.
    let sa: ServiceAccount = serde_json::from_value(json!({
        "metadata": {"name": "neighbour", "annotations": {"eks.amazonaws.com/role-arn": role}},
    }))
    .expect("sa");
    Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &sa)
        .await
        .expect("neighbour ServiceAccount");
    let neighbour = run_workload(&client, &bed, &ns, "neighbour", "neighbour", &bucket, "files").await;
    assert_eq!(
        env_of(&neighbour.pod).get("AWS_ROLE_ARN"),
        Some(&role),
        "the stand-in injected the claimed role"
    );
    assert_eq!(
        (neighbour.exit_code, neighbour.report.error_code.as_str()),
        (3, "AccessDenied"),
        "STS refuses the neighbour: {:?}",
        neighbour.report
    );
    assert!(
        neighbour.report.done.is_empty() && neighbour.report.error.contains("AssumeRoleWithWebIdentity"),
        "nothing reached the bucket: {:?}",
        neighbour.report
    );

    Api::<BucketIntegration>::namespaced(client.clone(), &ns)
        .delete("milvus", &DeleteParams::default())
        .await
        .expect("delete");
    wait_for(
        "the integration to be deleted",
        Duration::from_secs(60),
        || async {
            Api::<BucketIntegration>::namespaced(client.clone(), &ns)
                .get_opt("milvus")
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;
    drop(operator);
}

// --- the operator from its image ---------------------------------------------------------------

/// Imports `make image`'s archive into the node under the names the tests install: the image
/// as built, and a relabelled copy (a new digest) to upgrade to.
fn import_operator_images() {
    let archive = std::env::var_os("BUCKETWIRE_IMAGE_ARCHIVE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/image/bucketwire.oci.tar"));
    assert!(
        archive.exists(),
        "{} is missing: `make image` builds the operator's image (`make test` does)",
        archive.display()
    );
    let dir = root().join("target/testbed");
    for (tag, label) in [
        (IMAGE_TAG, "io.bucketwire.testbed=install"),
        (UPGRADE_TAG, "io.bucketwire.testbed=upgrade"),
    ] {
        let out_path = dir.join(format!("operator-{tag}.oci.tar"));
        let python = root().join("target/testbed/venv/bin/python");
        let run = |args: &[&str]| {
            let out = Command::new(&python)
                .current_dir(root())
                .args(args)
                .output()
                .expect("python runs");
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&[
            "tests/testbed/images.py",
            "relabel",
            archive.to_str().expect("utf-8 path"),
            out_path.to_str().expect("utf-8 path"),
            &format!("{IMAGE_REPOSITORY}:{tag}"),
            label,
        ]);
        run(&[
            "tests/testbed/testbed.py",
            "import-image",
            out_path.to_str().expect("utf-8 path"),
        ]);
    }
}

/// Removes whatever operator a test installed, even when it fails: an operator left running
/// would reconcile the next tests' integrations.
struct Installed {
    bed_kubeconfig: String,
    overlay: Option<PathBuf>,
}

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = helm(
            &[
                "uninstall",
                "bucketwire",
                "--namespace",
                OPERATOR_NAMESPACE,
                "--wait",
                "--ignore-not-found",
            ],
            Some(&self.bed_kubeconfig),
        );
        if let Some(overlay) = &self.overlay {
            let _ = Command::new(root().join("target/testbed/venv/bin/kubectl"))
                .args([
                    "delete",
                    "-k",
                    overlay.to_str().unwrap_or_default(),
                    "--ignore-not-found",
                    "--wait",
                    "--timeout=120s",
                ])
                .env("KUBECONFIG", &self.bed_kubeconfig)
                .output();
        }
    }
}

fn chart_values(bed: &TestBed, tag: &str) -> Vec<String> {
    vec![
        format!("clusterName={}", bed.var("BUCKETWIRE_CLUSTER_NAME")),
        format!(
            "permissionsBoundary={}",
            bed.var("BUCKETWIRE_TESTBED_PERMISSIONS_BOUNDARY")
        ),
        format!(
            "serviceAccount.roleArn={}",
            bed.var("BUCKETWIRE_OPERATOR_ROLE_ARN")
        ),
        format!(
            "awsEndpointUrl={}",
            bed.var("BUCKETWIRE_TESTBED_POD_ENDPOINT_URL")
        ),
        format!("image.repository={IMAGE_REPOSITORY}"),
        format!("image.tag={tag}"),
        "image.pullPolicy=Never".to_string(),
    ]
}

fn helm_ok(args: &[&str], bed: &TestBed) {
    let out = helm(args, Some(bed.var("KUBECONFIG")));
    assert!(
        out.status.success(),
        "helm {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn helm_with_values(verb: &[&str], bed: &TestBed, tag: &str) {
    let values = chart_values(bed, tag);
    let mut args: Vec<&str> = verb.to_vec();
    for v in &values {
        args.extend(["--set", v.as_str()]);
    }
    args.extend(["--wait", "--timeout", "4m"]);
    helm_ok(&args, bed);
}

/// The operator's Pods, once the Deployment is Available with all its replicas updated, ready
/// and running `image`.
async fn available(client: &Client, image: &str) -> Vec<Pod> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let pods: Api<Pod> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    wait_for(
        &format!("the Deployment to be Available on {image}"),
        Duration::from_secs(180),
        || async {
            let d = deployments.get("bucketwire").await.ok()?;
            let status = d.status.as_ref()?;
            let want = d.spec.as_ref()?.replicas?;
            let available = status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Available" && c.status == "True");
            if !(available
                && status.available_replicas == Some(want)
                && status.updated_replicas == Some(want)
                && status.replicas == Some(want))
            {
                return None;
            }
            let list = pods
                .list(&ListParams::default().labels("app.kubernetes.io/name=bucketwire"))
                .await
                .ok()?;
            let running: Vec<Pod> = list
                .items
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            let all_new = running.iter().all(|p| {
                p.spec
                    .as_ref()
                    .map(|s| s.containers[0].image.as_deref() == Some(image))
                    .unwrap_or(false)
            });
            (running.len() == want as usize && all_new).then_some(running)
        },
    )
    .await
}

/// The Lease holder, once it is one of `pods` (identity `<pod name>-<pid>`).
async fn leader(client: &Client, pods: &[Pod]) -> String {
    let leases: Api<Lease> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let names: Vec<String> = pods.iter().filter_map(|p| p.metadata.name.clone()).collect();
    wait_for(
        "one of the Pods to hold the Lease",
        Duration::from_secs(90),
        || async {
            let holder = leases.get("bucketwire").await.ok()?.spec?.holder_identity?;
            names
                .iter()
                .find(|n| holder.starts_with(&format!("{n}-")))
                .cloned()
        },
    )
    .await
}

/// Waits until the integration is Ready and Validated by whichever operator runs.
async fn wait_ready_validated(client: &Client, ns: &str, name: &str) -> BucketIntegration {
    let api: Api<BucketIntegration> = Api::namespaced(client.clone(), ns);
    wait_for(
        &format!("{ns}/{name} to be Ready and Validated"),
        Duration::from_secs(120),
        || async {
            let bi = api.get(name).await.ok()?;
            let ready = condition(&bi, "Ready").is_some_and(|c| c.status == "True");
            let validated = condition(&bi, "Validated").is_some_and(|c| c.status == "True");
            (ready && validated).then_some(bi)
        },
    )
    .await
}

/// The container's process as the node runs it: (uid, root filesystem mounted read-only).
fn process_of(bed: &TestBed, pod: &Pod) -> (u32, bool) {
    let container_id = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.container_id.clone())
        .expect("a running container");
    let id = container_id.trim_start_matches("containerd://");
    let out = Command::new("ctr")
        .args([
            "--address",
            bed.var("BUCKETWIRE_TESTBED_CONTAINERD_ADDRESS"),
            "-n",
            "k8s.io",
            "tasks",
            "ls",
        ])
        .output()
        .expect("ctr runs");
    let tasks = String::from_utf8_lossy(&out.stdout);
    let pid: u32 = tasks
        .lines()
        .find(|l| l.starts_with(id))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("containerd runs {id}: {tasks}"));
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the process");
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|u| u.parse().ok())
        .expect("effective uid");
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    let root_read_only = mountinfo
        .lines()
        .rfind(|l| l.split_whitespace().nth(4) == Some("/"))
        .is_some_and(|l| {
            l.split_whitespace()
                .nth(5)
                .is_some_and(|o| o.split(',').any(|f| f == "ro"))
        });
    (uid, root_read_only)
}

/// Checks what the chart's Pod spec promises on the running Pods.
fn assert_runs_as_the_chart_says(bed: &TestBed, pods: &[Pod]) {
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let spec = pod.spec.as_ref().expect("spec");
        let grace = spec.termination_grace_period_seconds.expect("grace period");
        assert!(
            grace as u64 > bucketwire::aws::OPERATION_TIMEOUT.as_secs(),
            "{name}: terminationGracePeriodSeconds {grace} is longer than the longest AWS call ({:?})",
            bucketwire::aws::OPERATION_TIMEOUT
        );
        let status = pod.status.as_ref().expect("status");
        let ready = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        assert!(ready, "{name}: the readiness probe passes");
        let container = &status.container_statuses.as_ref().expect("container statuses")[0];
        assert_eq!(
            container.restart_count, 0,
            "{name}: the liveness probe never restarted it"
        );
        let resources = spec.containers[0].resources.as_ref().expect("resources");
        assert!(
            resources.requests.is_some() && resources.limits.is_some(),
            "{name}: requests and limits"
        );
        let (uid, read_only) = process_of(bed, pod);
        assert_eq!(uid, 65532, "{name}: the operator runs as 65532, not root");
        assert!(read_only, "{name}: its root filesystem is read-only");
    }
}

/// The PodDisruptionBudget, once the disruption controller has counted both replicas.
async fn assert_disruption_budget(client: &Client) {
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    wait_for(
        "the PodDisruptionBudget to count two healthy replicas, one disruption allowed",
        Duration::from_secs(60),
        || async {
            let status = pdbs.get("bucketwire").await.ok()?.status?;
            (status.current_healthy == 2 && status.disruptions_allowed == 1).then_some(())
        },
    )
    .await;
}

/// The operator as installed on `image`: its Pods Available, one of them leading, each running
/// as the chart says, the disruption budget counting them. Returns the Pods and the leader.
async fn operator_running(bed: &TestBed, client: &Client, image: &str) -> (Vec<Pod>, String) {
    let pods = available(client, image).await;
    let leader = leader(client, &pods).await;
    assert_runs_as_the_chart_says(bed, &pods);
    assert_disruption_budget(client).await;
    (pods, leader)
}

#[tokio::test]
async fn the_chart_installs_the_operator_from_its_image_and_upgrades_it_without_losing_ready() {
    let _turn = NODE.lock().await;
    let (bed, client, ns) = setup("node-chart").await;
    bed.node();
    import_operator_images();
    let _installed = Installed {
        bed_kubeconfig: bed.var("KUBECONFIG").to_string(),
        overlay: None,
    };
    let image = format!("{IMAGE_REPOSITORY}:{IMAGE_TAG}");

    // README, Install on EKS, step 2, with the test bed's values and the local image.
    helm_with_values(
        &[
            "install",
            "bucketwire",
            "charts/bucketwire",
            "--namespace",
            OPERATOR_NAMESPACE,
            "--create-namespace",
        ],
        &bed,
        IMAGE_TAG,
    );
    let (pods, first_leader) = operator_running(&bed, &client, &image).await;
    assert_eq!(pods.len(), 2, "two replicas");

    // Steps 3 and 4: an integration, Ready and Validated by the operator in its Pod (its own
    // credentials by IRSA, from the webhook stand-in).
    create(
        &client,
        &ns,
        "before-upgrade",
        json!({"region": "us-east-2", "serviceAccount": {"name": "milvus"}}),
    )
    .await;
    let before = wait_ready_validated(&client, &ns, "before-upgrade").await;
    let ready_since = condition(&before, "Ready").expect("Ready").last_transition_time;

    // helm upgrade to a new image: the integration stays Ready throughout.
    let api: Api<BucketIntegration> = Api::namespaced(client.clone(), &ns);
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (api, stop) = (api.clone(), stop.clone());
        tokio::spawn(async move {
            let mut not_ready = Vec::new();
            let mut polls = 0u32;
            while !stop.load(Ordering::Relaxed) {
                if let Ok(bi) = api.get("before-upgrade").await {
                    polls += 1;
                    if let Some(c) = condition(&bi, "Ready").filter(|c| c.status != "True") {
                        not_ready.push(format!("{}: {}", c.reason, c.message));
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            (polls, not_ready)
        })
    };
    let new_image = format!("{IMAGE_REPOSITORY}:{UPGRADE_TAG}");
    helm_with_values(
        &[
            "upgrade",
            "bucketwire",
            "charts/bucketwire",
            "--namespace",
            OPERATOR_NAMESPACE,
        ],
        &bed,
        UPGRADE_TAG,
    );
    let (upgraded, new_leader) = operator_running(&bed, &client, &new_image).await;
    stop.store(true, Ordering::Relaxed);
    let (polls, not_ready) = watcher.await.expect("watcher");
    assert!(polls > 0, "the integration was watched through the upgrade");
    assert!(not_ready.is_empty(), "Ready through the upgrade: {not_ready:?}");
    assert_ne!(first_leader, new_leader, "a Pod of the new image leads");
    let image_ids: Vec<String> = pods
        .iter()
        .chain(upgraded.iter())
        .filter_map(|p| {
            p.status
                .as_ref()?
                .container_statuses
                .as_ref()?
                .first()
                .map(|c| c.image_id.clone())
        })
        .collect();
    assert_ne!(
        image_ids.first(),
        image_ids.last(),
        "the upgrade runs another image: {image_ids:?}"
    );
    let after = api.get("before-upgrade").await.expect("integration");
    assert_eq!(
        condition(&after, "Ready").expect("Ready").last_transition_time,
        ready_since,
        "Ready never changed"
    );
    // The new leader reconciles: a new integration becomes Ready.
    create(
        &client,
        &ns,
        "after-upgrade",
        json!({"region": "us-east-2", "serviceAccount": {"name": "milvus-2"}}),
    )
    .await;
    let after_upgrade = wait_ready_validated(&client, &ns, "after-upgrade").await;

    // helm uninstall removes the operator and nothing else (README, Uninstalling).
    helm_ok(
        &[
            "uninstall",
            "bucketwire",
            "--namespace",
            OPERATOR_NAMESPACE,
            "--wait",
        ],
        &bed,
    );
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    wait_for(
        "the operator's Pods to be gone",
        Duration::from_secs(180),
        || async {
            pods_api
                .list(&ListParams::default().labels("app.kubernetes.io/name=bucketwire"))
                .await
                .ok()?
                .items
                .is_empty()
                .then_some(())
        },
    )
    .await;
    let iam = aws::iam(&bed, "us-east-2").await;
    for name in ["before-upgrade", "after-upgrade"] {
        let bi = api.get(name).await.expect("the integration stays");
        assert!(
            condition(&bi, "Ready").is_some_and(|c| c.status == "True"),
            "{name} stays Ready"
        );
        let role = bi.status.as_ref().and_then(|s| s.role_arn.clone()).expect("role");
        let role_name = role.rsplit('/').next().expect("name").to_string();
        iam.get_role()
            .role_name(&role_name)
            .send()
            .await
            .expect("the role stays");
    }
    let _ = after_upgrade;

    // The same operator from the plain manifests (README: `kubectl apply -k deploy/`), through an
    // overlay that sets what the README asks to set (cluster, boundary, role annotation) and
    // the test bed's image and endpoint.
    let overlay = write_overlay(&bed);
    let _overlay_installed = Installed {
        bed_kubeconfig: bed.var("KUBECONFIG").to_string(),
        overlay: Some(overlay.clone()),
    };
    let (ok, out) = kubectl(&bed, &["apply", "-k", "deploy/crds"]);
    assert!(ok, "{out}");
    let (ok, out) = kubectl(&bed, &["apply", "-k", overlay.to_str().expect("utf-8")]);
    assert!(ok, "kubectl apply -k refused: {out}");
    operator_running(&bed, &client, &image).await;
    create(
        &client,
        &ns,
        "kustomized",
        json!({"region": "us-east-2", "serviceAccount": {"name": "milvus-3"}}),
    )
    .await;
    wait_ready_validated(&client, &ns, "kustomized").await;

    // Clean up while this operator runs: deleting an integration is what cleans up.
    for name in ["before-upgrade", "after-upgrade", "kustomized"] {
        api.delete(name, &DeleteParams::default()).await.expect("delete");
    }
    wait_for(
        "the integrations to be deleted",
        Duration::from_secs(120),
        || async {
            api.list(&ListParams::default())
                .await
                .ok()?
                .items
                .is_empty()
                .then_some(())
        },
    )
    .await;
    let (ok, out) = kubectl(
        &bed,
        &["delete", "-k", overlay.to_str().expect("utf-8"), "--timeout=120s"],
    );
    assert!(ok, "kubectl delete -k: {out}");
}

/// A kustomize overlay over deploy/ for the test bed: what a user sets (README, step 2) plus the
/// local image and the emulator's endpoint.
fn write_overlay(bed: &TestBed) -> PathBuf {
    let dir = root().join("target/testbed/deploy-overlay");
    std::fs::create_dir_all(&dir).expect("overlay dir");
    let env = |name: &str, value: &str| json!({"op": "add", "path": "/spec/template/spec/containers/0/env/-", "value": {"name": name, "value": value}});
    let deployment_patch: Value = json!([
        {"op": "replace", "path": "/spec/template/spec/containers/0/env/2/value", "value": bed.var("BUCKETWIRE_CLUSTER_NAME")},
        {"op": "replace", "path": "/spec/template/spec/containers/0/env/3/value", "value": bed.var("BUCKETWIRE_TESTBED_PERMISSIONS_BOUNDARY")},
        {"op": "replace", "path": "/spec/template/spec/containers/0/imagePullPolicy", "value": "Never"},
        env("BUCKETWIRE_AWS_ENDPOINT_URL", bed.var("BUCKETWIRE_TESTBED_POD_ENDPOINT_URL")),
        env("AWS_ENDPOINT_URL", bed.var("BUCKETWIRE_TESTBED_POD_ENDPOINT_URL")),
    ]);
    let sa_patch = json!([{"op": "add", "path": "/metadata/annotations", "value": {"eks.amazonaws.com/role-arn": bed.var("BUCKETWIRE_OPERATOR_ROLE_ARN")}}]);
    let kustomization = json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["../../../deploy"],
        "images": [{"name": "ghcr.io/bucketwire/bucketwire", "newName": IMAGE_REPOSITORY, "newTag": IMAGE_TAG}],
        "patches": [
            {"target": {"kind": "Deployment", "name": "bucketwire"}, "patch": deployment_patch.to_string()},
            {"target": {"kind": "ServiceAccount", "name": "bucketwire"}, "patch": sa_patch.to_string()},
        ],
    });
    // JSON is YAML: kustomize reads it as kustomization.yaml.
    std::fs::write(
        dir.join("kustomization.yaml"),
        serde_json::to_string_pretty(&kustomization).expect("json"),
    )
    .expect("overlay written");
    dir
}
