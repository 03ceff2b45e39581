//! Hostile input that admission lets through, tenants, and data safety (issue 8).
//!
//! - A spec only the operator can judge invalid costs zero AWS calls and stalls no one.
//! - An integration in one namespace cannot take over another namespace's bucket, annotate its
//!   ServiceAccount, or get a role trusting it; trust policies carry no wildcard; the role path
//!   and permissions boundary are enforced when configured.
//! - Deleting a namespace never deletes a bucket's objects.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;

use bucketwire::api::BucketIntegration;
use common::aws::{get_object, put_object};
use common::integration::{condition, create, wait_condition, wait_ready};
use common::operator::{AwsProxy, Operator};
use common::{aws, namespace, results, setup, wait_for};

#[tokio::test]
async fn specs_only_the_operator_can_reject_cost_no_aws_call_and_stall_no_one() {
    let (bed, client, ns) = setup("hostile").await;
    // Every AWS request of this operator goes through a recording proxy (nothing is failed), so
    // that each one can be attributed by the bucket or IAM name it carries.
    let proxy = AwsProxy::start(bed.var("BUCKETWIRE_AWS_ENDPOINT_URL"), &ns, &["--rate", "0"]);
    // The operator's policy is rendered for its prefix, as the README's install step renders it.
    let settings = aws::OperatorSettings {
        bucket_prefix: "team-a-".into(),
        ..aws::OperatorSettings::testbed(&bed)
    };
    let identity = aws::operator_identity(&bed, &settings).await;
    let operator = Operator::start_as(
        &bed,
        &ns,
        &["--resync-interval", "1h"],
        &[("BUCKETWIRE_AWS_ENDPOINT_URL", proxy.url.as_str())],
        &identity,
    );
    // Twenty admitted specs naming buckets outside this operator's prefix, then one good one.
    let bad: Vec<(String, String)> = (0..20)
        .map(|i| {
            let bucket: String = format!("team-b-{i:02}-{ns}").chars().take(63).collect();
            (format!("bad{i:02}"), bucket.trim_end_matches('-').to_string())
        })
        .collect();
    for (name, bucket) in &bad {
        create(
            &client,
            &ns,
            name,
            json!({"region": "us-east-2", "bucket": {"name": bucket}}),
        )
        .await;
    }
    create(&client, &ns, "good", json!({"region": "us-east-2"})).await;
    let good = wait_ready(&client, &ns, "good", &operator).await;
    let good_bucket = good
        .status
        .and_then(|s| s.bucket?.name)
        .expect("the good one's bucket");
    assert!(good_bucket.starts_with("team-a-"), "derived names use the prefix");
    for (name, _) in &bad {
        let bi = wait_condition(
            &client,
            &ns,
            name,
            "Ready",
            "False",
            Some("InvalidSpec"),
            &operator,
        )
        .await;
        let message = condition(&bi, "Ready").expect("Ready").message;
        assert!(message.contains("team-a-"), "{message}");
    }

    // Zero AWS requests for the twenty, counted by the emulator (every request naming one of
    // their buckets, from any client) and by the proxy (every request of this operator naming
    // one of their buckets or IAM names, which all contain `<namespace>-badNN`).
    let emulator: Vec<_> = aws::emulator_requests(&bed)
        .into_iter()
        .filter(|r| bad.iter().any(|(_, b)| r.is_for_bucket(b)))
        .collect();
    assert!(emulator.is_empty(), "requests for the 20: {emulator:?}");
    let requests = proxy.requests();
    let for_bad: Vec<_> = requests
        .iter()
        .filter(|r| {
            bad.iter()
                .any(|(name, bucket)| r.names_any(&format!("{ns}-{name}")) || r.names_any(bucket))
        })
        .collect();
    assert!(for_bad.is_empty(), "requests for the 20: {for_bad:?}");
    // And every request the operator made names the good one, or is a lookup made once per
    // process (caller identity, cluster, OIDC provider), which names no integration.
    let good_part = format!("{ns}-good-");
    let (for_good, other): (Vec<_>, Vec<_>) = requests
        .iter()
        .partition(|r| r.names_any(&good_part) || r.names_any(&good_bucket));
    let lookups = ["GetCallerIdentity", "GetOpenIDConnectProvider"];
    assert!(
        other
            .iter()
            .all(|r| lookups.contains(&r.action.as_str()) || r.service == "eks" && r.method == "GET"),
        "requests that name no integration: {other:?}"
    );
    assert!(!for_good.is_empty());

    // The operator's own counter agrees: one of each create, for the good one.
    let calls = operator.mutating_calls().await;
    for op in [
        "S3:CreateBucket",
        "IAM:CreatePolicy",
        "IAM:CreateRole",
        "IAM:AttachRolePolicy",
    ] {
        assert_eq!(calls.get(op), Some(&1), "{op}: {calls:?}");
    }
    assert!(!operator.log().contains("panicked"), "the operator never panics");
    results::record(
        "tenants_invalid",
        &json!({
            "test": "tests/tenants.rs::specs_only_the_operator_can_reject_cost_no_aws_call_and_stall_no_one",
            "invalid_integrations": bad.len(),
            "requests_for_them_emulator_log": emulator.len(),
            "requests_for_them_proxy_log": for_bad.len(),
            "requests_for_the_good_one": for_good.len(),
            "once_per_process_lookups": other.len(),
        }),
    );
}

#[tokio::test]
async fn one_namespace_cannot_reach_another_namespaces_bucket_role_or_service_account() {
    let (bed, client, ns_b) = setup("tenant-b").await;
    let ns_a = namespace(&client, "tenant-a").await;
    let operator_b = Operator::start(&bed, &ns_b, &[]);
    create(
        &client,
        &ns_b,
        "data",
        json!({"region": "us-east-2", "serviceAccount": {"name": "milvus"}}),
    )
    .await;
    let b = wait_ready(&client, &ns_b, "data", &operator_b).await;
    let b_status = b.status.clone().expect("status");
    let b_bucket = b_status.bucket.clone().and_then(|x| x.name).expect("bucket");
    let b_role = b_status.role_arn.clone().expect("role");
    let s3 = aws::s3(&bed, "us-east-2").await;
    put_object(&s3, &b_bucket, "files/segment-1", "tenant b's vectors").await;

    // The operator for A even allow-lists B's bucket for adoption: still refused.
    let operator_a = Operator::start(&bed, &ns_a, &["--adopt-buckets", &b_bucket]);
    create(
        &client,
        &ns_a,
        "adopt",
        json!({"region": "us-east-2", "bucket": {"name": b_bucket, "create": false}}),
    )
    .await;
    create(
        &client,
        &ns_a,
        "take",
        json!({"region": "us-east-2", "bucket": {"name": b_bucket}}),
    )
    .await;
    for name in ["adopt", "take"] {
        let bi = wait_condition(
            &client,
            &ns_a,
            name,
            "Ready",
            "False",
            Some("BucketOwnedElsewhere"),
            &operator_a,
        )
        .await;
        let message = condition(&bi, "Ready").expect("Ready").message;
        assert!(
            message.contains("another bucketwire integration") || message.contains("bucketwire.io/uid"),
            "{message}"
        );
    }

    // A's integration naming B's ServiceAccount name gets a role that trusts A's namespace only.
    create(
        &client,
        &ns_a,
        "same-sa",
        json!({"region": "us-east-2", "serviceAccount": {"name": "milvus"}}),
    )
    .await;
    let a = wait_ready(&client, &ns_a, "same-sa", &operator_a).await;
    let a_role = a.status.and_then(|s| s.role_arn).expect("role");
    let iam = aws::iam(&bed, "us-east-2").await;
    let trust = aws::trust_of(&iam, &a_role).await;
    let text = trust.to_string();
    assert!(
        text.contains(&format!("system:serviceaccount:{ns_a}:milvus")),
        "{text}"
    );
    assert!(!text.contains(&format!(":{ns_b}:")), "{text}");
    assert!(!text.contains('*'), "no wildcard in a trust policy: {text}");
    assert!(
        trust["Statement"]
            .as_array()
            .is_some_and(|s| s.iter().all(|st| st["Condition"].get("StringLike").is_none())),
        "exact matches only: {text}"
    );

    // B is untouched: its ServiceAccount still names B's role, its bucket its tags and data.
    let sa = Api::<ServiceAccount>::namespaced(client.clone(), &ns_b)
        .get("milvus")
        .await
        .expect("sa");
    assert_eq!(
        sa.metadata
            .annotations
            .unwrap_or_default()
            .get("eks.amazonaws.com/role-arn"),
        Some(&b_role)
    );
    let tags = s3
        .get_bucket_tagging()
        .bucket(&b_bucket)
        .send()
        .await
        .expect("tags");
    let uid = tags
        .tag_set()
        .iter()
        .find(|t| t.key() == "bucketwire.io/uid")
        .map(|t| t.value().to_string());
    assert_eq!(uid.as_deref(), b.metadata.uid.as_deref());
    assert_eq!(
        get_object(&s3, &b_bucket, "files/segment-1").await.as_deref(),
        Some("tenant b's vectors")
    );
    let b_now = Api::<BucketIntegration>::namespaced(client.clone(), &ns_b)
        .get("data")
        .await
        .expect("b");
    assert_eq!(
        condition(&b_now, "Ready").map(|c| c.status).as_deref(),
        Some("True")
    );
}

#[tokio::test]
async fn the_role_path_and_permissions_boundary_are_enforced() {
    let (bed, client, ns) = setup("boundary").await;
    let iam = aws::iam(&bed, "us-east-2").await;
    let boundary_name = format!("boundary-{ns}");
    let boundary = iam
        .create_policy()
        .policy_name(&boundary_name)
        .policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]})
                .to_string(),
        )
        .send()
        .await
        .expect("boundary policy")
        .policy
        .and_then(|p| p.arn)
        .expect("arn");
    // The operator's policy is rendered for that path and boundary.
    let settings = aws::OperatorSettings {
        role_path: "/tenants/a/".into(),
        boundary: Some(boundary.clone()),
        ..aws::OperatorSettings::testbed(&bed)
    };
    let identity = aws::operator_identity(&bed, &settings).await;
    let operator = Operator::start_as(&bed, &ns, &["--role-path", "/tenants/a/"], &[], &identity);
    create(&client, &ns, "bounded", json!({"region": "us-east-2"})).await;
    let bi = wait_ready(&client, &ns, "bounded", &operator).await;
    let status = bi.status.expect("status");
    let role_arn = status.role_arn.expect("role");
    assert!(role_arn.contains(":role/tenants/a/"), "{role_arn}");
    assert!(status.policy_arn.expect("policy").contains(":policy/tenants/a/"));
    let role_name = role_arn.rsplit('/').next().expect("name").to_string();
    let get = || aws::role(&iam, &role_arn);
    let boundary_of = |role: &aws_sdk_iam::types::Role| {
        role.permissions_boundary()
            .and_then(|b| b.permissions_boundary_arn())
            .map(str::to_string)
    };
    assert_eq!(boundary_of(&get().await).as_deref(), Some(boundary.as_str()));
    // Someone removes it: the next resync puts it back.
    iam.delete_role_permissions_boundary()
        .role_name(&role_name)
        .send()
        .await
        .expect("removed");
    wait_for("the boundary to be restored", Duration::from_secs(30), || async {
        (boundary_of(&get().await).as_deref() == Some(boundary.as_str())).then_some(())
    })
    .await;
}

#[tokio::test]
async fn deleting_a_namespace_keeps_every_object_of_its_buckets() {
    let (bed, client, ns) = setup("nsdelete").await;
    let operator = Operator::start(
        &bed,
        &ns,
        &[
            "--leader-election-namespace",
            "default",
            "--leader-election-lease",
            &format!("nsdelete-{ns}"),
        ],
    );
    create(&client, &ns, "kept", json!({"region": "us-east-2"})).await;
    create(
        &client,
        &ns,
        "blocked",
        json!({"region": "us-east-2", "bucket": {"deletionPolicy": "Delete"}}),
    )
    .await;
    let s3 = aws::s3(&bed, "us-east-2").await;
    let mut buckets = BTreeMap::new();
    let mut uids = std::collections::BTreeSet::new();
    for name in ["kept", "blocked"] {
        let bi = wait_ready(&client, &ns, name, &operator).await;
        uids.insert(bi.metadata.uid.clone().expect("uid"));
        let bucket = bi.status.and_then(|s| s.bucket?.name).expect("bucket");
        for i in 0..3 {
            put_object(
                &s3,
                &bucket,
                &format!("files/{name}-{i}"),
                &format!("{name} data {i}"),
            )
            .await;
        }
        buckets.insert(name, bucket);
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .expect("namespace deletion");

    // Delete with objects in the bucket: blocked, and said so; nothing is removed.
    let bi = wait_condition(
        &client,
        &ns,
        "blocked",
        "Ready",
        "False",
        Some("DeletionBlocked"),
        &operator,
    )
    .await;
    assert!(
        condition(&bi, "Ready")
            .expect("Ready")
            .message
            .contains("not empty")
    );
    for (name, bucket) in &buckets {
        for i in 0..3 {
            assert_eq!(
                get_object(&s3, bucket, &format!("files/{name}-{i}")).await,
                Some(format!("{name} data {i}")),
                "{bucket}/files/{name}-{i}"
            );
        }
    }
    // The owner decides to keep it after all: the namespace goes, the data stays.
    Api::<BucketIntegration>::namespaced(client.clone(), &ns)
        .patch(
            "blocked",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"bucket": {"deletionPolicy": "Retain"}}})),
        )
        .await
        .expect("switch to Retain");
    wait_for("the namespace to be gone", Duration::from_secs(90), || async {
        namespaces.get_opt(&ns).await.ok()?.is_none().then_some(())
    })
    .await;
    for (name, bucket) in &buckets {
        for i in 0..3 {
            assert_eq!(
                get_object(&s3, bucket, &format!("files/{name}-{i}")).await,
                Some(format!("{name} data {i}")),
                "{bucket}/files/{name}-{i} after the namespace was deleted"
            );
        }
    }
    // Only the IAM side went away.
    let left = aws::inventory(&bed, "us-east-2", &ns, &uids).await;
    assert!(left.roles.is_empty() && left.policies.is_empty(), "{left:?}");
    assert_eq!(left.buckets.len(), 2, "both buckets kept: {left:?}");
}
