//! Crashes: `kill -9` at every AWS call boundary of a create and of a delete, for two kinds of
//! integration, restarting each time. Every integration converges, deletion completes, and a
//! listing of every bucket, role and policy whose name carries the case's namespace (tagged or
//! not, so an untagged leftover bucket counts) finds exactly one of each, tagged with the
//! integration's uid, while it exists, and nothing once it is gone.
//!
//! The operator stops itself right after its n-th AWS call returned
//! (`BUCKETWIRE_STOP_AFTER_AWS_CALLS`, src/failpoint.rs); the test then kills it with SIGKILL.
//! How many boundaries there are is measured first, on a clean run of the same integration, and
//! every one of them must be reached: a case whose run ends before its n-th call fails the test.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, DeleteParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use bucketwire::api::BucketIntegration;
use common::integration::{create, wait_ready};
use common::operator::{Operator, unchanged_for};
use common::{TestBed, aws, namespace, results, setup, wait_for};

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

/// Every bucket, role and policy (ARN) whose name contains `part`, tagged or not.
async fn named(bed: &TestBed, part: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let s3 = aws::s3(bed, "us-east-2").await;
    let buckets = s3
        .list_buckets()
        .send()
        .await
        .expect("buckets")
        .buckets()
        .iter()
        .filter_map(|b| b.name())
        .filter(|n| n.contains(part))
        .map(str::to_string)
        .collect();
    let iam = aws::iam(bed, "us-east-2").await;
    let roles: Vec<_> = iam.list_roles().into_paginator().items().send().collect().await;
    let roles = roles
        .into_iter()
        .map(|r| r.expect("roles").role_name().to_string())
        .filter(|n| n.contains(part))
        .collect();
    let policies: Vec<_> = iam
        .list_policies()
        .scope(aws_sdk_iam::types::PolicyScopeType::Local)
        .into_paginator()
        .items()
        .send()
        .collect()
        .await;
    let policies = policies
        .into_iter()
        .filter_map(|p| p.expect("policies").arn().map(str::to_string))
        .filter(|a| a.contains(part))
        .collect();
    (buckets, roles, policies)
}

/// Counts of (buckets, roles, policies) of the integration `uid` in namespace `ns`: everything
/// whose name carries the namespace (each case has its own), which must all carry the uid tag,
/// and each policy must have one version.
async fn owned(bed: &TestBed, ns: &str, uid: &str) -> (usize, usize, usize) {
    let found = aws::inventory(bed, "us-east-2", ns, &BTreeSet::from([uid.to_string()])).await;
    let tagged = |m: &std::collections::BTreeMap<String, Vec<String>>| {
        let mut names = m.get(uid).cloned().unwrap_or_default();
        names.sort();
        names
    };
    assert!(
        found.policy_versions.values().all(|&v| v == 1),
        "one policy version: {found:?}"
    );
    let (mut buckets, mut roles, mut policies) = named(bed, ns).await;
    buckets.sort();
    roles.sort();
    policies.sort();
    assert_eq!(
        (&buckets, &roles, &policies),
        (
            &tagged(&found.buckets),
            &tagged(&found.roles),
            &tagged(&found.policies)
        ),
        "everything named for {ns} is tagged with the integration's uid (untagged or foreign-tagged leftovers fail)"
    );
    (buckets.len(), roles.len(), policies.len())
}

/// Measures (create boundaries, delete boundaries) of a clean run.
async fn boundaries(bed: &TestBed, client: &Client, spec: &Value) -> (u64, u64) {
    let ns = namespace(client, "crash-measure").await;
    let mut operator = Operator::start(bed, &ns, ARGS);
    create(client, &ns, "m", spec.clone()).await;
    wait_ready(client, &ns, "m", &operator).await;
    // Ready is written last: the create is done. Nothing happens after it (a call now would be
    // a boundary the cases below would miss).
    let create_calls = unchanged_for(
        "the AWS calls of a Ready integration",
        Duration::from_secs(2),
        || calls(&operator),
    )
    .await;
    operator.terminate();
    assert!(operator.wait_for_exit(Duration::from_secs(30)));
    let api: Api<BucketIntegration> = Api::namespaced(client.clone(), &ns);
    api.delete("m", &DeleteParams::default()).await.expect("delete");
    let operator = Operator::start(bed, &ns, ARGS);
    wait_gone(client, &ns, "m").await;
    (create_calls, calls(&operator).await)
}

/// Waits until the operator stopped after AWS call `n` (or the run is `done` without reaching
/// it), kills it there, and restarts it clean. Returns whether the boundary was reached.
async fn kill_at(operator: &mut Operator, bed: &TestBed, n: u64, done: impl AsyncFn() -> bool) -> bool {
    let line = format!("stopped after AWS call {n} ");
    let (op, done) = (&*operator, &done);
    let reached = wait_for(
        &format!("AWS call {n}, or the end of the run"),
        Duration::from_secs(60),
        move || {
            let line = line.clone();
            async move {
                if op.log().contains(&line) {
                    Some(true)
                } else if done().await {
                    Some(false)
                } else {
                    None
                }
            }
        },
    )
    .await;
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
    let started = Instant::now();
    let (bed, client, _) = setup("crashes").await;
    let bed = Arc::new(bed);
    let mut cases = vec![];
    let mut measured = serde_json::Map::new();
    for (kind, spec) in specs() {
        let (create_calls, delete_calls) = boundaries(&bed, &client, &spec).await;
        assert!(
            create_calls >= 10 && delete_calls >= 5,
            "{kind}: {create_calls} / {delete_calls}"
        );
        measured.insert(
            kind.into(),
            json!({"create": create_calls, "delete": delete_calls}),
        );
        for n in 1..=create_calls {
            cases.push((kind, spec.clone(), true, n));
        }
        for n in 1..=delete_calls {
            cases.push((kind, spec.clone(), false, n));
        }
    }
    let total = cases.len();
    let missed = Arc::new(std::sync::Mutex::new(vec![]));
    let kills = Arc::new(AtomicUsize::new(0));
    // Four cases at a time, each in its own namespace with its own operator.
    futures::stream::iter(cases)
        .for_each_concurrent(4, |(kind, spec, creating, n)| {
            let (bed, client, kills, missed) = (bed.clone(), client.clone(), kills.clone(), missed.clone());
            async move {
                let killed = if creating {
                    create_case(&bed, &client, kind, &spec, n).await
                } else {
                    delete_case(&bed, &client, kind, &spec, n).await
                };
                if killed {
                    kills.fetch_add(1, Ordering::Relaxed);
                } else {
                    let phase = if creating { "create" } else { "delete" };
                    missed
                        .lock()
                        .expect("lock")
                        .push(format!("{kind} {phase} call {n}"));
                }
            }
        })
        .await;
    let kills = kills.load(Ordering::Relaxed);
    let missed = missed.lock().expect("lock").clone();
    eprintln!("kill -9 at {kills} of {total} AWS call boundaries");
    assert!(
        missed.is_empty() && kills == total,
        "every boundary is reached: {kills} of {total}; runs that ended before their call: {missed:?}"
    );
    results::record(
        "crashes",
        &json!({
            "test": "tests/crashes.rs::kill_9_at_every_aws_call_boundary_of_create_and_delete_leaks_and_duplicates_nothing",
            "machine": results::machine(),
            "boundaries": measured,
            "cases": total,
            "kills": kills,
            "seconds": started.elapsed().as_secs_f64(),
        }),
    );
}

/// The leak check above can fail: an untagged bucket carrying a namespace in its name is
/// counted by it, while a listing by uid tag alone (what `aws::inventory` does) never sees it.
#[tokio::test]
async fn the_leak_check_counts_an_untagged_bucket() {
    let (bed, client, _) = setup("crash-untagged").await;
    let ns = namespace(&client, "crash-leak").await;
    let s3 = aws::s3(&bed, "us-east-2").await;
    let bucket = format!("bw-{ns}-leak");
    aws::create_bucket(&s3, &bucket, "us-east-2").await;
    let (buckets, roles, policies) = named(&bed, &ns).await;
    assert_eq!(
        (buckets, roles.len(), policies.len()),
        (vec![bucket.clone()], 0, 0)
    );
    let by_tag = aws::inventory(&bed, "us-east-2", &ns, &BTreeSet::from(["any-uid".to_string()])).await;
    assert!(by_tag.buckets.is_empty(), "{by_tag:?}");
    let caught = tokio::spawn({
        let bed = TestBed::load();
        let ns = ns.clone();
        async move { owned(&bed, &ns, "any-uid").await }
    })
    .await;
    let message = caught
        .expect_err("the leak check fails on an untagged bucket")
        .into_panic()
        .downcast::<String>()
        .map(|m| *m)
        .unwrap_or_default();
    assert!(
        message.contains("is tagged with the integration's uid") && message.contains(&bucket),
        "{message}"
    );
    s3.delete_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("cleaned up");
}
