//! Crashes: `kill -9` at every AWS call boundary of a create and of a delete, for two kinds of
//! integration, restarting each time. Every integration converges, deletion completes, and a
//! listing of everything by our uid tag finds exactly one bucket, role and policy while it
//! exists and nothing once it is gone.
//!
//! The operator stops itself right after its n-th AWS call returned
//! (`BUCKETWIRE_STOP_AFTER_AWS_CALLS`, src/failpoint.rs); the test then kills it with SIGKILL.
//! How many boundaries there are is measured first, on a clean run of the same integration.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, DeleteParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use bucketwire::api::BucketIntegration;
use common::integration::{create, wait_ready};
use common::operator::Operator;
use common::{TestBed, aws, namespace, setup, wait_for};

/// No leader election: a killed leader's Lease would make each restart wait for it to expire.
const ARGS: &[&str] = &[
    "--leader-elect",
    "false",
    "--resync-interval",
    "1h",
    "--allowed-trusted-accounts",
    "999988887777",
];

fn specs() -> Vec<(&'static str, Value)> {
    vec![
        (
            "irsa",
            json!({"region": "us-east-2", "bucket": {"deletionPolicy": "Delete"}}),
        ),
        (
            "cross-account",
            json!({"region": "us-east-2", "bucket": {"deletionPolicy": "Delete"},
                   "identity": {"mode": "CrossAccount", "crossAccount": {"trustedAccountId": "999988887777"}}}),
        ),
    ]
}

/// AWS calls (operator and workload) made so far by an operator.
async fn calls(operator: &Operator) -> u64 {
    operator.total_aws_calls().await + operator.workload_calls().await.values().sum::<u64>()
}

async fn wait_gone(client: &Client, ns: &str, name: &str) {
    let api: Api<BucketIntegration> = Api::namespaced(client.clone(), ns);
    wait_for(
        &format!("{ns}/{name} to be deleted"),
        Duration::from_secs(60),
        || async { api.get_opt(name).await.ok()?.is_none().then_some(()) },
    )
    .await;
}

/// Counts of (buckets, roles, policies) tagged with `uid`, and the policy version counts.
async fn owned(bed: &TestBed, ns: &str, uid: &str) -> (usize, usize, usize) {
    let found = aws::inventory(bed, "us-east-2", ns, &BTreeSet::from([uid.to_string()])).await;
    let count = |m: &std::collections::BTreeMap<String, Vec<String>>| m.get(uid).map_or(0, Vec::len);
    assert!(
        found.policy_versions.values().all(|&v| v == 1),
        "one policy version: {found:?}"
    );
    (count(&found.buckets), count(&found.roles), count(&found.policies))
}

/// Measures (create boundaries, delete boundaries) of a clean run.
async fn boundaries(bed: &TestBed, client: &Client, spec: &Value) -> (u64, u64) {
    let ns = namespace(client, "crash-measure").await;
    let mut operator = Operator::start(bed, &ns, ARGS);
    create(client, &ns, "m", spec.clone()).await;
    wait_ready(client, &ns, "m", &operator).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let create_calls = calls(&operator).await;
    operator.terminate();
    assert!(operator.wait_for_exit(Duration::from_secs(30)));
    let api: Api<BucketIntegration> = Api::namespaced(client.clone(), &ns);
    api.delete("m", &DeleteParams::default()).await.expect("delete");
    let operator = Operator::start(bed, &ns, ARGS);
    wait_gone(client, &ns, "m").await;
    (create_calls, calls(&operator).await)
}

/// Starts an operator that stops after AWS call `n`, kills it there, and restarts it clean.
/// Returns whether the boundary was reached (false: this run made fewer calls).
async fn kill_at(operator: &mut Operator, bed: &TestBed, n: u64, done: impl AsyncFn() -> bool) -> bool {
    let line = format!("stopped after AWS call {n} ");
    let reached = loop {
        if operator.log().contains(&line) {
            break true;
        }
        if done().await {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    operator.kill();
    operator.restart_clean(bed);
    reached
}

async fn create_case(bed: &TestBed, client: &Client, kind: &str, spec: &Value, n: u64) -> bool {
    let ns = namespace(client, &format!("crash-c{n}")).await;
    let stop = n.to_string();
    let mut operator = Operator::start_with_env(
        bed,
        &ns,
        ARGS,
        &[("BUCKETWIRE_STOP_AFTER_AWS_CALLS", stop.as_str())],
    );
    let bi = create(client, &ns, "c", spec.clone()).await;
    let api: Api<BucketIntegration> = Api::namespaced(client.clone(), &ns);
    let ready = async || {
        api.get("c").await.ok().is_some_and(|bi| {
            bi.status.is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
        })
    };
    let killed = kill_at(&mut operator, bed, n, ready).await;
    wait_ready(client, &ns, "c", &operator).await;
    let uid = bi.uid().expect("uid");
    assert_eq!(
        owned(bed, &ns, &uid).await,
        (1, 1, 1),
        "{kind}: killed after create call {n}"
    );
    api.delete("c", &DeleteParams::default()).await.expect("delete");
    wait_gone(client, &ns, "c").await;
    assert_eq!(
        owned(bed, &ns, &uid).await,
        (0, 0, 0),
        "{kind}: leftovers, killed after create call {n}"
    );
    killed
}

async fn delete_case(bed: &TestBed, client: &Client, kind: &str, spec: &Value, n: u64) -> bool {
    let ns = namespace(client, &format!("crash-d{n}")).await;
    let mut operator = Operator::start(bed, &ns, ARGS);
    let bi = create(client, &ns, "d", spec.clone()).await;
    wait_ready(client, &ns, "d", &operator).await;
    let uid = bi.uid().expect("uid");
    assert_eq!(owned(bed, &ns, &uid).await, (1, 1, 1));
    operator.terminate();
    assert!(operator.wait_for_exit(Duration::from_secs(30)));
    let api: Api<BucketIntegration> = Api::namespaced(client.clone(), &ns);
    api.delete("d", &DeleteParams::default()).await.expect("delete");
    let stop = n.to_string();
    let mut operator = Operator::start_with_env(
        bed,
        &ns,
        ARGS,
        &[("BUCKETWIRE_STOP_AFTER_AWS_CALLS", stop.as_str())],
    );
    let gone = async || api.get_opt("d").await.ok().is_some_and(|o| o.is_none());
    let killed = kill_at(&mut operator, bed, n, gone).await;
    wait_gone(client, &ns, "d").await;
    assert_eq!(
        owned(bed, &ns, &uid).await,
        (0, 0, 0),
        "{kind}: leftovers, killed after delete call {n}"
    );
    killed
}

#[tokio::test]
async fn kill_9_at_every_aws_call_boundary_of_create_and_delete_leaks_and_duplicates_nothing() {
    let (bed, client, _) = setup("crashes").await;
    let bed = Arc::new(bed);
    let kills = Arc::new(AtomicUsize::new(0));
    let mut cases = vec![];
    for (kind, spec) in specs() {
        let (create_calls, delete_calls) = boundaries(&bed, &client, &spec).await;
        assert!(
            create_calls >= 10 && delete_calls >= 5,
            "{kind}: {create_calls} / {delete_calls}"
        );
        for n in 1..=create_calls {
            cases.push((kind, spec.clone(), true, n));
        }
        for n in 1..=delete_calls {
            cases.push((kind, spec.clone(), false, n));
        }
    }
    let total = cases.len();
    // Four cases at a time, each in its own namespace with its own operator.
    futures::stream::iter(cases)
        .for_each_concurrent(4, |(kind, spec, creating, n)| {
            let (bed, client, kills) = (bed.clone(), client.clone(), kills.clone());
            async move {
                let killed = if creating {
                    create_case(&bed, &client, kind, &spec, n).await
                } else {
                    delete_case(&bed, &client, kind, &spec, n).await
                };
                if killed {
                    kills.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .await;
    let kills = kills.load(Ordering::Relaxed);
    eprintln!("kill -9 at {kills} of {total} AWS call boundaries");
    assert!(kills >= 50, "only {kills} kills (of {total} boundaries)");
    assert!(
        kills * 10 >= total * 9,
        "most boundaries were reached: {kills} of {total}"
    );
}
