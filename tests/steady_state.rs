//! The production cadence of steady resyncs (issue 18), against moto, the real kube-apiserver
//! and the IAM policy evaluator, with the operator's published policy:
//!
//! - A steady resync (Ready for its generation) makes, as the operator, one S3 read (the
//!   public access block) and at most one shared IAM bulk read, and, as the workload, only the
//!   read-only check (the role assumed, HeadBucket, a GetObject of an absent key): no write
//!   anywhere, no object in the bucket. A public access block removed out of band is repaired,
//!   and the repair is followed by the full write probe.
//! - The same for the other modes: a cross-account integration makes no call as anyone but
//!   the operator (its Validated is kept); a Pod Identity one also describes its association
//!   (EKS) and asks the EKS Auth fake for the workload's credentials, then reads as above.
//! - After a restart, a changed spec is reconciled at once, and each steady integration waits
//!   for its own phase of the restart spread (`bucketwire::cadence::phase`) before any call.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use bucketwire::api::BucketIntegration;
use common::aws;
use common::integration::{create, events, ready_status, wait_ready};
use common::operator::{Operator, is_read};
use common::{setup, wait_for};

type Calls = BTreeMap<(String, String, String), u64>;

/// What was called between two snapshots, by "service:operation".
fn delta(before: &Calls, after: &Calls) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for ((service, operation, outcome), n) in after {
        let was = before
            .get(&(service.clone(), operation.clone(), outcome.clone()))
            .copied()
            .unwrap_or(0);
        if *n > was {
            *out.entry(format!("{}:{operation}", service.to_lowercase()))
                .or_default() += n - was;
        }
    }
    out
}

/// Waits for three resyncs of the one Ready integration and checks what they cost as the
/// operator: the public access block once per resync, IAM in bulk at most once per resync, and
/// `also` (the mode's own reads) at most once per resync; and no write with either identity.
/// Returns the resyncs and the calls made as the operator and as the workload.
async fn three_steady_resyncs(
    operator: &Operator,
    also: &[&str],
) -> (u64, BTreeMap<String, u64>, BTreeMap<String, u64>) {
    let (ops, work, reconciles) = (
        operator.aws_calls().await,
        operator.workload_calls().await,
        operator.reconciles().await,
    );
    let done = wait_for("three steady resyncs", Duration::from_secs(40), || async {
        let now = operator.reconciles().await;
        (now >= reconciles + 3).then_some(now)
    })
    .await;
    let resyncs = done - reconciles;
    let operator_calls = delta(&ops, &operator.aws_calls().await);
    let workload_calls = delta(&work, &operator.workload_calls().await);

    let mut allowed = vec!["s3:GetPublicAccessBlock", "iam:GetAccountAuthorizationDetails"];
    allowed.extend(also);
    assert!(
        operator_calls.keys().all(|op| allowed.contains(&op.as_str())),
        "{resyncs} steady resyncs, as the operator: {operator_calls:?}"
    );
    let pab = operator_calls
        .get("s3:GetPublicAccessBlock")
        .copied()
        .unwrap_or(0);
    assert!(
        // (±1: a resync in flight at either snapshot)
        pab + 1 >= resyncs && pab <= resyncs + 1,
        "one bucket read per resync: {resyncs} resyncs, {operator_calls:?}"
    );
    for op in allowed.iter().skip(1) {
        let n = operator_calls.get(*op).copied().unwrap_or(0);
        assert!(
            n <= resyncs + 1,
            "{op} at most once per resync: {operator_calls:?}"
        );
    }
    assert!(
        workload_calls
            .iter()
            .chain(&operator_calls)
            .all(|(op, _)| op.starts_with("sts:")
                || op.starts_with("eks auth:")
                || is_read(op.split(':').nth(1).unwrap_or(op))),
        "no write anywhere: {operator_calls:?} {workload_calls:?}"
    );
    (resyncs, operator_calls, workload_calls)
}

#[tokio::test]
async fn a_steady_resync_reads_one_bucket_setting_and_iam_in_bulk_and_validates_without_writing() {
    let (bed, client, ns) = setup("steady").await;
    let operator = Operator::start_with_production_cadence(&bed, &ns, &["--resync-interval", "3s"]);
    create(&client, &ns, "milvus", json!({"region": "us-east-2"})).await;
    let status = ready_status(&client, &ns, "milvus", &operator).await;
    let bucket = status.bucket.and_then(|b| b.name).expect("bucket");

    let (resyncs, operator_calls, workload_calls) = three_steady_resyncs(&operator, &[]).await;
    // As the workload: the read-only check only.
    let read_only = ["sts:AssumeRoleWithWebIdentity", "s3:HeadBucket", "s3:GetObject"];
    assert!(
        !workload_calls.is_empty() && workload_calls.keys().all(|op| read_only.contains(&op.as_str())),
        "{resyncs} steady resyncs, as the workload: {workload_calls:?}"
    );
    let s3 = aws::s3(&bed, "us-east-2").await;
    let versions = s3
        .list_object_versions()
        .bucket(&bucket)
        .send()
        .await
        .expect("ListObjectVersions");
    assert!(
        versions.versions().is_empty() && versions.delete_markers().is_empty(),
        "nothing in the user's bucket: {versions:?}"
    );
    common::results::record(
        "steady_resync_calls",
        &json!({
            "test": "tests/steady_state.rs::a_steady_resync_reads_one_bucket_setting_and_iam_in_bulk_and_validates_without_writing",
            "settings": "production defaults (bucket settings every 6h, no write probe on steady resyncs), resync 3s",
            "resyncs": resyncs,
            "operatorCalls": operator_calls,
            "workloadCalls": workload_calls,
        }),
    );

    // The public access block turned off out of band: the next resync's one read sees it, the
    // full read repairs it, and the repair is followed by the full probe as the workload.
    let before = operator.workload_calls().await;
    s3.delete_public_access_block()
        .bucket(&bucket)
        .send()
        .await
        .expect("public access block removed");
    wait_for(
        "the public access block restored",
        Duration::from_secs(30),
        || async {
            let c = s3.get_public_access_block().bucket(&bucket).send().await.ok()?;
            let c = c.public_access_block_configuration()?;
            (c.block_public_acls() == Some(true) && c.restrict_public_buckets() == Some(true)).then_some(())
        },
    )
    .await;
    wait_for("the repair's Event", Duration::from_secs(15), || async {
        events(&client, &ns, "milvus")
            .await
            .into_iter()
            .find(|(reason, message)| reason == "DriftCorrected" && message.contains("PublicAccessBlock"))
    })
    .await;
    let probed = wait_for(
        "the full probe after the repair",
        Duration::from_secs(30),
        || async {
            let calls = delta(&before, &operator.workload_calls().await);
            calls.contains_key("s3:PutObject").then_some(calls)
        },
    )
    .await;
    assert!(probed.contains_key("s3:DeleteObject"), "{probed:?}");
    wait_ready(&client, &ns, "milvus", &operator).await;
}

#[tokio::test]
async fn a_steady_cross_account_resync_reads_one_bucket_setting_and_makes_no_call_as_anyone_else() {
    let (bed, client, ns) = setup("steady-x").await;
    let args = [
        "--resync-interval",
        "3s",
        "--allowed-trusted-accounts",
        "999988887777",
    ];
    let operator = Operator::start_with_production_cadence(&bed, &ns, &args);
    let spec = json!({"region": "us-east-2",
        "identity": {"mode": "CrossAccount", "crossAccount": {"trustedAccountId": "999988887777"}}});
    create(&client, &ns, "milvus", spec).await;
    ready_status(&client, &ns, "milvus", &operator).await;
    let (resyncs, operator_calls, workload_calls) = three_steady_resyncs(&operator, &[]).await;
    // The trusted account's side is not ours to act as on every resync: Validated is kept.
    assert!(
        workload_calls.is_empty(),
        "{resyncs} steady resyncs, as anyone but the operator: {workload_calls:?}"
    );
    common::results::record(
        "steady_resync_calls_cross_account",
        &json!({
            "test": "tests/steady_state.rs::a_steady_cross_account_resync_reads_one_bucket_setting_and_makes_no_call_as_anyone_else",
            "settings": "production defaults, resync 3s",
            "resyncs": resyncs,
            "operatorCalls": operator_calls,
            "workloadCalls": workload_calls,
        }),
    );
}

#[tokio::test]
async fn a_steady_pod_identity_resync_also_reads_its_association_and_validates_read_only() {
    let (bed, client, ns) = setup("steady-p").await;
    let operator = Operator::start_with_production_cadence(&bed, &ns, &["--resync-interval", "3s"]);
    let spec = json!({"region": "us-east-2", "identity": {"mode": "PodIdentity"}});
    create(&client, &ns, "milvus", spec).await;
    ready_status(&client, &ns, "milvus", &operator).await;
    // The association has no bulk read that shows its role: it is described on each resync.
    // The operator asks EKS Auth for the workload's credentials as the node's agent would.
    let (resyncs, operator_calls, workload_calls) = three_steady_resyncs(
        &operator,
        &[
            "eks:DescribePodIdentityAssociation",
            "eks auth:AssumeRoleForPodIdentity",
        ],
    )
    .await;
    let read_only = ["s3:HeadBucket", "s3:GetObject"];
    assert!(
        !workload_calls.is_empty() && workload_calls.keys().all(|op| read_only.contains(&op.as_str())),
        "{resyncs} steady resyncs, as the workload: {workload_calls:?}"
    );
    common::results::record(
        "steady_resync_calls_pod_identity",
        &json!({
            "test": "tests/steady_state.rs::a_steady_pod_identity_resync_also_reads_its_association_and_validates_read_only",
            "settings": "production defaults, resync 3s",
            "resyncs": resyncs,
            "operatorCalls": operator_calls,
            "workloadCalls": workload_calls,
        }),
    );
}

#[tokio::test]
async fn a_restart_reconciles_a_changed_spec_first_and_spreads_the_steady_ones() {
    let (bed, client, ns) = setup("spread").await;
    // A day's spread: the steady integrations' phases are far beyond this test's minutes.
    let args = ["--resync-interval", "24h", "--restart-spread", "24h"];
    let mut operator = Operator::start_with_production_cadence(&bed, &ns, &args);
    let names = ["a", "b", "c", "d"];
    for name in names {
        create(
            &client,
            &ns,
            name,
            json!({"region": "us-east-2", "validation": {"enabled": false}}),
        )
        .await;
    }
    let mut uids = BTreeMap::new();
    for name in names {
        let bi = wait_ready(&client, &ns, name, &operator).await;
        uids.insert(name, bi.uid().expect("uid"));
    }
    // The operator stops; meanwhile `a`'s spec changes (generation 2).
    operator.kill();
    let api: Api<BucketIntegration> = Api::namespaced(client.clone(), &ns);
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"bucket": {"versioning": true}}})),
    )
    .await
    .expect("spec changed");
    let operator = Operator::start_with_production_cadence(&bed, &ns, &args);
    wait_for(
        "a reconciled for its new generation",
        Duration::from_secs(60),
        || async {
            let bi = api.get("a").await.ok()?;
            let status = bi.status.as_ref()?;
            (status.observed_generation == bi.metadata.generation
                && status
                    .conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True"))
            .then_some(())
        },
    )
    .await;

    // Each steady one logged its first check at its own phase, within the spread.
    let spread = Duration::from_secs(24 * 3600);
    let log = operator.log();
    for name in &names[1..] {
        let delay = bucketwire::cadence::phase(&uids[name], spread);
        assert!(delay < spread);
        let line = format!("first_check_in={delay:?}");
        assert!(
            log.lines()
                .any(|l| l.contains(&line) && l.contains(&format!("name={name}"))),
            "{name}: deferred by {delay:?}:\n{log}"
        );
    }
    assert!(
        !log.lines()
            .any(|l| l.contains("first_check_in") && l.contains("name=a ")),
        "the changed spec is not deferred:\n{log}"
    );
    // None of them made a call yet (unless its phase fell within the test's first minutes):
    // only `a`'s reconcile read its bucket's tags.
    let soon = Duration::from_secs(600);
    if names[1..]
        .iter()
        .all(|name| bucketwire::cadence::phase(&uids[name], spread) > soon)
    {
        let tags: u64 = operator
            .aws_calls()
            .await
            .iter()
            .filter(|((_, op, _), _)| op == "GetBucketTagging")
            .map(|(_, n)| n)
            .sum();
        assert_eq!(tags, 1, "only the changed integration's bucket was read");
    }
}
