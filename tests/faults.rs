//! Faults: a reverse proxy in front of the AWS emulator (tests/faultproxy/faultproxy.py) fails
//! a fifth of all AWS requests the ways AWS does (IAM Throttling, S3 503 SlowDown, 500s,
//! connection resets before and after the request ran) and answers another 5% slowly. A hundred
//! integrations still all become Ready and are all deleted; listing everything by our tags finds
//! exactly one bucket, role and policy (of one version) per integration, and nothing after
//! deletion.
//!
//! Failures and slow answers are counted apart, by the proxy, and the failure share is asserted.
//! Backoff is measured, not read back from the delay the operator scheduled: for every failed
//! reconcile (the operator's JSON log, `reconcile error`, with its time and the integration's
//! count of consecutive failures), the next AWS request naming that integration (the proxy's
//! request log, with its time) must come at least one backoff step (less the 20% jitter) later.
//! One extra integration has its first nine requests failed on purpose (three reconciles' worth
//! of the SDK's three attempts), so that the doubling is measured on every run.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::{Value, json};

use bucketwire::api::BucketIntegration;
use bucketwire::controller::transient_retry_delay;
use common::integration::create;
use common::operator::{AwsProxy, Operator};
use common::{aws, results, setup, wait_for};

const N: usize = 100;
/// Share of AWS requests the proxy fails, and the tolerance the test allows around it. The
/// proxy's draws are seeded and taken in arrival order, so the share over the first n requests
/// depends on n only; the test has the proxy compute how far it strays for any n from
/// MIN_REQUESTS to 50000 (`--worst-shares`), and checks that it stays within the tolerance.
const FAILURE_RATE: f64 = 0.20;
const TOLERANCE: f64 = 0.025;
const MIN_REQUESTS: u64 = 1500;
/// Share answered slowly (and successfully), and how slowly.
const SLOW_RATE: f64 = 0.05;
const SLOW_SECONDS: f64 = 1.5;
/// Requests of the integration `retry` failed on purpose: three reconciles, three SDK attempts each.
const FORCED: u32 = 9;
/// How much earlier than the bound a measured retry may look, for the two clocks read (the
/// operator's log and the proxy's, both the machine's wall clock).
const CLOCK_SLACK: f64 = 0.01;
const FAILURE_KINDS: [&str; 5] = ["throttle", "slowdown", "internal", "reset-before", "reset-after"];

/// The proxy's counts as figures: requests, failed and slow, with their shares.
fn shares(counts: &Value) -> Value {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let requests = n(&counts["requests"]) - n(&counts["unattributed"]) - n(&counts["forced"]);
    let failed = n(&counts["failed"]);
    let slow = n(&counts["slow"]);
    assert_eq!(
        failed + slow + n(&counts["passed"]),
        requests,
        "every request failed, was slow or passed: {counts}"
    );
    json!({
        "requests": requests,
        "failed": failed,
        "failed_share": failed as f64 / requests.max(1) as f64,
        "slow": slow,
        "slow_share": slow as f64 / requests.max(1) as f64,
        "failed_by_kind": counts["by_kind"],
        "by_service": counts["by_service"],
        "forced": n(&counts["forced"]),
        "unattributed": n(&counts["unattributed"]),
    })
}

fn assert_shares(phase: &str, figures: &Value) {
    let requests = figures["requests"].as_u64().unwrap_or(0);
    let failed = figures["failed_share"].as_f64().unwrap_or(0.0);
    let slow = figures["slow_share"].as_f64().unwrap_or(0.0);
    assert!(
        requests >= MIN_REQUESTS,
        "{phase}: only {requests} requests: {figures}"
    );
    assert!(
        (failed - FAILURE_RATE).abs() <= TOLERANCE,
        "{phase}: {failed:.3} of requests failed, not {FAILURE_RATE} ± {TOLERANCE}: {figures}"
    );
    assert!(
        (slow - SLOW_RATE).abs() <= TOLERANCE,
        "{phase}: {slow:.3} of requests were slow, not {SLOW_RATE} ± {TOLERANCE}: {figures}"
    );
    assert_eq!(figures["unattributed"], 0, "{phase}: {figures}");
    for kind in FAILURE_KINDS {
        assert!(
            figures["failed_by_kind"][kind].as_u64().unwrap_or(0) > 0,
            "{phase}: no {kind}: {figures}"
        );
    }
    for service in ["iam", "s3", "sts"] {
        assert!(
            figures["by_service"][service]["failed"].as_u64().unwrap_or(0) > 0,
            "{phase}: no {service} failure: {figures}"
        );
    }
}

/// A failed reconcile, from the operator's JSON log.
struct Failure {
    at: f64,
    name: String,
    failures: u32,
    terminal: bool,
}

fn failed_reconciles(log: &str, ns: &str) -> Vec<Failure> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|e| e["fields"]["message"] == "reconcile error")
        .filter(|e| e["fields"]["namespace"].as_str().is_some_and(|n| n.contains(ns)))
        .map(|e| {
            let at: jiff::Timestamp = e["timestamp"]
                .as_str()
                .and_then(|t| t.parse().ok())
                .unwrap_or_else(|| panic!("a log timestamp: {e}"));
            Failure {
                at: at.as_duration().as_secs_f64(),
                name: e["fields"]["name"].as_str().expect("name").to_string(),
                failures: e["fields"]["failures"]
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .expect("failures"),
                terminal: e["fields"]["terminal"].as_bool().expect("terminal"),
            }
        })
        .collect()
}

/// How far the failed and slow shares of the proxy's seeded stream stray from their rates, over
/// any number of requests from MIN_REQUESTS to 50000.
fn worst_shares() -> Value {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new(format!("{root}/target/testbed/venv/bin/python"))
        .arg(format!("{root}/tests/faultproxy/faultproxy.py"))
        .args(["--target", "unused", "--rate", &FAILURE_RATE.to_string()])
        .args(["--slow-rate", &SLOW_RATE.to_string()])
        .args(["--worst-shares", &MIN_REQUESTS.to_string(), "50000"])
        .output()
        .expect("the proxy runs");
    serde_json::from_slice(&out.stdout).expect("worst shares")
}

#[tokio::test]
async fn with_a_fifth_of_aws_requests_failing_a_hundred_integrations_converge_and_delete_cleanly() {
    let started = Instant::now();
    let stream = worst_shares();
    assert!(
        stream["failed"].as_f64().is_some_and(|w| w <= TOLERANCE)
            && stream["slow"].as_f64().is_some_and(|w| w <= TOLERANCE),
        "the seeded stream itself strays further than the tolerance: {stream}"
    );
    let (bed, client, ns) = setup("faults").await;
    let proxy = AwsProxy::start(
        bed.var("BUCKETWIRE_AWS_ENDPOINT_URL"),
        &ns,
        &[
            "--rate",
            &FAILURE_RATE.to_string(),
            "--slow-rate",
            &SLOW_RATE.to_string(),
            "--slow",
            &SLOW_SECONDS.to_string(),
        ],
    );
    let operator = Operator::start_with_env(
        &bed,
        &ns,
        &[
            "--resync-interval",
            "1h",
            "--max-concurrent-reconciles",
            "8",
            "--iam-requests-per-second",
            "50",
            "--log-format",
            "json",
        ],
        &[("BUCKETWIRE_AWS_ENDPOINT_URL", proxy.url.as_str())],
    );
    let api: Api<BucketIntegration> = Api::namespaced(client.clone(), &ns);
    proxy.force(&format!("{ns}-retry-"), FORCED).await;
    let mut names: Vec<String> = vec!["retry".into()];
    names.extend((0..N).map(|i| format!("f{i:03}")));
    futures::stream::iter(&names)
        .for_each_concurrent(10, |name| {
            let (client, ns) = (client.clone(), ns.clone());
            async move {
                create(
                    &client,
                    &ns,
                    name,
                    json!({"region": "us-east-2", "bucket": {"deletionPolicy": "Delete"}}),
                )
                .await;
            }
        })
        .await;
    let ready_count = || async {
        api.list(&ListParams::default())
            .await
            .map(|l| {
                l.items
                    .iter()
                    .filter(|bi| {
                        bi.status.as_ref().is_some_and(|s| {
                            s.conditions
                                .iter()
                                .any(|c| c.type_ == "Ready" && c.status == "True")
                        })
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let ready = ready_count().await;
        if ready == names.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{ready} of {} Ready after 10 minutes; faults: {}",
            names.len(),
            proxy.counts().await
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let all_ready = started.elapsed();
    let uids: BTreeSet<String> = api
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .iter()
        .filter_map(|bi| bi.uid())
        .collect();

    // The faults really happened, at the stated rate, of every kind, on every service; slow
    // answers (which succeed) are counted apart from failures.
    let creation = shares(&proxy.counts().await);
    eprintln!("faults while creating: {creation}");
    assert_shares("creating", &creation);
    assert_eq!(creation["forced"], FORCED, "{creation}");

    // No duplicates.
    let found = aws::inventory(&bed, "us-east-2", &ns, &uids).await;
    let one_each = |m: &BTreeMap<String, Vec<String>>| uids.iter().all(|u| m.get(u).map_or(0, Vec::len) == 1);
    assert!(
        one_each(&found.buckets) && one_each(&found.roles) && one_each(&found.policies),
        "{found:?}"
    );
    assert!(found.policy_versions.values().all(|&v| v == 1), "{found:?}");

    // Deletion, through the same faults.
    api.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .expect("delete");
    wait_for(
        "every integration to be deleted",
        Duration::from_secs(600),
        || async {
            api.list_metadata(&ListParams::default())
                .await
                .ok()?
                .items
                .is_empty()
                .then_some(())
        },
    )
    .await;
    let left = aws::inventory(&bed, "us-east-2", &ns, &uids).await;
    assert!(
        left.buckets.is_empty() && left.roles.is_empty() && left.policies.is_empty(),
        "leftovers: {left:?}"
    );
    let whole = shares(&proxy.counts().await);
    eprintln!("faults over the whole run: {whole}");
    assert_shares("creating and deleting", &whole);

    // Backoff, measured: after each failed reconcile, the integration's next AWS request came
    // no sooner than the backoff step for its count of consecutive failures, less the jitter.
    // Nothing else can set off an earlier reconcile here: the triggers that legitimately do
    // (a spec change, an annotation, a finalizer change, someone else's edit or deletion of the
    // values ConfigMap) do not happen in this test once an integration's first reconcile ran.
    let failures = failed_reconciles(&operator.log(), &ns);
    let requests = proxy.requests();
    let mut intervals = vec![];
    for f in &failures {
        let part = format!("{ns}-{}-", f.name);
        let Some(next) = requests
            .iter()
            .filter(|r| r.t > f.at && r.names_any(&part))
            .map(|r| r.t)
            .min_by(f64::total_cmp)
        else {
            continue; // deleted after this failure's retry needed no AWS call
        };
        let bound = if f.terminal {
            Duration::from_secs(300)
        } else {
            transient_retry_delay(f.failures, 1.0)
        }
        .as_secs_f64();
        let measured = next - f.at;
        assert!(
            measured + CLOCK_SLACK >= bound,
            "{}: retry {:.3} s after failure {} (terminal: {}), sooner than the backoff ({bound:.2} s)",
            f.name,
            measured,
            f.failures,
            f.terminal
        );
        intervals.push(
            json!({"integration": f.name, "failures": f.failures, "terminal": f.terminal,
                              "bound_seconds": bound, "measured_seconds": measured}),
        );
    }
    assert!(
        failures.iter().all(|f| !f.terminal),
        "only transient failures here"
    );
    let retry: Vec<&Value> = intervals.iter().filter(|i| i["integration"] == "retry").collect();
    let doubling: Vec<u64> = retry.iter().filter_map(|i| i["failures"].as_u64()).collect();
    assert!(
        doubling.starts_with(&[1, 2, 3]),
        "the forced failures were three failed reconciles in a row, each retried: {retry:?}"
    );

    let metrics = operator.metrics().await;
    let reconciles: BTreeMap<String, u64> = metrics
        .lines()
        .filter(|l| l.starts_with("bucketwire_reconciles_total{"))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let result = series.split("result=\"").nth(1)?.split('"').next()?;
            Some((result.to_string(), value.parse().ok()?))
        })
        .collect();
    let total: u64 = reconciles.values().sum();
    assert!(
        total <= 6 * names.len() as u64,
        "{total} reconciles for {} integrations: {reconciles:?}",
        names.len()
    );
    // The shortest measured wait before the retry after the 1st, 2nd, ... consecutive failure.
    let mut by_failure_count = BTreeMap::<u64, Value>::new();
    for i in &intervals {
        let n = i["failures"].as_u64().unwrap_or(0);
        let measured = i["measured_seconds"].as_f64().unwrap_or(0.0);
        let entry = by_failure_count.entry(n).or_insert_with(
            || json!({"retries": 0, "bound_seconds": i["bound_seconds"], "shortest_seconds": measured}),
        );
        entry["retries"] = json!(entry["retries"].as_u64().unwrap_or(0) + 1);
        entry["shortest_seconds"] = json!(
            entry["shortest_seconds"]
                .as_f64()
                .unwrap_or(measured)
                .min(measured)
        );
    }
    let shortest = intervals
        .iter()
        .filter_map(|i| Some(i["measured_seconds"].as_f64()? / i["bound_seconds"].as_f64()?))
        .min_by(f64::total_cmp);
    results::record(
        "faults",
        &json!({
            "test": "tests/faults.rs::with_a_fifth_of_aws_requests_failing_a_hundred_integrations_converge_and_delete_cleanly",
            "machine": results::machine(),
            "integrations": names.len(),
            "max_concurrent_reconciles": 8,
            "proxy": {"failure_rate": FAILURE_RATE, "tolerance": TOLERANCE, "min_requests": MIN_REQUESTS,
                      "seeded_stream_worst_distance_1500_to_50000": stream,
                      "slow_rate": SLOW_RATE,
                      "slow_seconds": SLOW_SECONDS, "forced_failures": FORCED},
            "while_creating": creation,
            "whole_run": whole,
            "seconds_to_all_ready": all_ready.as_secs_f64(),
            "seconds_total": started.elapsed().as_secs_f64(),
            "reconciles": {"total": total, "failed": total - reconciles.get("success").copied().unwrap_or(0),
                           "by_result": reconciles},
            "backoff": {
                "failed_reconciles": failures.len(),
                "retries_measured": intervals.len(),
                "shortest_measured_over_bound": shortest,
                "by_consecutive_failures": by_failure_count,
                "forced_integration": retry,
                "intervals": intervals,
            },
            "inventory": {
                "after_create": {"buckets": found.buckets.values().map(Vec::len).sum::<usize>(),
                                 "roles": found.roles.values().map(Vec::len).sum::<usize>(),
                                 "policies": found.policies.values().map(Vec::len).sum::<usize>()},
                "after_delete": {"buckets": left.buckets.len(), "roles": left.roles.len(),
                                 "policies": left.policies.len()},
            },
        }),
    );
}
