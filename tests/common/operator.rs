//! Runs the real `bucketwire run` binary against the test bed, one operator per test, watching
//! only that test's namespace, with its own metrics port (so AWS call counts are the test's own).

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::TestBed;
use super::aws::Identity;

static NEXT_LOG: AtomicU32 = AtomicU32::new(0);

pub struct Operator {
    child: Option<Child>,
    namespace: String,
    identity: Identity,
    extra_args: Vec<String>,
    extra_env: Vec<(String, String)>,
    /// The tests' cadence: every resync reads every bucket setting and runs the full probe, and
    /// a restart checks everything at once when the resync is long (see `spawn`). Off, only
    /// the flags given apply (the production defaults: `start_with_production_cadence`).
    test_cadence: bool,
    log_path: std::path::PathBuf,
}

impl Operator {
    /// Starts the operator for `namespace` with a 2s resync and the given extra flags, as the
    /// test bed's operator role (exactly deploy/iam/operator-policy.json), with the test bed's
    /// permissions boundary and bucket prefix unless the flags give others.
    pub fn start(bed: &TestBed, namespace: &str, extra_args: &[&str]) -> Self {
        Self::start_with_env(bed, namespace, extra_args, &[])
    }

    pub fn start_with_env(bed: &TestBed, namespace: &str, extra_args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_as(bed, namespace, extra_args, env, &Identity::testbed(bed))
    }

    /// Starts the operator with the production cadence of steady resyncs (one bucket setting
    /// read, the read-only validation check, the restart spread), unless `extra_args` say
    /// otherwise; the rest as `start`.
    pub fn start_with_production_cadence(bed: &TestBed, namespace: &str, extra_args: &[&str]) -> Self {
        let mut op = Self::build(namespace, extra_args, &[], &Identity::testbed(bed));
        op.test_cadence = false;
        op.spawn(bed);
        op
    }

    /// Starts the operator with the credentials, boundary and prefix of `identity`.
    pub fn start_as(
        bed: &TestBed,
        namespace: &str,
        extra_args: &[&str],
        env: &[(&str, &str)],
        identity: &Identity,
    ) -> Self {
        let mut op = Self::build(namespace, extra_args, env, identity);
        op.spawn(bed);
        op
    }

    fn build(namespace: &str, extra_args: &[&str], env: &[(&str, &str)], identity: &Identity) -> Self {
        let log_dir =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/testbed/operator-logs");
        std::fs::create_dir_all(&log_dir).expect("log dir");
        Self {
            child: None,
            test_cadence: true,
            namespace: namespace.to_string(),
            identity: identity.clone(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            extra_env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            // One log per operator (two may share a namespace): the log also tells its ports.
            log_path: log_dir.join(format!(
                "{namespace}-{}.log",
                NEXT_LOG.fetch_add(1, Ordering::Relaxed)
            )),
        }
    }

    fn spawn(&mut self, bed: &TestBed) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("log file");
        // Port 0: the operator binds free ports itself and logs them (see `ports`), so two
        // tests never race for the same port.
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_bucketwire"));
        cmd.arg("run")
            .arg("--namespace")
            .arg(&self.namespace)
            .arg("--metrics-addr")
            .arg("127.0.0.1:0")
            .arg("--health-addr")
            .arg("127.0.0.1:0")
            .args(&self.extra_args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .envs(std::env::var("GLIBC_TUNABLES").map(|t| ("GLIBC_TUNABLES", t)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        for var in [
            "KUBECONFIG",
            "BUCKETWIRE_AWS_ENDPOINT_URL",
            "AWS_REGION",
            "BUCKETWIRE_CLUSTER_NAME",
        ] {
            cmd.env(var, bed.var(var));
        }
        // The operator's own role, never the administrator.
        for (var, value) in self.identity.env() {
            cmd.env(var, value);
        }
        // As the chart runs it: with the boundary its policy demands and the bucket prefix.
        let given = |flag: &str| self.extra_args.iter().any(|a| a == flag);
        if let Some(boundary) = &self.identity.boundary
            && !given("--permissions-boundary")
        {
            cmd.arg("--permissions-boundary").arg(boundary);
        }
        if !given("--bucket-prefix") {
            cmd.arg("--bucket-prefix").arg(&self.identity.bucket_prefix);
        }
        if !given("--resync-interval") {
            cmd.arg("--resync-interval").arg("2s");
        }
        if self.test_cadence {
            // What the tests of drift repair and validation expect of every resync.
            for flag in ["--bucket-settings-interval", "--write-probe-interval"] {
                if !given(flag) {
                    cmd.arg(flag).arg("0s");
                }
            }
            // A long resync is a test counting one restart's calls: no spread. (With the
            // tests' 2 s resync, the spread, 2 s, applies.)
            if given("--resync-interval") && !given("--restart-spread") {
                cmd.arg("--restart-spread").arg("0s");
            }
        }
        // Each test's operators elect their leader through a Lease in the test's own namespace.
        if !self.extra_args.iter().any(|a| a == "--leader-election-namespace") {
            cmd.arg("--leader-election-namespace").arg(&self.namespace);
        }
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("the operator starts"));
    }

    /// Restarts the operator without its crash points (`BUCKETWIRE_CRASH_AT`,
    /// `BUCKETWIRE_STOP_AFTER_AWS_CALLS`); the rest of its extra environment stays.
    pub fn restart_clean(&mut self, bed: &TestBed) {
        self.kill();
        self.extra_env
            .retain(|(k, _)| k != "BUCKETWIRE_CRASH_AT" && k != "BUCKETWIRE_STOP_AFTER_AWS_CALLS");
        self.spawn(bed);
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for the process to exit by itself (a crash point), returning whether it did.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                self.child = None;
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// The process id of the running operator.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends SIGTERM, as Kubernetes does when it stops a pod.
    pub fn terminate(&self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The raw /metrics text.
    pub async fn metrics(&self) -> String {
        for _ in 0..100 {
            // Resolved each time: after a restart the newest `serving` line may not be there yet.
            let (metrics, _) = self.ports().await;
            if let Ok(text) = http_get(&format!("http://127.0.0.1:{metrics}/metrics")).await {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "the metrics endpoint did not answer; operator log:\n{}",
            self.log()
        )
    }

    /// (metrics, health) ports, from the operator's `serving` log line of its latest start.
    async fn ports(&self) -> (u16, u16) {
        for _ in 0..100 {
            let log = self.log();
            if let Some(line) = log
                .lines()
                .rev()
                .find(|l| l.contains("serving") && l.contains("metrics"))
            {
                let port_after = |key: &str| {
                    let rest = &line[line.find(key)? + key.len()..];
                    let rest = &rest[rest.find("127.0.0.1:")? + "127.0.0.1:".len()..];
                    rest.chars()
                        .take_while(char::is_ascii_digit)
                        .collect::<String>()
                        .parse::<u16>()
                        .ok()
                };
                if let (Some(m), Some(h)) = (port_after("metrics"), port_after("health")) {
                    return (m, h);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the operator did not log its ports; log:\n{}", self.log())
    }

    /// GET on the health server: Ok(body) for a 200, Err(status line or error) otherwise.
    pub async fn health(&self, path: &str) -> Result<String, String> {
        let (_, health) = self.ports().await;
        http_get(&format!("http://127.0.0.1:{health}{path}")).await
    }

    /// `bucketwire_aws_calls_total` of the operator's own identity, by (service, operation, outcome).
    pub async fn aws_calls(&self) -> BTreeMap<(String, String, String), u64> {
        parse_calls(&self.metrics().await, "operator")
    }

    /// Calls made as the workload (validation), by (service, operation, outcome).
    pub async fn workload_calls(&self) -> BTreeMap<(String, String, String), u64> {
        parse_calls(&self.metrics().await, "workload")
    }

    /// Calls of operations that change something (anything but Get*, List*, Head*, Describe*).
    pub async fn mutating_calls(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for ((service, op, _), n) in self.aws_calls().await {
            if !is_read(&op) {
                *out.entry(format!("{service}:{op}")).or_default() += n;
            }
        }
        out
    }

    pub async fn total_aws_calls(&self) -> u64 {
        self.aws_calls().await.values().sum()
    }

    /// Successful reconciles so far.
    pub async fn reconciles(&self) -> u64 {
        self.metrics()
            .await
            .lines()
            .filter(|l| l.starts_with("bucketwire_reconciles_total{result=\"success\"}"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

/// Lookups the operator makes once per process and caches (issue 7 does not count them per
/// integration), as "Service:Operation".
pub const CACHED_LOOKUPS: [&str; 3] = [
    "STS:GetCallerIdentity",
    "EKS:DescribeCluster",
    "IAM:GetOpenIDConnectProvider",
];

/// A series' value in /metrics text, e.g. `name{label="x"}` (0 when absent).
pub fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
}

pub fn is_read(operation: &str) -> bool {
    ["Get", "List", "Head", "Describe"]
        .iter()
        .any(|p| operation.starts_with(p))
}

fn parse_calls(text: &str, identity: &str) -> BTreeMap<(String, String, String), u64> {
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("bucketwire_aws_calls_total{"))
    {
        let (labels, value) = line.rsplit_once(' ').expect("sample");
        let label = |name: &str| {
            labels
                .split(&format!("{name}=\""))
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_default()
                .to_string()
        };
        let n: u64 = value.parse().unwrap_or(0);
        if label("identity") != identity {
            continue;
        }
        out.insert((label("service"), label("operation"), label("outcome")), n);
    }
    out
}

/// GET over plain HTTP/1.1: Ok(body) for a 200, Err(status line or error) otherwise.
pub async fn http_get(url: &str) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").ok_or("http only")?;
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut stream = tokio::net::TcpStream::connect(host)
        .await
        .map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut body = String::new();
    stream
        .read_to_string(&mut body)
        .await
        .map_err(|e| e.to_string())?;
    let (head, body) = body.split_once("\r\n\r\n").ok_or("no body")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(head.to_string());
    }
    Ok(body.to_string())
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A "nothing happens during `window`" check: reads `value` every 200 ms for `window` and
/// panics, naming `what`, as soon as it differs from the first reading; returns that reading.
pub async fn unchanged_for<T, F, Fut>(what: &str, window: Duration, mut value: F) -> T
where
    T: PartialEq + std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let first = value().await;
    let deadline = Instant::now() + window;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = value().await;
        assert_eq!(now, first, "{what} changed within {window:?}");
    }
    first
}

/// tests/faultproxy/faultproxy.py between an operator and the emulator: it fails and slows the
/// share of requests it is told to (none with `--rate 0`), and records every request it saw
/// (time, service, action, the resources named) in its request log.
pub struct AwsProxy {
    child: Child,
    pub url: String,
    log: std::path::PathBuf,
}

/// One request the proxy saw, from its request log.
#[derive(Debug, serde::Deserialize)]
pub struct ProxyRequest {
    /// Unix time, seconds.
    pub t: f64,
    pub service: String,
    pub method: String,
    pub path: String,
    pub action: String,
    /// The bucket of an S3 path and every `*Name`/`*Arn` parameter of the form.
    pub names: Vec<String>,
    /// `pass`, `slow`, `forced` or a failure kind.
    pub outcome: String,
}

impl ProxyRequest {
    /// Whether the request names something containing `part` (in its path or parameters).
    pub fn names_any(&self, part: &str) -> bool {
        self.path.contains(part) || self.names.iter().any(|n| n.contains(part))
    }

    /// Whether the request could change something: S3 PUT/POST/DELETE, or an IAM/STS action
    /// other than Get*/List*/Describe*/AssumeRole*/Simulate* (the test bed's rule, tests/common/aws.rs).
    pub fn is_write(&self) -> bool {
        if !self.action.is_empty() {
            let reads = ["Get", "List", "Describe", "AssumeRole", "Simulate"];
            return !reads.iter().any(|p| self.action.starts_with(p));
        }
        matches!(self.method.as_str(), "PUT" | "POST" | "DELETE")
    }
}

impl AwsProxy {
    /// Starts the proxy in front of `target` with `args` (e.g. `["--rate", "0"]`), logging to
    /// `target/testbed/awsproxy-<name>.jsonl`.
    pub fn start(target: &str, name: &str, args: &[&str]) -> Self {
        let root = env!("CARGO_MANIFEST_DIR");
        let log = std::path::PathBuf::from(root).join(format!("target/testbed/awsproxy-{name}.jsonl"));
        let _ = std::fs::remove_file(&log);
        let mut child = Command::new(format!("{root}/target/testbed/venv/bin/python"))
            .arg(format!("{root}/tests/faultproxy/faultproxy.py"))
            .args(["--target", target])
            .args(args)
            .arg("--log")
            .arg(&log)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the AWS proxy starts");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("the proxy says where it listens");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected proxy output: {line}"))
            .to_string();
        Self { child, url, log }
    }

    /// The proxy's counters (`GET /__faults`).
    pub async fn counts(&self) -> serde_json::Value {
        let text = http_get(&format!("{}/__faults", self.url))
            .await
            .expect("proxy counts");
        serde_json::from_str(&text).expect("proxy counts")
    }

    /// Fails the next `count` requests naming `part`, whatever the random draw.
    pub async fn force(&self, part: &str, count: u32) {
        http_get(&format!("{}/__force?match={part}&count={count}", self.url))
            .await
            .expect("force");
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<ProxyRequest> {
        std::fs::read_to_string(&self.log)
            .expect("the proxy's request log")
            .lines()
            // A line being written as this reads is incomplete: skipped.
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for AwsProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
