//! Crashes on Alibaba Cloud, as tests/crashes.rs does them on AWS: `kill -9` at every cloud
//! call boundary (RAM, STS, ACK, OSS and OSS's S3-compatible API, operator's and workload's
//! calls alike) of a create and of a delete, for RRSA and for the cross-account flow,
//! restarting each time, against the test bed's FAKES (tests/testbed/alibaba/). Every
//! integration converges, deletion completes, and a listing of every OSS bucket, RAM role and
//! RAM policy whose name carries the case's namespace (tagged or not) finds exactly one of
//! each, tagged with the integration's uid, while it exists, and nothing once it is gone.
//!
//! The operator stops itself right after its n-th cloud call returned
//! (`BUCKETWIRE_STOP_AFTER_AWS_CALLS`, src/failpoint.rs; Alibaba's calls are counted there and
//! on /metrics as `bucketwire_alibaba_calls_total`); the test then kills it with SIGKILL. How
//! many boundaries there are is measured first, on a clean run, and every one must be reached.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, DeleteParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use bucketwire::api::BucketIntegration;
use bucketwire::documents::TAG_UID;
use bucketwire::provider::alibaba::services::Tagged;
use common::alibaba::{REGION, admin, calls, cloud, ram_names, start_operator, start_operator_with_env};
use common::integration::{create, wait_ready};
use common::operator::{Operator, unchanged_for};
use common::{TestBed, namespace, results, setup, wait_for};

/// No leader election: a killed leader's Lease would make each restart wait for it to expire.
const ARGS: &[&str] = &["--leader-elect", "false", "--resync-interval", "1h"];

fn specs(second: &str) -> Vec<(&'static str, Value)> {
    vec![
        (
            "rrsa",
            json!({"provider": "alibaba", "region": REGION, "identity": {"mode": "RRSA"},
                   "bucket": {"deletionPolicy": "Delete"}}),
        ),
        (
            "cross-account",
            json!({"provider": "alibaba", "region": REGION, "bucket": {"deletionPolicy": "Delete"},
                   "identity": {"mode": "CrossAccount", "crossAccount": {"trustedAccountId": second}}}),
        ),
    ]
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

/// Every OSS bucket of the main account whose name contains `part`, tagged or not.
async fn bucket_names(bed: &TestBed, part: &str) -> Vec<String> {
    let s3 = cloud(bed).s3_compatible(REGION, &admin(bed), "operator");
    let listed = s3.list_buckets().send().await.expect("ListBuckets");
    let mut names: Vec<String> = listed
        .buckets()
        .iter()
        .filter_map(|b| b.name())
        .filter(|n| n.contains(part))
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

/// Counts of (buckets, roles, policies) named for namespace `ns` (each case has its own). Each
/// must carry the uid tag of the integration `uid`, and each policy must still be at its first
/// version (a create interrupted and retried writes no second one).
async fn owned(bed: &TestBed, ns: &str, uid: &str) -> (usize, usize, usize) {
    let cloud = cloud(bed);
    let admin = admin(bed);
    let buckets = bucket_names(bed, ns).await;
    let (roles, policies) = ram_names(bed, ns).await;
    let oss = cloud.oss(REGION);
    for bucket in &buckets {
        let tags = oss.tags(&admin, bucket).await.expect("GetBucketTags");
        assert_eq!(
            tags.get(TAG_UID).map(String::as_str),
            Some(uid),
            "bucket {bucket} is tagged with the integration's uid: {tags:?}"
        );
    }
    for (kind, names) in [(Tagged::Role, &roles), (Tagged::Policy, &policies)] {
        for name in names {
            let tags = cloud
                .api
                .list_tags(&admin, kind, name)
                .await
                .expect("ListTagResources");
            assert_eq!(
                tags.get(TAG_UID).map(String::as_str),
                Some(uid),
                "{kind:?} {name} is tagged with the integration's uid: {tags:?}"
            );
        }
    }
    for name in &policies {
        let policy = cloud
            .api
            .get_policy(&admin, name)
            .await
            .expect("GetPolicy")
            .expect("listed");
        assert_eq!(policy.default_version, "v1", "policy {name}: one version");
    }
    (buckets.len(), roles.len(), policies.len())
}

/// Measures (create boundaries, delete boundaries) of a clean run.
async fn boundaries(bed: &TestBed, client: &Client, spec: &Value) -> (u64, u64) {
    let ns = namespace(client, "alicrash-measure").await;
    let mut operator = start_operator(bed, &ns, ARGS);
    create(client, &ns, "m", spec.clone()).await;
    wait_ready(client, &ns, "m", &operator).await;
    let create_calls = unchanged_for(
        "the Alibaba Cloud calls of a Ready integration",
        Duration::from_secs(2),
        || calls(&operator),
    )
    .await;
    operator.terminate();
    assert!(operator.wait_for_exit(Duration::from_secs(30)));
    let api: Api<BucketIntegration> = Api::namespaced(client.clone(), &ns);
    api.delete("m", &DeleteParams::default()).await.expect("delete");
    let operator = start_operator(bed, &ns, ARGS);
    wait_gone(client, &ns, "m").await;
    (create_calls, calls(&operator).await)
}

/// Waits until the operator stopped after cloud call `n` (or the run is `done` without
/// reaching it), kills it there, and restarts it without the stop. Whether it was reached.
async fn kill_at(operator: &mut Operator, bed: &TestBed, n: u64, done: impl AsyncFn() -> bool) -> bool {
    let line = format!("stopped after AWS call {n} ");
    let (op, done) = (&*operator, &done);
    let reached = wait_for(
        &format!("cloud call {n}, or the end of the run"),
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
    let ns = namespace(client, &format!("alicrash-c{n}")).await;
    let stop = n.to_string();
    let mut operator = start_operator_with_env(
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
    let ns = namespace(client, &format!("alicrash-d{n}")).await;
    let mut operator = start_operator(bed, &ns, ARGS);
    let bi = create(client, &ns, "d", spec.clone()).await;
    wait_ready(client, &ns, "d", &operator).await;
    let uid = bi.uid().expect("uid");
    assert_eq!(owned(bed, &ns, &uid).await, (1, 1, 1));
    operator.terminate();
    assert!(operator.wait_for_exit(Duration::from_secs(30)));
    let api: Api<BucketIntegration> = Api::namespaced(client.clone(), &ns);
    api.delete("d", &DeleteParams::default()).await.expect("delete");
    let stop = n.to_string();
    let mut operator = start_operator_with_env(
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
async fn kill_9_at_every_alibaba_call_boundary_of_create_and_delete_leaks_and_duplicates_nothing() {
    let started = Instant::now();
    let (bed, client, _) = setup("alicrashes").await;
    let bed = Arc::new(bed);
    let second = bed
        .var("BUCKETWIRE_TESTBED_ALIBABA_SECOND_ACCOUNT_ID")
        .to_string();
    let mut cases = vec![];
    let mut measured = serde_json::Map::new();
    for (kind, spec) in specs(&second) {
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
    eprintln!("kill -9 at {kills} of {total} Alibaba Cloud call boundaries");
    assert!(
        missed.is_empty() && kills == total,
        "every boundary is reached: {kills} of {total}; runs that ended before their call: {missed:?}"
    );
    results::record(
        "alibaba_crashes",
        &json!({
            "test": "tests/alibaba_crashes.rs::kill_9_at_every_alibaba_call_boundary_of_create_and_delete_leaks_and_duplicates_nothing",
            "machine": results::machine(),
            "boundaries": measured,
            "cases": total,
            "kills": kills,
            "seconds": started.elapsed().as_secs_f64(),
        }),
    );
}

/// The leak check above can fail: an untagged bucket and an untagged role carrying the
/// namespace in their names are counted by it (and fail its tag assertion).
#[tokio::test]
async fn the_alibaba_leak_check_counts_untagged_leftovers() {
    let (bed, client, _) = setup("alicrash-untagged").await;
    let ns = namespace(&client, "alicrash-leak").await;
    let cloud = cloud(&bed);
    let admin = admin(&bed);
    let bucket = format!("bw-{ns}-leak");
    cloud
        .oss(REGION)
        .create_bucket(&admin, &bucket)
        .await
        .expect("PutBucket");
    assert_eq!(bucket_names(&bed, &ns).await, vec![bucket.clone()]);
    let caught = tokio::spawn({
        let ns = ns.clone();
        async move { owned(&TestBed::load(), &ns, "any-uid").await }
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
    cloud
        .oss(REGION)
        .delete_bucket(&admin, &bucket)
        .await
        .expect("DeleteBucket");
    let role = format!("bucketwire-{ns}-leak");
    let trust = bucketwire::provider::alibaba::documents::cross_account_trust(
        bed.var("BUCKETWIRE_TESTBED_ALIBABA_SECOND_ACCOUNT_ID"),
        "x",
    );
    cloud
        .api
        .create_role(&admin, &role, &trust, "leak check", &Default::default())
        .await
        .expect("CreateRole");
    assert_eq!(ram_names(&bed, &ns).await.0, vec![role.clone()]);
    cloud.api.delete_role(&admin, &role).await.expect("DeleteRole");
}
