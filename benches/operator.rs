//! `make bench`: the operator against the test bed with N BucketIntegrations, several times,
//! measured from outside (the operator's /metrics, /proc, the API server's watch).
//!
//! Each run: start an operator (release build, the production cadence of steady resyncs) for a
//! fresh namespace; create N integrations and time each one from its create to Ready; let it
//! idle; restart it without the restart spread, at the production IAM rate (the new process
//! reconciles every integration once: a no-op resync, measured exactly); restart it again with
//! the spread over a window W that stands for the hour (`resync_window`) and count the calls
//! of W's first sixth (a restart's first 10 minutes) and of all of W (each checked once, with
//! fewer full bucket reads than the steady sixth); restart it once more and delete them all,
//! waiting until they are gone. Results go to BENCHMARKS.md and bench/results.json.
//!
//! `cargo bench --bench operator -- --sizes 100,1000 --repetitions 3` runs it; without
//! `--bench` (as `cargo test --benches` runs it) it is a smoke run: N = 3, once, report to
//! target/bench/.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde::Serialize;
use serde_json::json;

use bucketwire::api::BucketIntegration;
use common::operator::{CACHED_LOOKUPS, Operator, is_read};
use common::{TestBed, install_crd, namespace};

#[derive(Parser, Debug)]
struct Args {
    /// Numbers of integrations, one batch each.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    sizes: Vec<usize>,
    /// Runs per size (medians and spread are over these).
    #[arg(long, default_value_t = 3)]
    repetitions: usize,
    /// The operator's --max-concurrent-reconciles.
    #[arg(long, default_value_t = 4)]
    concurrency: u16,
    /// The operator's --iam-requests-per-second. The bench raises the production default
    /// (10) so that the emulator, not the limiter, is what is measured; the wait the limiter
    /// adds is reported either way.
    #[arg(long, default_value_t = 100)]
    iam_requests_per_second: u32,
    /// The --iam-requests-per-second of the restarted operators (the no-op resync and the
    /// restart's window): the production default, which a steady state must fit in.
    #[arg(long, default_value_t = 10)]
    steady_iam_requests_per_second: u32,
    /// Where the Markdown report goes.
    #[arg(long, default_value = "BENCHMARKS.md")]
    report: PathBuf,
    /// Where the JSON results go.
    #[arg(long, default_value = "bench/results.json")]
    json: PathBuf,
    /// Set by `cargo bench`; without it this is a smoke run.
    #[arg(long)]
    bench: bool,
}

#[tokio::main]
async fn main() {
    let mut args = Args::parse();
    if !args.bench {
        // `cargo test --benches`: prove the harness works, quickly, without touching the report.
        args.sizes = vec![3];
        args.repetitions = 1;
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench");
        args.report = dir.join("BENCHMARKS.md");
        args.json = dir.join("results.json");
    }
    let bed = TestBed::load();
    let client = bed.client().await;
    install_crd(&client).await;
    let mut runs = vec![];
    for &size in &args.sizes {
        for repetition in 1..=args.repetitions {
            eprintln!("bench: N = {size}, run {repetition} of {}", args.repetitions);
            let run = run_once(&bed, &client, &args, size).await;
            eprintln!(
                "bench: N = {size}: batch {:.1}s, p50 {:.2}s, peak RSS {:.1} MiB, create {:.1} / resync {:.1} / delete {:.1} calls per integration",
                run.batch_seconds,
                run.ready_seconds.p50,
                run.peak_rss_mib,
                run.create.per_integration,
                run.resync.per_integration,
                run.delete.per_integration
            );
            check(&run);
            runs.push(run);
        }
    }
    let report = Report {
        machine: Machine::read(),
        settings: json!({
            "concurrency": args.concurrency,
            "iam_requests_per_second": args.iam_requests_per_second,
            "repetitions": args.repetitions,
            "build": "release (cargo bench profile)",
            "steady_iam_requests_per_second": args.steady_iam_requests_per_second,
            "cadence": "production defaults (iam bulk reads, bucket settings every 6 resync intervals, read-only validation on steady resyncs); resync 1h, and W (resync_window) in the restart's window",
            // The operator's allocator settings when an experiment set them (tests/common passes
            // GLIBC_TUNABLES through); null: glibc's defaults.
            "glibc_tunables": std::env::var("GLIBC_TUNABLES").ok(),
        }),
        summaries: args
            .sizes
            .iter()
            .map(|&n| Summary::of(n, runs.iter().filter(|r| r.n == n).collect()))
            .collect(),
        runs,
    };
    for path in [&args.report, &args.json] {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).expect("report directory");
        }
    }
    std::fs::write(
        &args.json,
        serde_json::to_string_pretty(&report).expect("json") + "\n",
    )
    .expect("the JSON results are written");
    std::fs::write(&args.report, markdown(&report, &args.json)).expect("the report is written");
    eprintln!(
        "bench: wrote {} and {}",
        args.report.display(),
        args.json.display()
    );
}

/// What every run must show, whatever its size (the smoke run in `make test` checks these).
fn check(run: &Run) {
    // The operator's own identity. The integrations here are unversioned (the default): on a
    // versioned bucket the operator also deletes the probe's object versions at each validation.
    assert_eq!(
        run.resync.mutating, 0.0,
        "a no-op resync wrote to AWS with the operator's credentials: {:?}",
        run.resync
    );
    // As the workload, a steady resync writes nothing: the read-only check.
    assert_eq!(
        run.resync_workload.mutating, 0.0,
        "a no-op resync wrote as the workload: {:?}",
        run.resync_workload
    );
    // Nor does a whole window of them, the full bucket reads included.
    assert_eq!(
        run.window.mutating + run.window_workload.mutating,
        0.0,
        "a steady window wrote: {:?} {:?}",
        run.window,
        run.window_workload
    );
    assert_eq!(
        run.steady.mutating + run.steady_workload.mutating,
        0.0,
        "the steady window wrote: {:?} {:?}",
        run.steady,
        run.steady_workload
    );
    assert!(
        run.window_reconciles > 0.0 && run.steady_reconciles > 0.0,
        "nothing was checked in a window: {run:?}"
    );
    // Each process's peak was read while it ran (0: /proc had nothing for it).
    let p = &run.peak_rss_by_phase;
    assert!(
        [p.create, p.resync, p.window, p.delete]
            .iter()
            .all(|mib| *mib > 0.0),
        "{p:?}"
    );
    assert!(
        run.resync.per_integration > 0.0,
        "the resync read nothing: {:?}",
        run.resync
    );
    assert!(run.create.mutating > 0.0 && run.delete.mutating > 0.0, "{run:?}");
    assert_eq!(run.ready_seconds.count, run.n, "every integration became Ready");
}

/// The bench's stand-in for the production hour (the resync interval and restart spread):
/// about 60 ms per integration, which lets the test bed check each one in it, and at least 30 s.
/// The bucket settings' interval is six of these, as 6 h are of the hour, and a restart's
/// first sixth stands for its first 10 minutes.
fn resync_window(n: usize) -> Duration {
    Duration::from_millis((n as u64 * 60).max(30_000))
}

/// Starts an operator with the production cadence and these flags.
fn start_operator(bed: &TestBed, namespace: &str, args: &[String]) -> Operator {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Operator::start_with_production_cadence(bed, namespace, &args)
}

#[derive(Serialize, Debug)]
struct Run {
    n: usize,
    /// From the first create to the last Ready.
    batch_seconds: f64,
    /// From each integration's create to its Ready.
    ready_seconds: Distribution,
    /// With the operator's own credentials (the validation probe's calls are apart).
    create: Calls,
    resync: Calls,
    delete: Calls,
    /// The validation probe (as the workload), per integration, while creating.
    validation_calls_per_integration: f64,
    /// What the no-op resync did as the workload (the validation probe), per integration;
    /// `mutating` counts writes (S3 puts, deletes and the multipart upload; AssumeRoleWithWebIdentity writes
    /// nothing).
    resync_workload: Calls,
    /// What a restart with the spread made in the first sixth of its window, per integration,
    /// as the operator and as the workload.
    restart_window: Calls,
    restart_window_workload: Calls,
    /// The same restart over its whole window: each integration checked once. Meant as the
    /// steady state's average resync, it has fewer full bucket reads than that average's sixth,
    /// because a process that starts counts its bucket settings as just read.
    window: Calls,
    window_workload: Calls,
    /// Reconciles in the window, per integration (1.0: each checked once).
    window_reconciles: f64,
    /// The next window W of the same process: the steady state, its full bucket reads at their
    /// sixth (each integration's settings phase point passes once in 6 W).
    steady: Calls,
    steady_workload: Calls,
    steady_reconciles: f64,
    window_seconds: f64,
    delete_seconds: f64,
    peak_rss_mib: f64,
    peak_rss_by_phase: PeakRss,
    /// Operator CPU over the whole run (both processes).
    operator_cpu_seconds: f64,
    /// Operator CPU per wall second over 10 s after convergence (1.0 = one core busy).
    idle_cpu_cores: f64,
    /// Requests the operator sent to the API server, by verb (both processes).
    kubernetes_requests: BTreeMap<String, f64>,
    /// Mean time the emulator took to answer one HTTP request, by service.
    aws_seconds_per_request: BTreeMap<String, f64>,
    /// HTTP requests to AWS, and their summed answer time (the emulator's work, as the operator saw it).
    aws_requests: f64,
    aws_request_seconds: f64,
    /// Time IAM requests waited for the client-side rate limit.
    rate_limit_wait_seconds: f64,
    emulator_cpu_seconds: f64,
    apiserver_cpu_seconds: f64,
}

/// Peak RSS (MiB) of each of a run's operator processes, by what it did.
#[derive(Serialize, Debug)]
struct PeakRss {
    /// Created them and idled 10 s.
    create: f64,
    /// The restart without the spread.
    resync: f64,
    /// The restart with the spread and the steady window after it.
    window: f64,
    delete: f64,
}

#[derive(Serialize, Debug, Default)]
struct Calls {
    per_integration: f64,
    mutating: f64,
    reads: f64,
    /// Per integration, by "Service:Operation" (cached lookups listed apart).
    by_operation: BTreeMap<String, f64>,
    cached_lookups: BTreeMap<String, f64>,
}

impl Calls {
    /// The operator's own calls between two snapshots, per integration.
    fn between(before: &Snapshot, after: &Snapshot, n: usize) -> Self {
        Self::of(&before.operator_calls, &after.operator_calls, n, is_read)
    }

    /// The calls made as the workload (the validation probe) between two snapshots.
    fn workload_between(before: &Snapshot, after: &Snapshot, n: usize) -> Self {
        Self::of(&before.workload_calls, &after.workload_calls, n, is_workload_read)
    }

    fn of(
        before: &BTreeMap<String, f64>,
        after: &BTreeMap<String, f64>,
        n: usize,
        is_read: impl Fn(&str) -> bool,
    ) -> Self {
        let mut calls = Calls::default();
        for (op, count) in after {
            let delta = count - before.get(op).copied().unwrap_or(0.0);
            if delta <= 0.0 {
                continue;
            }
            if CACHED_LOOKUPS.contains(&op.as_str()) {
                calls.cached_lookups.insert(op.clone(), delta);
                continue;
            }
            let per = delta / n as f64;
            calls.by_operation.insert(op.clone(), per);
            calls.per_integration += per;
            let operation = op.split_once(':').map(|(_, o)| o).unwrap_or(op);
            if is_read(operation) {
                calls.reads += per;
            } else {
                calls.mutating += per;
            }
        }
        calls
    }
}

/// Whether an operation made as the workload writes nothing: reads, and STS's
/// AssumeRoleWithWebIdentity (which hands out credentials and changes nothing).
fn is_workload_read(operation: &str) -> bool {
    is_read(operation) || operation.starts_with("AssumeRole")
}

#[derive(Serialize, Debug, Default, Clone)]
struct Distribution {
    count: usize,
    p50: f64,
    p95: f64,
    max: f64,
}

impl Distribution {
    fn of(mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        let at = |q: f64| {
            if values.is_empty() {
                return 0.0;
            }
            let i = ((values.len() as f64 - 1.0) * q).round() as usize;
            values[i]
        };
        Self {
            count: values.len(),
            p50: at(0.5),
            p95: at(0.95),
            max: at(1.0),
        }
    }
}

/// The operator's /metrics, parsed into what the report needs.
#[derive(Default, Clone)]
struct Snapshot {
    operator_calls: BTreeMap<String, f64>,
    /// Calls made with the workload's credentials (the validation probe), by "Service:Operation".
    workload_calls: BTreeMap<String, f64>,
    kubernetes_requests: BTreeMap<String, f64>,
    request_seconds: BTreeMap<String, f64>,
    requests: BTreeMap<String, f64>,
    rate_limit_wait: f64,
    reconciles: f64,
}

impl Snapshot {
    async fn take(operator: &Operator) -> Self {
        let text = operator.metrics().await;
        let mut s = Snapshot::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else { continue };
            let label = |name: &str| {
                series
                    .split(&format!("{name}=\""))
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .unwrap_or_default()
                    .to_string()
            };
            let metric = series.split('{').next().unwrap_or_default();
            match metric {
                "bucketwire_aws_calls_total" if label("identity") == "operator" => {
                    *s.operator_calls
                        .entry(format!("{}:{}", label("service"), label("operation")))
                        .or_default() += value;
                }
                "bucketwire_aws_calls_total" if label("identity") == "workload" => {
                    *s.workload_calls
                        .entry(format!("{}:{}", label("service"), label("operation")))
                        .or_default() += value;
                }
                "bucketwire_kubernetes_requests_total" => {
                    *s.kubernetes_requests.entry(label("verb")).or_default() += value;
                }
                "bucketwire_aws_request_duration_seconds_sum" => {
                    s.request_seconds.insert(label("service"), value);
                }
                "bucketwire_aws_request_duration_seconds_count" => {
                    s.requests.insert(label("service"), value);
                }
                "bucketwire_aws_rate_limit_wait_seconds_total" => s.rate_limit_wait += value,
                "bucketwire_reconciles_total" => s.reconciles += value,
                _ => {}
            }
        }
        s
    }
}

/// CPU seconds (user + system) of a process, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may contain spaces) end at the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat; index 11 and 12 after the command.
    (ticks(11) + ticks(12)) / clock_ticks_per_second()
}

fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Peak resident set size (VmHWM) of a process, in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

/// The pid of a test bed process, from the pid file `testbed.py up` wrote.
fn testbed_pid(name: &str) -> Option<u32> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("target/testbed/{name}.pid"));
    std::fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Records when each integration is first seen Ready.
fn watch_ready(
    api: Api<BucketIntegration>,
) -> (Arc<Mutex<HashMap<String, Instant>>>, tokio::task::JoinHandle<()>) {
    let ready: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen = ready.clone();
    let task = tokio::spawn(async move {
        let stream = watcher(api, watcher::Config::default()).applied_objects();
        futures::pin_mut!(stream);
        while let Ok(Some(bi)) = stream.try_next().await {
            let is_ready = bi.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            });
            if is_ready {
                let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                seen.entry(bi.name_any()).or_insert_with(Instant::now);
            }
        }
    });
    (ready, task)
}

async fn run_once(bed: &TestBed, client: &Client, args: &Args, n: usize) -> Run {
    let ns = namespace(client, "bench").await;
    let api: Api<BucketIntegration> = Api::namespaced(client.clone(), &ns);
    let operator_args = [
        "--resync-interval".to_string(),
        "1h".into(),
        "--max-concurrent-reconciles".into(),
        args.concurrency.to_string(),
        "--iam-requests-per-second".into(),
        args.iam_requests_per_second.to_string(),
    ];
    let operator_args: Vec<&str> = operator_args.iter().map(String::as_str).collect();
    let emulator_pid = testbed_pid("moto");
    let apiserver_pid = testbed_pid("controlplane");
    let emulator_cpu_start = emulator_pid.map(cpu_seconds).unwrap_or(0.0);
    let apiserver_cpu_start = apiserver_pid.map(cpu_seconds).unwrap_or(0.0);

    let mut operator = Operator::start_with_production_cadence(bed, &ns, &operator_args);
    let pid = operator.pid().expect("the operator runs");
    let start = Snapshot::take(&operator).await;

    // Create: every integration, 16 requests at a time, each timed to its Ready.
    let (ready, watch_task) = watch_ready(api.clone());
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let batch_start = Instant::now();
    futures::stream::iter(0..n)
        .for_each_concurrent(16, |i| {
            let api = api.clone();
            let created = created.clone();
            async move {
                let name = format!("milvus-{i:04}");
                let bi: BucketIntegration = serde_json::from_value(json!({
                    "apiVersion": "bucketwire.io/v1alpha1",
                    "kind": "BucketIntegration",
                    "metadata": {"name": name},
                    "spec": {"region": "us-east-2", "bucket": {"deletionPolicy": "Delete"}},
                }))
                .expect("integration");
                let at = Instant::now();
                api.create(&PostParams::default(), &bi)
                    .await
                    .expect("the integration is accepted");
                created.lock().unwrap_or_else(|e| e.into_inner()).insert(name, at);
            }
        })
        .await;
    let deadline = Instant::now() + Duration::from_secs(300 + n as u64);
    loop {
        let done = ready.lock().unwrap_or_else(|e| e.into_inner()).len();
        if done >= n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {done} of {n} integrations became Ready; operator log: {}",
            operator
                .log()
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    watch_task.abort();
    let ready = ready.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let created = created.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let batch_seconds = ready
        .values()
        .max()
        .map(|last| last.duration_since(batch_start).as_secs_f64())
        .unwrap_or(0.0);
    let ready_seconds = Distribution::of(
        ready
            .iter()
            .filter_map(|(name, at)| Some(at.saturating_duration_since(*created.get(name)?).as_secs_f64()))
            .collect(),
    );
    // Status writes that follow Ready (none expected) settle before the snapshot.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let converged = Snapshot::take(&operator).await;

    // Idle: nothing changes, the resync is an hour away.
    let idle_cpu_start = cpu_seconds(pid);
    let idle_start = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle_cpu_cores = (cpu_seconds(pid) - idle_cpu_start) / idle_start.elapsed().as_secs_f64();
    let first_cpu = cpu_seconds(pid);
    let first_rss = peak_rss_mib(pid);
    let first_final = Snapshot::take(&operator).await;

    // A restart reconciles every integration once: the no-op resync. From here on, until the
    // deletes, the operator runs at the production IAM rate: a steady state must fit in it.
    let restart = |operator: &mut Operator| {
        operator.terminate();
        assert!(
            operator.wait_for_exit(Duration::from_secs(30)),
            "the operator stops on SIGTERM"
        );
    };
    restart(&mut operator);
    let steady_rate = args.steady_iam_requests_per_second.to_string();
    let steady_args = |resync: &str, spread: &str, settings: &str| -> Vec<String> {
        [
            "--resync-interval",
            resync,
            "--restart-spread",
            spread,
            "--bucket-settings-interval",
            settings,
            "--max-concurrent-reconciles",
            &args.concurrency.to_string(),
            "--iam-requests-per-second",
            &steady_rate,
        ]
        .map(String::from)
        .to_vec()
    };
    let no_spread = steady_args("1h", "0s", "6h");
    let mut operator = start_operator(bed, &ns, &no_spread);
    let pid = operator.pid().expect("the operator runs");
    let restarted = Snapshot::take(&operator).await;
    let deadline = Instant::now() + Duration::from_secs(120 + n as u64);
    let resynced = loop {
        let now = Snapshot::take(&operator).await;
        if now.reconciles >= n as f64 {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted operator did not reconcile all {n}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut cpu = cpu_seconds(pid);
    let resync_rss = peak_rss_mib(pid);
    let mut rss = resync_rss;

    // A restart with the spread, over one whole resync window: the production cadence scaled
    // down (a window W for the hour, 6 W for the bucket settings' 6 h), so that every
    // integration is checked once in it. A started process counts its bucket settings as just
    // read, so fewer than a sixth read them all in this first window (docs/benchmarks.md); the
    // steady window after it has the sixth. Its first sixth stands for a restart's first 10
    // minutes.
    restart(&mut operator);
    let window = resync_window(n);
    let secs = |d: Duration| format!("{}ms", d.as_millis());
    let spread_args = steady_args(&secs(window), &secs(window), &secs(window * 6));
    let mut operator = start_operator(bed, &ns, &spread_args);
    let pid = operator.pid().expect("the operator runs");
    let window_start = Snapshot::take(&operator).await;
    let started = Instant::now();
    tokio::time::sleep(window / 6).await;
    let first_sixth = Snapshot::take(&operator).await;
    tokio::time::sleep(window.saturating_sub(started.elapsed())).await;
    let window_end = Snapshot::take(&operator).await;
    // The same process's next window: every integration checked once more, each bucket's full
    // read due when its settings phase point passed since the last one (a sixth of them).
    tokio::time::sleep((2 * window).saturating_sub(started.elapsed())).await;
    let steady_end = Snapshot::take(&operator).await;
    cpu += cpu_seconds(pid);
    let window_rss = peak_rss_mib(pid);
    rss = rss.max(window_rss);

    // Delete everything (at the raised rate again, the spread pushed out of the way so the
    // steady checks do not mix in) and wait until the finalizers let go.
    restart(&mut operator);
    let mut delete_args = operator_args.clone();
    delete_args.extend(["--restart-spread", "24h"]);
    let operator = Operator::start_with_production_cadence(bed, &ns, &delete_args);
    let pid = operator.pid().expect("the operator runs");
    let delete_start_calls = Snapshot::take(&operator).await;
    let delete_start = Instant::now();
    api.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .expect("delete collection");
    let deadline = Instant::now() + Duration::from_secs(300 + n as u64);
    loop {
        let left = api
            .list_metadata(&ListParams::default())
            .await
            .expect("list")
            .items
            .len();
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{left} integrations were not deleted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let delete_seconds = delete_start.elapsed().as_secs_f64();
    let deleted = Snapshot::take(&operator).await;
    cpu += cpu_seconds(pid);
    let delete_rss = peak_rss_mib(pid);
    rss = rss.max(delete_rss);
    drop(operator);
    let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .delete(&ns, &DeleteParams::default())
        .await;

    // The processes' counters, summed (each starts from zero).
    let total = |f: fn(&Snapshot) -> &BTreeMap<String, f64>| -> BTreeMap<String, f64> {
        let mut sum = f(&first_final).clone();
        for (k, v) in f(&resynced).iter().chain(f(&steady_end)).chain(f(&deleted)) {
            *sum.entry(k.clone()).or_default() += v;
        }
        sum
    };
    let kubernetes_requests = total(|s| &s.kubernetes_requests);
    let seconds = total(|s| &s.request_seconds);
    let requests = total(|s| &s.requests);
    Run {
        n,
        batch_seconds,
        ready_seconds,
        create: Calls::between(&start, &converged, n),
        resync: Calls::between(&restarted, &resynced, n),
        delete: Calls::between(&delete_start_calls, &deleted, n),
        restart_window: Calls::between(&window_start, &first_sixth, n),
        restart_window_workload: Calls::workload_between(&window_start, &first_sixth, n),
        window: Calls::between(&window_start, &window_end, n),
        window_workload: Calls::workload_between(&window_start, &window_end, n),
        window_reconciles: (window_end.reconciles - window_start.reconciles) / n as f64,
        steady: Calls::between(&window_end, &steady_end, n),
        steady_workload: Calls::workload_between(&window_end, &steady_end, n),
        steady_reconciles: (steady_end.reconciles - window_end.reconciles) / n as f64,
        window_seconds: window.as_secs_f64(),
        validation_calls_per_integration: Calls::workload_between(&start, &converged, n).per_integration,
        resync_workload: Calls::workload_between(&restarted, &resynced, n),
        delete_seconds,
        peak_rss_mib: first_rss.max(rss),
        peak_rss_by_phase: PeakRss {
            create: first_rss,
            resync: resync_rss,
            window: window_rss,
            delete: delete_rss,
        },
        operator_cpu_seconds: first_cpu + cpu,
        idle_cpu_cores,
        kubernetes_requests,
        aws_seconds_per_request: seconds
            .iter()
            .map(|(service, s)| {
                (
                    service.clone(),
                    s / requests.get(service).copied().unwrap_or(1.0).max(1.0),
                )
            })
            .collect(),
        aws_requests: requests.values().sum(),
        aws_request_seconds: seconds.values().sum(),
        rate_limit_wait_seconds: first_final.rate_limit_wait
            + resynced.rate_limit_wait
            + steady_end.rate_limit_wait
            + deleted.rate_limit_wait,
        emulator_cpu_seconds: emulator_pid.map(cpu_seconds).unwrap_or(0.0) - emulator_cpu_start,
        apiserver_cpu_seconds: apiserver_pid.map(cpu_seconds).unwrap_or(0.0) - apiserver_cpu_start,
    }
}

#[derive(Serialize)]
struct Machine {
    cores: usize,
    memory_gib: f64,
    cpu: String,
    kernel: String,
}

impl Machine {
    fn read() -> Self {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Self {
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            memory_gib: (memory_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            cpu: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
                .unwrap_or_default(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
        }
    }
}

/// Median and spread (min, max) of one figure over the repetitions.
#[derive(Serialize, Clone, Copy)]
struct Spread {
    median: f64,
    min: f64,
    max: f64,
}

impl Spread {
    fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut v: Vec<f64> = values.into_iter().collect();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return Self {
                median: 0.0,
                min: 0.0,
                max: 0.0,
            };
        }
        let mid = v.len() / 2;
        let median = if v.len().is_multiple_of(2) {
            (v[mid - 1] + v[mid]) / 2.0
        } else {
            v[mid]
        };
        Self {
            median,
            min: v[0],
            max: v[v.len() - 1],
        }
    }
}

#[derive(Serialize)]
struct Summary {
    n: usize,
    runs: usize,
    figures: BTreeMap<&'static str, Spread>,
    create_by_operation: BTreeMap<String, f64>,
    resync_by_operation: BTreeMap<String, f64>,
    resync_workload_by_operation: BTreeMap<String, f64>,
    /// The restart's whole window W (each integration checked once), per integration.
    window_by_operation: BTreeMap<String, f64>,
    window_workload_by_operation: BTreeMap<String, f64>,
    steady_by_operation: BTreeMap<String, f64>,
    delete_by_operation: BTreeMap<String, f64>,
}

impl Summary {
    fn of(n: usize, runs: Vec<&Run>) -> Self {
        let figure = |f: &dyn Fn(&Run) -> f64| Spread::of(runs.iter().map(|r| f(r)));
        let mut figures = BTreeMap::new();
        figures.insert("batch_seconds", figure(&|r| r.batch_seconds));
        figures.insert("ready_p50_seconds", figure(&|r| r.ready_seconds.p50));
        figures.insert("ready_p95_seconds", figure(&|r| r.ready_seconds.p95));
        figures.insert("ready_max_seconds", figure(&|r| r.ready_seconds.max));
        figures.insert("delete_seconds", figure(&|r| r.delete_seconds));
        figures.insert("create_calls", figure(&|r| r.create.per_integration));
        figures.insert("create_mutating", figure(&|r| r.create.mutating));
        figures.insert("create_reads", figure(&|r| r.create.reads));
        figures.insert("resync_calls", figure(&|r| r.resync.per_integration));
        figures.insert("resync_mutating", figure(&|r| r.resync.mutating));
        figures.insert("resync_reads", figure(&|r| r.resync.reads));
        figures.insert(
            "resync_workload_calls",
            figure(&|r| r.resync_workload.per_integration),
        );
        figures.insert("resync_workload_writes", figure(&|r| r.resync_workload.mutating));
        figures.insert(
            "resync_both_calls",
            figure(&|r| r.resync.per_integration + r.resync_workload.per_integration),
        );
        figures.insert("window_seconds", figure(&|r| r.window_seconds));
        figures.insert("window_reconciles", figure(&|r| r.window_reconciles));
        figures.insert("window_calls", figure(&|r| r.window.per_integration));
        figures.insert("window_reads", figure(&|r| r.window.reads));
        figures.insert(
            "window_workload_calls",
            figure(&|r| r.window_workload.per_integration),
        );
        figures.insert(
            "window_writes",
            figure(&|r| r.window.mutating + r.window_workload.mutating),
        );
        figures.insert(
            "restart_window_calls",
            figure(&|r| r.restart_window.per_integration + r.restart_window_workload.per_integration),
        );
        figures.insert("steady_reconciles", figure(&|r| r.steady_reconciles));
        figures.insert("steady_calls", figure(&|r| r.steady.per_integration));
        figures.insert("steady_reads", figure(&|r| r.steady.reads));
        figures.insert(
            "steady_workload_calls",
            figure(&|r| r.steady_workload.per_integration),
        );
        figures.insert(
            "steady_writes",
            figure(&|r| r.steady.mutating + r.steady_workload.mutating),
        );
        figures.insert(
            "restart_window_share",
            figure(&|r| (r.steady.per_integration + r.steady_workload.per_integration) / 6.0),
        );
        figures.insert(
            "restart_window_ratio",
            figure(&|r| {
                let share = (r.steady.per_integration + r.steady_workload.per_integration) / 6.0;
                (r.restart_window.per_integration + r.restart_window_workload.per_integration)
                    / share.max(f64::MIN_POSITIVE)
            }),
        );
        figures.insert("delete_calls", figure(&|r| r.delete.per_integration));
        figures.insert("delete_mutating", figure(&|r| r.delete.mutating));
        figures.insert("delete_reads", figure(&|r| r.delete.reads));
        figures.insert(
            "validation_calls",
            figure(&|r| r.validation_calls_per_integration),
        );
        figures.insert("peak_rss_mib", figure(&|r| r.peak_rss_mib));
        figures.insert("peak_rss_create_mib", figure(&|r| r.peak_rss_by_phase.create));
        figures.insert("peak_rss_resync_mib", figure(&|r| r.peak_rss_by_phase.resync));
        figures.insert("peak_rss_window_mib", figure(&|r| r.peak_rss_by_phase.window));
        figures.insert("peak_rss_delete_mib", figure(&|r| r.peak_rss_by_phase.delete));
        figures.insert("operator_cpu_seconds", figure(&|r| r.operator_cpu_seconds));
        figures.insert("idle_cpu_cores", figure(&|r| r.idle_cpu_cores));
        figures.insert("emulator_cpu_seconds", figure(&|r| r.emulator_cpu_seconds));
        figures.insert("apiserver_cpu_seconds", figure(&|r| r.apiserver_cpu_seconds));
        figures.insert("aws_requests", figure(&|r| r.aws_requests));
        figures.insert(
            "aws_ms_per_request",
            figure(&|r| 1000.0 * r.aws_request_seconds / r.aws_requests.max(1.0)),
        );
        figures.insert("aws_request_seconds", figure(&|r| r.aws_request_seconds));
        figures.insert("rate_limit_wait_seconds", figure(&|r| r.rate_limit_wait_seconds));
        figures.insert(
            "kubernetes_requests",
            figure(&|r| r.kubernetes_requests.values().sum()),
        );
        figures.insert(
            "kubernetes_requests_per_integration",
            figure(&|r| r.kubernetes_requests.values().sum::<f64>() / r.n as f64),
        );
        let by_operation = |f: &dyn Fn(&Run) -> &BTreeMap<String, f64>| {
            let mut ops: BTreeMap<String, Vec<f64>> = BTreeMap::new();
            for run in &runs {
                for (op, v) in f(run) {
                    ops.entry(op.clone()).or_default().push(*v);
                }
            }
            ops.into_iter()
                .map(|(op, v)| (op, Spread::of(v).median))
                .collect()
        };
        Self {
            n,
            runs: runs.len(),
            figures,
            create_by_operation: by_operation(&|r| &r.create.by_operation),
            resync_by_operation: by_operation(&|r| &r.resync.by_operation),
            resync_workload_by_operation: by_operation(&|r| &r.resync_workload.by_operation),
            window_by_operation: by_operation(&|r| &r.window.by_operation),
            window_workload_by_operation: by_operation(&|r| &r.window_workload.by_operation),
            steady_by_operation: by_operation(&|r| &r.steady.by_operation),
            delete_by_operation: by_operation(&|r| &r.delete.by_operation),
        }
    }
}

#[derive(Serialize)]
struct Report {
    machine: Machine,
    settings: serde_json::Value,
    summaries: Vec<Summary>,
    runs: Vec<Run>,
}

fn markdown(report: &Report, json: &std::path::Path) -> String {
    use std::fmt::Write;
    let m = &report.machine;
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "Generated by `make bench` or `make bench-scale` (benches/operator.rs); the raw figures are in {}.\n\
         How to read them, and what was changed to meet the targets: docs/benchmarks.md.\n",
        json.display()
    );
    let _ = writeln!(
        out,
        "Machine: {} cores ({}), {} GiB, Linux {}. Operator settings: {}.\n",
        m.cores, m.cpu, m.memory_gib, m.kernel, report.settings
    );
    let _ = writeln!(
        out,
        "Each figure: median over the runs, with the spread (min – max) in brackets.\n"
    );
    let header: Vec<String> = report
        .summaries
        .iter()
        .map(|s| format!("N = {} ({} runs)", s.n, s.runs))
        .collect();
    let _ = writeln!(out, "| figure | {} |", header.join(" | "));
    let _ = writeln!(out, "|---|{}", "---|".repeat(header.len()));
    let rows: &[(&str, &str, usize)] = &[
        ("batch_seconds", "whole batch, first create to last Ready (s)", 1),
        ("ready_p50_seconds", "create to Ready, p50 (s)", 2),
        ("ready_p95_seconds", "create to Ready, p95 (s)", 2),
        ("ready_max_seconds", "create to Ready, max (s)", 2),
        ("delete_seconds", "delete all, to gone (s)", 1),
        (
            "create_calls",
            "AWS calls to create one, operator's identity (excl. validation probe, cached lookups)",
            2,
        ),
        ("create_mutating", "… of which mutating", 2),
        ("create_reads", "… of which reads", 2),
        (
            "validation_calls",
            "validation probe calls per integration (as the workload)",
            2,
        ),
        (
            "resync_calls",
            "AWS calls per no-op resync of one, operator's identity",
            2,
        ),
        ("resync_mutating", "… of which mutating", 2),
        ("resync_reads", "… of which reads", 2),
        (
            "resync_workload_calls",
            "AWS calls per no-op resync of one, as the workload (validation probe)",
            2,
        ),
        (
            "resync_workload_writes",
            "… of which writes (probe puts, deletes and multipart upload)",
            2,
        ),
        (
            "resync_both_calls",
            "AWS calls per no-op resync of one, both identities",
            2,
        ),
        (
            "window_seconds",
            "restart with the spread: its resync window W, standing for the hour (s)",
            0,
        ),
        ("window_reconciles", "… checks per integration in W", 2),
        (
            "window_calls",
            "… AWS calls per integration in W, operator's identity (fewer full bucket reads than the steady sixth: docs/benchmarks.md)",
            3,
        ),
        ("window_reads", "… of which reads", 3),
        (
            "window_workload_calls",
            "… AWS calls per integration in W, as the workload",
            2,
        ),
        ("window_writes", "… writes in W, either identity", 2),
        (
            "steady_reconciles",
            "the same process's next window W (the steady state): checks per integration",
            2,
        ),
        (
            "steady_calls",
            "… AWS calls per integration, operator's identity (the average no-op resync)",
            3,
        ),
        ("steady_reads", "… of which reads", 3),
        (
            "steady_workload_calls",
            "… AWS calls per integration, as the workload",
            2,
        ),
        ("steady_writes", "… writes, either identity", 2),
        (
            "restart_window_calls",
            "… AWS calls per integration in W's first sixth (the restart's first 10 minutes), both identities",
            3,
        ),
        (
            "restart_window_share",
            "… the steady window's calls spread over the same sixth",
            3,
        ),
        ("restart_window_ratio", "… first sixth / share", 2),
        ("delete_calls", "AWS calls to delete one, operator's identity", 2),
        ("delete_mutating", "… of which mutating", 2),
        ("delete_reads", "… of which reads", 2),
        ("peak_rss_mib", "operator peak RSS (MiB)", 1),
        (
            "peak_rss_create_mib",
            "… the process that created them (and idled 10 s)",
            1,
        ),
        ("peak_rss_resync_mib", "… the restart without the spread", 1),
        (
            "peak_rss_window_mib",
            "… the restart with the spread, both windows",
            1,
        ),
        ("peak_rss_delete_mib", "… the process that deleted them", 1),
        ("operator_cpu_seconds", "operator CPU, whole run (s)", 2),
        ("idle_cpu_cores", "operator idle CPU after convergence (cores)", 4),
        ("kubernetes_requests", "API server requests by the operator", 0),
        ("kubernetes_requests_per_integration", "… per integration", 2),
        ("aws_requests", "HTTP requests to the AWS emulator", 0),
        ("aws_ms_per_request", "emulator time per request (ms)", 2),
        (
            "aws_request_seconds",
            "emulator time, summed over requests (s)",
            1,
        ),
        ("emulator_cpu_seconds", "emulator (moto) CPU (s)", 1),
        ("apiserver_cpu_seconds", "kube-apiserver + etcd CPU (s)", 1),
        ("rate_limit_wait_seconds", "IAM rate-limit wait, summed (s)", 1),
    ];
    for &(key, label, digits) in rows {
        let cells: Vec<String> = report
            .summaries
            .iter()
            .map(|s| {
                let f = s.figures[key];
                format!("{:.d$} ({:.d$} – {:.d$})", f.median, f.min, f.max, d = digits)
            })
            .collect();
        let _ = writeln!(out, "| {label} | {} |", cells.join(" | "));
    }
    let _ = writeln!(
        out,
        "\n## Targets (issue 18; they are set for N = 10,000)\n\n\
         Medians; \"met\" when every run meets it.\n"
    );
    let _ = writeln!(out, "| target | {} |", header.join(" | "));
    let _ = writeln!(out, "|---|{}", "---|".repeat(header.len()));
    let targets: [(&str, &str, f64, usize); 4] = [
        (
            "steady_calls",
            "a no-op resync over the steady window, operator's identity, both services: ≤ 2 AWS calls per integration on average",
            2.0,
            3,
        ),
        (
            "steady_writes",
            "writes in the steady window, either identity: 0",
            0.0,
            2,
        ),
        (
            "restart_window_ratio",
            "a restart's first sixth of the window: ≤ one window's share of calls (ratio ≤ 1)",
            1.0,
            2,
        ),
        ("peak_rss_mib", "operator peak RSS: ≤ 64 MiB", 64.0, 1),
    ];
    for (key, label, limit, digits) in targets {
        let cells: Vec<String> = report
            .summaries
            .iter()
            .map(|s| {
                let f = s.figures[key];
                let verdict = if f.max <= limit { "met" } else { "not met" };
                format!("{:.d$} ({verdict})", f.median, d = digits)
            })
            .collect();
        let _ = writeln!(out, "| {label} | {} |", cells.join(" | "));
    }
    for (title, pick) in [
        (
            "Create",
            (|s: &Summary| &s.create_by_operation) as fn(&Summary) -> &BTreeMap<String, f64>,
        ),
        ("No-op resync", |s: &Summary| &s.resync_by_operation),
        (
            "No-op resync, as the workload (validation probe)",
            |s: &Summary| &s.resync_workload_by_operation,
        ),
        (
            "The restart's window W (each integration checked once)",
            |s: &Summary| &s.window_by_operation,
        ),
        ("The restart's window W, as the workload", |s: &Summary| {
            &s.window_workload_by_operation
        }),
        ("The steady window (the average no-op resync)", |s: &Summary| {
            &s.steady_by_operation
        }),
        ("Delete", |s: &Summary| &s.delete_by_operation),
    ] {
        let _ = writeln!(
            out,
            "\n## {title}: AWS calls per integration, by operation (median)\n"
        );
        let mut ops: Vec<&String> = report.summaries.iter().flat_map(|s| pick(s).keys()).collect();
        ops.sort();
        ops.dedup();
        let _ = writeln!(out, "| operation | {} |", header.join(" | "));
        let _ = writeln!(out, "|---|{}", "---|".repeat(header.len()));
        for op in ops {
            let cells: Vec<String> = report
                .summaries
                .iter()
                .map(|s| format!("{:.3}", pick(s).get(op).copied().unwrap_or(0.0)))
                .collect();
            let _ = writeln!(out, "| {op} | {} |", cells.join(" | "));
        }
    }
    out
}
