//! Leader election on the test bed: with two replicas exactly one reconciles; a killed leader is
//! replaced within 15 seconds; SIGTERM finishes work in flight and releases the Lease at once.

mod common;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use serde_json::json;

use common::integration::{create, wait_ready};
use common::operator::Operator;
use common::{setup, wait_for};

/// Which of two operators is reconciling (the one whose reconcile counter moved).
async fn leader_of<'a>(a: &'a Operator, b: &'a Operator) -> (&'a Operator, &'a Operator, bool) {
    let (ra, rb) = (a.reconciles().await, b.reconciles().await);
    assert!(ra == 0 || rb == 0, "both replicas reconciled: {ra} and {rb}");
    if ra > 0 { (a, b, true) } else { (b, a, false) }
}

#[tokio::test]
async fn two_replicas_one_reconciles_and_a_killed_leader_is_replaced_within_15s() {
    let (bed, client, ns) = setup("leader").await;
    let first = Operator::start(&bed, &ns, &[]);
    let second = Operator::start(&bed, &ns, &[]);
    create(&client, &ns, "one", json!({"region": "us-east-2"})).await;
    wait_ready(&client, &ns, "one", &first).await;
    // Three resyncs (every 2 s) later, still only one replica has reconciled anything: the
    // standby's count is checked at every poll across that window, not once at its end.
    let (leader, standby, first_leads) = leader_of(&first, &second).await;
    let start = leader.reconciles().await;
    wait_for("three resyncs by the leader", Duration::from_secs(20), || async {
        assert_eq!(standby.reconciles().await, 0, "the standby reconciled");
        (leader.reconciles().await >= start + 3).then_some(())
    })
    .await;
    let lease: Lease = Api::namespaced(client.clone(), &ns)
        .get("bucketwire")
        .await
        .expect("the Lease exists");
    assert!(
        lease.spec.and_then(|s| s.holder_identity).is_some(),
        "the Lease has a holder"
    );

    // kill -9 the leader: no release, the Lease has to expire.
    let (mut leader, standby) = if first_leads {
        (first, second)
    } else {
        (second, first)
    };
    leader.kill();
    let killed = Instant::now();
    create(&client, &ns, "two", json!({"region": "us-east-2"})).await;
    wait_for("the standby to take over", Duration::from_secs(20), || async {
        (standby.reconciles().await > 0).then_some(())
    })
    .await;
    let handover = killed.elapsed();
    assert!(handover <= Duration::from_secs(15), "handover took {handover:?}");
    wait_ready(&client, &ns, "two", &standby).await;
}

#[tokio::test]
async fn sigterm_finishes_and_releases_the_lease() {
    let (bed, client, ns) = setup("sigterm").await;
    let first = Operator::start(&bed, &ns, &[]);
    let second = Operator::start(&bed, &ns, &[]);
    create(&client, &ns, "one", json!({"region": "us-east-2"})).await;
    wait_ready(&client, &ns, "one", &first).await;
    let (leader, standby, _) = leader_of(&first, &second).await;

    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let holder = || async {
        leases
            .get("bucketwire")
            .await
            .ok()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
    };
    let before = holder().await.expect("a holder");
    leader.terminate();
    // The Lease is released on the way out, not left to expire.
    wait_for("the Lease to be released", Duration::from_secs(5), || async {
        (holder().await.as_deref() != Some(before.as_str())).then_some(())
    })
    .await;
    assert!(
        leader.log().contains("released the leadership Lease"),
        "{}",
        leader.log()
    );
    create(&client, &ns, "two", json!({"region": "us-east-2"})).await;
    wait_for("the standby to take over", Duration::from_secs(15), || async {
        (standby.reconciles().await > 0).then_some(())
    })
    .await;
    wait_ready(&client, &ns, "two", standby).await;
}
