//! Access to the shared test bed that `make testbed-up` (or `make test`) started: a real
//! kube-apiserver and the moto AWS emulator. Tests fail, never skip, when it is not running.
#![allow(dead_code)] // each test binary uses a different part of these helpers

pub mod admission;
pub mod alibaba;
pub mod aws;
pub mod cli;
pub mod integration;
pub mod operator;
pub mod results;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;

/// The environment written by `make testbed-up` (target/testbed/env).
pub struct TestBed {
    vars: HashMap<String, String>,
}

impl TestBed {
    pub fn load() -> Self {
        let path = std::env::var_os("BUCKETWIRE_TESTBED_ENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/testbed/env"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "the test bed is not running ({}: {e}); start it with `make testbed-up`, or run `make test`",
                path.display()
            )
        });
        let vars = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|l| {
                l.trim()
                    .strip_prefix("export ")
                    .unwrap_or(l.trim())
                    .split_once('=')
            })
            .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
            .collect();
        Self { vars }
    }

    pub fn var(&self, name: &str) -> &str {
        self.vars
            .get(name)
            .unwrap_or_else(|| panic!("{name} is missing from the test bed environment"))
    }

    /// The name of the test bed's node (tests/testbed/node.py), for the tests that run Pods.
    pub fn node(&self) -> &str {
        self.vars.get("BUCKETWIRE_TESTBED_NODE").unwrap_or_else(|| {
            panic!(
                "this test runs Pods and needs the test bed's node, which is not running: \
                 `make testbed-up` starts it as root with containerd and runc installed \
                 (`make testbed`); see target/testbed/env and the README's \"The node\""
            )
        })
    }

    pub async fn client(&self) -> Client {
        let kubeconfig = Kubeconfig::read_from(self.var("KUBECONFIG")).expect("kubeconfig reads");
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("kubeconfig is valid");
        Client::try_from(config).expect("client builds")
    }
}

/// Installs the committed CRD (crds/bucketintegration.yaml) by server-side apply and waits
/// until the apiserver reports it Established.
pub async fn install_crd(client: &Client) {
    apply_crd(
        client,
        std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/crds/bucketintegration.yaml"
        )),
    )
    .await;
}

/// The workplace's upstream fixtures (the Milvus Helm chart, the Milvus Operator CRD), read in
/// place: `$BUCKETWIRE_FIXTURES`, else `../shared/fixtures` beside the repository.
pub fn fixture(path: &str) -> PathBuf {
    let root = std::env::var_os("BUCKETWIRE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"));
    let full = root.join(path);
    assert!(
        full.exists(),
        "upstream fixture {} is missing: set BUCKETWIRE_FIXTURES to the fixtures directory (../shared/fixtures beside the repository)",
        full.display()
    );
    full
}

/// The Milvus Operator's CRD (zilliztech/milvus-operator v1.3.8, the fixture, unchanged).
pub async fn install_milvus_crd(client: &Client) {
    apply_crd(client, &fixture("milvus-operator/milvus.io_milvuses.yaml")).await;
}

/// Server-side applies a CRD (a large one exceeds client-side apply's annotation limit) and
/// waits until it is Established.
pub async fn apply_crd(client: &Client, path: &std::path::Path) {
    let yaml = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let crd: CustomResourceDefinition = serde_yaml::from_str(&yaml).expect("the CRD parses");
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.metadata.name.clone().expect("the CRD has a name");
    api.patch(
        &name,
        &PatchParams::apply("bucketwire-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("the apiserver accepts the CRD");
    for _ in 0..100 {
        let current = api.get(&name).await.expect("CRD reads");
        let established = current
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("CRD {name} was not Established within 10s");
}

/// A fresh namespace, so that tests sharing the test bed never see each other's objects.
pub async fn namespace(client: &Client, prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = format!(
        "{prefix}-{}-{:x}{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace is created");
    name
}

/// Polls `check` every 200 ms until it returns `Some`, or panics with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if std::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The usual start of a test: the test bed, a client, the CRD installed, a fresh namespace.
pub async fn setup(prefix: &str) -> (TestBed, Client, String) {
    let bed = TestBed::load();
    let client = bed.client().await;
    install_crd(&client).await;
    let ns = namespace(&client, prefix).await;
    (bed, client, ns)
}

/// Runs the `bucketwire` CLI against the test bed with the operator's credentials (the test
/// bed's operator role): (exit code, stdout and stderr).
pub fn run_cli(bed: &TestBed, args: &[&str]) -> (i32, String) {
    run_cli_with_kubeconfig(bed, args, std::path::Path::new(bed.var("KUBECONFIG")))
}

/// `run_cli` with another kubeconfig than the test bed's.
pub fn run_cli_with_kubeconfig(bed: &TestBed, args: &[&str], kubeconfig: &std::path::Path) -> (i32, String) {
    run_cli_with_env(bed, args, kubeconfig, &[])
}

/// `run_cli_with_kubeconfig` with more environment (e.g. Alibaba Cloud credentials).
pub fn run_cli_with_env(
    bed: &TestBed,
    args: &[&str],
    kubeconfig: &std::path::Path,
    env: &[(&str, &str)],
) -> (i32, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_bucketwire"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KUBECONFIG", kubeconfig);
    for var in ["BUCKETWIRE_AWS_ENDPOINT_URL", "AWS_REGION"] {
        cmd.env(var, bed.var(var));
    }
    for (var, value) in aws::Identity::testbed(bed).env() {
        cmd.env(var, value);
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("bucketwire runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}
