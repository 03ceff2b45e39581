//! IAM's bulk view on steady resyncs (issue 18; `--iam-bulk-reads`, on by default). Against
//! moto and the test bed's IAM policy evaluator: the operator, with the published policy (which
//! grants `iam:GetAccountAuthorizationDetails` on `*` as `ReadIamInBulk`), resyncs a Ready
//! integration with bulk reads and no per-resource IAM read, and a trust policy changed out of
//! band, which the view shows, is read per resource and repaired. Refused, the bulk read falls
//! back to the per-resource reads: tests/operator_policy.rs shows that.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use bucketwire::documents::parse_document;
use common::aws;
use common::integration::{create, ready_status};
use common::operator::Operator;
use common::{setup, wait_for};

/// IAM calls of the operator's identity, by operation.
async fn iam_calls(operator: &Operator) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for ((service, operation, _), n) in operator.aws_calls().await {
        if service.eq_ignore_ascii_case("iam") {
            *out.entry(operation).or_default() += n;
        }
    }
    out
}

const PER_RESOURCE_READS: &[&str] = &[
    "GetRole",
    "GetPolicy",
    "GetPolicyVersion",
    "ListAttachedRolePolicies",
    "ListRolePolicies",
];

fn per_resource_reads(calls: &BTreeMap<String, u64>) -> u64 {
    PER_RESOURCE_READS
        .iter()
        .map(|op| calls.get(*op).copied().unwrap_or(0))
        .sum()
}

#[tokio::test]
async fn steady_resyncs_read_iam_in_bulk_and_drift_the_view_shows_is_repaired() {
    let (bed, client, ns) = setup("iambulk").await;
    // A resync every 4 s, the view at most 1 s old; validation off, so only IAM and S3 reads.
    let operator = Operator::start(&bed, &ns, &["--resync-interval", "4s"]);
    create(
        &client,
        &ns,
        "bulk",
        json!({"region": "us-east-2", "validation": {"enabled": false}}),
    )
    .await;
    let status = ready_status(&client, &ns, "bulk", &operator).await;
    let role_name = status
        .role_arn
        .as_deref()
        .and_then(|a| a.rsplit('/').next())
        .expect("role")
        .to_string();

    // Three steady resyncs (each a bulk read, the view being older than a second by then).
    let before = iam_calls(&operator).await;
    let after = wait_for("three bulk reads", Duration::from_secs(40), || async {
        let now = iam_calls(&operator).await;
        let bulk = |c: &BTreeMap<String, u64>| c.get("GetAccountAuthorizationDetails").copied().unwrap_or(0);
        (bulk(&now) >= bulk(&before) + 3).then_some(now)
    })
    .await;
    assert_eq!(
        per_resource_reads(&after),
        per_resource_reads(&before),
        "steady resyncs read no role or policy one by one: {before:?} -> {after:?}"
    );
    let writes: u64 = after
        .iter()
        .filter(|(op, _)| !(op.starts_with("Get") || op.starts_with("List")))
        .map(|(_, n)| n)
        .sum::<u64>()
        - before
            .iter()
            .filter(|(op, _)| !(op.starts_with("Get") || op.starts_with("List")))
            .map(|(_, n)| n)
            .sum::<u64>();
    assert_eq!(writes, 0, "{before:?} -> {after:?}");

    // The trust widened out of band: the view shows it, the full reads find it and repair it.
    let iam = aws::iam(&bed, "us-east-1").await;
    let trust = |iam: aws_sdk_iam::Client, name: String| async move {
        parse_document(
            iam.get_role()
                .role_name(&name)
                .send()
                .await
                .ok()?
                .role?
                .assume_role_policy_document()?,
        )
    };
    let expected = trust(iam.clone(), role_name.clone()).await.expect("trust");
    let mut widened = expected.clone();
    let sub_key = widened["Statement"][0]["Condition"]["StringEquals"]
        .as_object()
        .and_then(|m| m.keys().find(|k| k.ends_with(":sub")).cloned())
        .expect("sub condition");
    widened["Statement"][0]["Condition"]["StringEquals"][&sub_key] =
        json!(format!("system:serviceaccount:{ns}:intruder"));
    iam.update_assume_role_policy()
        .role_name(&role_name)
        .policy_document(widened.to_string())
        .send()
        .await
        .expect("trust changed");
    wait_for("the trust to be repaired", Duration::from_secs(40), || async {
        let now = trust(iam.clone(), role_name.clone()).await?;
        bucketwire::documents::documents_equivalent(&now, &expected).then_some(())
    })
    .await;
    let repaired = iam_calls(&operator).await;
    assert!(
        repaired.get("UpdateAssumeRolePolicy").copied().unwrap_or(0) >= 1
            && per_resource_reads(&repaired) > per_resource_reads(&after),
        "the drift went through the full reads: {repaired:?}"
    );
}

/// The test bed pages GetAccountAuthorizationDetails as IAM does (moto answers everything at
/// once): the SDK's paginator, two entities a page, sees the same roles and policies as one
/// read of a thousand, over several truncated pages. At ten thousand integrations the
/// operator's bulk view would be twenty pages of a thousand (`make bench-scale` runs 4000: eight).
#[tokio::test]
async fn the_test_bed_pages_the_bulk_read_as_iam_does() {
    use aws_sdk_iam::types::EntityType;
    let (bed, client, ns) = setup("iam-pages").await;
    let operator = Operator::start(&bed, &ns, &[]);
    create(&client, &ns, "milvus", json!({"region": "us-east-2"})).await;
    ready_status(&client, &ns, "milvus", &operator).await;
    let iam = aws::iam(&bed, "us-east-2").await;
    let entities = |page: &aws_sdk_iam::operation::get_account_authorization_details::GetAccountAuthorizationDetailsOutput| {
        let mut names: Vec<String> = page
            .role_detail_list()
            .iter()
            .filter_map(|r| r.role_name().map(|n| format!("role {n}")))
            .collect();
        names.extend(
            page.policies()
                .iter()
                .filter_map(|p| p.arn().map(|a| format!("policy {a}"))),
        );
        names
    };
    let whole = iam
        .get_account_authorization_details()
        .filter(EntityType::Role)
        .filter(EntityType::LocalManagedPolicy)
        .max_items(1000)
        .send()
        .await
        .expect("GetAccountAuthorizationDetails");
    assert!(
        !whole.is_truncated(),
        "the test bed holds under a thousand entities"
    );
    let mut expected = entities(&whole);
    assert!(expected.len() >= 2, "{expected:?}");

    let mut pages = iam
        .get_account_authorization_details()
        .filter(EntityType::Role)
        .filter(EntityType::LocalManagedPolicy)
        .max_items(2)
        .into_paginator()
        .send();
    let (mut seen, mut truncated) = (vec![], 0);
    while let Some(page) = pages.next().await {
        let page = page.expect("a page");
        let names = entities(&page);
        assert!(names.len() <= 2, "MaxItems 2, got {names:?}");
        truncated += usize::from(page.is_truncated());
        seen.extend(names);
    }
    assert!(truncated >= 1, "more than one page");
    expected.sort();
    seen.sort();
    assert_eq!(seen, expected, "the pages hold what one read holds, once each");
}
