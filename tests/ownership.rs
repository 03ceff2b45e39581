//! Ownership and recorded identity (issue 13, items 1-4): an untagged bucket is never taken
//! over, what status records survives failures and settings changes, an adopted bucket is never
//! managed or deleted, and one ServiceAccount serves one integration. Writes are counted from
//! the emulator's own request log, not from the operator's metrics.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;

use bucketwire::api::{BucketIntegration, BucketIntegrationStatus};
use common::aws::{bucket_writes, inventory, unique_bucket};
use common::integration::{condition, create, ready_status, wait_condition};
use common::operator::Operator;
use common::results::record;
use common::{aws, setup, wait_for};

const ROLE_ARN_ANNOTATION: &str = "eks.amazonaws.com/role-arn";

/// Every reconcile the operator finished, whatever its result (`success` or a reason).
async fn reconciles_finished(operator: &Operator) -> u64 {
    operator
        .metrics()
        .await
        .lines()
        .filter(|l| l.starts_with("bucketwire_reconciles_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Waits until the operator has finished `more` reconciles after the current count.
async fn wait_reconciles(operator: &Operator, more: u64) {
    let start = reconciles_finished(operator).await;
    wait_for(
        &format!("{more} more reconciles"),
        Duration::from_secs(60),
        || async { (reconciles_finished(operator).await >= start + more).then_some(()) },
    )
    .await;
}

async fn status(client: &kube::Client, ns: &str, name: &str) -> BucketIntegrationStatus {
    Api::<BucketIntegration>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .expect("integration reads")
        .status
        .expect("status")
}

async fn delete(client: &kube::Client, ns: &str, name: &str) {
    let api: Api<BucketIntegration> = Api::namespaced(client.clone(), ns);
    api.delete(name, &DeleteParams::default())
        .await
        .expect("delete accepted");
    wait_for(&format!("{name} to be gone"), Duration::from_secs(60), || async {
        api.get_opt(name).await.ok()?.is_none().then_some(())
    })
    .await;
}

async fn bucket_exists(s3: &aws_sdk_s3::Client, bucket: &str) -> bool {
    s3.head_bucket().bucket(bucket).send().await.is_ok()
}

fn role_name(status: &BucketIntegrationStatus) -> String {
    let arn = status.role_arn.clone().expect("roleArn recorded");
    arn.rsplit('/').next().expect("role name").to_string()
}

/// Item 1: a `create: true` integration naming an existing bucket without tags gets
/// BucketOwnedElsewhere on every reconcile and never writes to it, even with deletionPolicy
/// Delete and after the bucket name is recorded in status.
#[tokio::test]
async fn an_untagged_bucket_is_never_taken_over() {
    let (bed, client, ns) = setup("untagged").await;
    let s3 = aws::s3(&bed, "us-east-2").await;
    let bucket = unique_bucket(&ns, "theirs");
    aws::create_bucket(&s3, &bucket, "us-east-2").await;
    aws::put_object(&s3, &bucket, "files/theirs", "their data").await;
    let writes_before = bucket_writes(&bed, &bucket).len();

    let operator = Operator::start(&bed, &ns, &[]);
    create(
        &client,
        &ns,
        "grab",
        json!({"region": "us-east-2", "bucket": {"name": bucket, "deletionPolicy": "Delete"}}),
    )
    .await;
    let bi = wait_condition(
        &client,
        &ns,
        "grab",
        "BucketReady",
        "False",
        Some("BucketOwnedElsewhere"),
        &operator,
    )
    .await;
    assert_eq!(
        bi.status
            .as_ref()
            .and_then(|s| s.bucket.as_ref())
            .and_then(|b| b.name.clone()),
        Some(bucket.clone()),
        "the name is recorded"
    );
    // The name is now recorded in status: later reconciles must still not take the bucket.
    wait_reconciles(&operator, 4).await;
    let reconciles = reconciles_finished(&operator).await;
    let bi = wait_condition(
        &client,
        &ns,
        "grab",
        "Ready",
        "False",
        Some("BucketOwnedElsewhere"),
        &operator,
    )
    .await;
    assert!(
        condition(&bi, "Ready")
            .expect("ready")
            .message
            .contains("without bucketwire tags"),
        "{:?}",
        condition(&bi, "Ready")
    );
    let writes = bucket_writes(&bed, &bucket);
    assert_eq!(
        writes.len(),
        writes_before,
        "no write to a bucket the integration did not create: {:?}",
        &writes[writes_before..]
    );

    // Deleting it (deletionPolicy Delete) keeps the bucket, its data, and writes nothing.
    delete(&client, &ns, "grab").await;
    assert!(bucket_exists(&s3, &bucket).await, "the bucket is kept");
    assert_eq!(
        aws::get_object(&s3, &bucket, "files/theirs").await.as_deref(),
        Some("their data")
    );
    let writes_after = bucket_writes(&bed, &bucket).len();
    assert_eq!(writes_after, writes_before, "deletion wrote nothing to it");
    record(
        "ownership-untagged-bucket",
        &json!({
            "reconcilesObserved": reconciles,
            "writesToTheBucketByTheOperator": writes_after - writes_before,
            "bucketKeptAfterDeletionWithDeletePolicy": true,
        }),
    );
}

/// Item 2: recorded identity (bucket, role and policy ARNs, external ID) survives a failed
/// reconcile and every settings change (--bucket-prefix, --cluster-name, --role-path) under a
/// Ready integration; there is never a second bucket, role or policy, and deletion under the
/// changed settings leaves none behind.
#[tokio::test]
async fn recorded_identity_survives_failures_and_settings_changes() {
    let (bed, client, ns) = setup("identity").await;
    let s3 = aws::s3(&bed, "us-east-2").await;
    let iam = aws::iam(&bed, "us-east-2").await;
    const TRUSTED: [&str; 2] = ["--allowed-trusted-accounts", "999988887777"];
    let mut operator = Operator::start(&bed, &ns, &TRUSTED);
    create(&client, &ns, "irsa", json!({"region": "us-east-2"})).await;
    create(
        &client,
        &ns,
        "zilliz",
        json!({"region": "us-east-2", "identity": {"mode": "CrossAccount", "crossAccount": {"trustedAccountId": "999988887777"}}}),
    )
    .await;
    let irsa = ready_status(&client, &ns, "irsa", &operator).await;
    let zilliz = ready_status(&client, &ns, "zilliz", &operator).await;
    let identity = |s: &BucketIntegrationStatus| {
        (
            s.bucket.as_ref().and_then(|b| b.name.clone()),
            s.role_arn.clone(),
            s.policy_arn.clone(),
            s.external_id.clone(),
        )
    };
    let recorded = [("irsa", identity(&irsa)), ("zilliz", identity(&zilliz))];
    assert!(
        zilliz.external_id.is_some(),
        "a generated external ID is recorded"
    );
    let uids: BTreeSet<String> = [&irsa, &zilliz]
        .iter()
        .map(|s| s.integration_id.clone().expect("uid"))
        .collect();
    let one_of_each = |label: &'static str| {
        let (bed, uids, ns) = (&bed, &uids, &ns);
        async move {
            let found = inventory(bed, "us-east-2", ns, uids).await;
            for uid in uids {
                assert_eq!(
                    found.buckets.get(uid).map(Vec::len),
                    Some(1),
                    "{label}: one bucket: {found:?}"
                );
                assert_eq!(
                    found.roles.get(uid).map(Vec::len),
                    Some(1),
                    "{label}: one role: {found:?}"
                );
                assert_eq!(
                    found.policies.get(uid).map(Vec::len),
                    Some(1),
                    "{label}: one policy: {found:?}"
                );
            }
        }
    };
    one_of_each("before").await;

    // A failed reconcile (the bucket now carries another integration's tag) keeps every name.
    let bucket = irsa.bucket.as_ref().and_then(|b| b.name.clone()).expect("bucket");
    let tags = s3
        .get_bucket_tagging()
        .bucket(&bucket)
        .send()
        .await
        .expect("tags");
    let original: Vec<(String, String)> = tags
        .tag_set()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    aws::tag_bucket(&s3, &bucket, &[("bucketwire.io/uid", "someone-else")]).await;
    wait_condition(
        &client,
        &ns,
        "irsa",
        "Ready",
        "False",
        Some("BucketOwnedElsewhere"),
        &operator,
    )
    .await;
    assert_eq!(
        identity(&status(&client, &ns, "irsa").await),
        recorded[0].1,
        "a bucket failure keeps the names"
    );
    let original: Vec<(&str, &str)> = original.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    aws::tag_bucket(&s3, &bucket, &original).await;
    ready_status(&client, &ns, "irsa", &operator).await;

    // --bucket-prefix: the recorded buckets do not match it. A clear condition, no AWS write,
    // and every recorded name stays.
    operator.kill();
    let requests_before = common::aws::emulator_requests(&bed).len();
    operator = Operator::start(&bed, &ns, &["--bucket-prefix", "acme-", TRUSTED[0], TRUSTED[1]]);
    for (name, _) in &recorded {
        let bi = wait_condition(
            &client,
            &ns,
            name,
            "Ready",
            "False",
            Some("SettingConflict"),
            &operator,
        )
        .await;
        assert!(condition(&bi, "Ready").expect("ready").message.contains("acme-"));
    }
    wait_reconciles(&operator, 4).await;
    for (name, before) in &recorded {
        let now = status(&client, &ns, name).await;
        assert_eq!(
            &identity(&now),
            before,
            "{name}: the conflict keeps every recorded name"
        );
    }
    let writes_during_conflict: Vec<_> = common::aws::emulator_requests(&bed)[requests_before..]
        .iter()
        .filter(|r| {
            r.is_write()
                && recorded.iter().any(|(_, (b, role, policy, _))| {
                    b.as_deref().is_some_and(|b| r.is_for_bucket(b))
                        || role
                            .as_deref()
                            .is_some_and(|a| a.ends_with(&format!("/{}", r.target)) && !r.target.is_empty())
                        || policy.as_deref() == Some(r.target.as_str())
                })
        })
        .cloned()
        .collect();
    assert!(
        writes_during_conflict.is_empty(),
        "no AWS write while settings conflict: {writes_during_conflict:?}"
    );

    // --cluster-name (with the issuer given, as the new name has no EKS cluster): the same
    // bucket, role and policy, Ready again.
    operator.kill();
    let issuer = bed.var("BUCKETWIRE_TESTBED_OIDC_ISSUER").to_string();
    operator = Operator::start(
        &bed,
        &ns,
        &[
            "--cluster-name",
            "renamed-cluster",
            "--oidc-issuer",
            &issuer,
            TRUSTED[0],
            TRUSTED[1],
        ],
    );
    for (name, before) in &recorded {
        let now = ready_status(&client, &ns, name, &operator).await;
        assert_eq!(
            &identity(&now),
            before,
            "{name}: a new cluster name keeps the recorded names"
        );
    }
    one_of_each("after --cluster-name").await;

    // --role-path: the role and policy keep their recorded path, and Ready says so.
    operator.kill();
    operator = Operator::start(&bed, &ns, &["--role-path", "/moved/", TRUSTED[0], TRUSTED[1]]);
    for (name, before) in &recorded {
        // Awaited on the message: the status the previous operator wrote is Ready too.
        let bi = wait_for(
            &format!("{name}: Ready naming /moved/"),
            Duration::from_secs(60),
            || async {
                let bi = Api::<BucketIntegration>::namespaced(client.clone(), &ns)
                    .get(name)
                    .await
                    .ok()?;
                let ready = condition(&bi, "Ready")?;
                (ready.status == "True" && ready.message.contains("/moved/")).then_some(bi)
            },
        )
        .await;
        let now = bi.status.clone().expect("status");
        assert_eq!(
            &identity(&now),
            before,
            "{name}: a new role path keeps the recorded names"
        );
    }
    one_of_each("after --role-path").await;

    // Deleted under the changed settings: nothing is left behind (no leaked role or policy).
    let irsa_role = role_name(&irsa);
    delete(&client, &ns, "irsa").await;
    delete(&client, &ns, "zilliz").await;
    let found = inventory(&bed, "us-east-2", &ns, &uids).await;
    assert!(
        found.roles.is_empty() && found.policies.is_empty(),
        "no role or policy leaked: {found:?}"
    );
    assert!(
        iam.get_role().role_name(&irsa_role).send().await.is_err(),
        "the role is gone"
    );
    drop(operator); // it ran the deletions above
    record(
        "ownership-recorded-identity",
        &json!({
            "settingsChanged": ["--bucket-prefix", "--cluster-name", "--role-path"],
            "integrations": 2,
            "awsWritesWhileSettingConflicts": writes_during_conflict.len(),
            "bucketsRolesPoliciesPerIntegrationAfterEachChange": 1,
            "rolesAndPoliciesLeftAfterDeletion": found.roles.len() + found.policies.len(),
        }),
    );
}

/// Item 3: adoption is recorded (status and a bucket tag); flipping bucket.create to true is
/// refused at admission, and, were it to get through (a CRD without the rule), by the operator
/// before any write; deleting the integration never deletes the adopted bucket.
#[tokio::test]
async fn an_adopted_bucket_is_never_managed_or_deleted() {
    let (bed, client, ns) = setup("adopted").await;
    let s3 = aws::s3(&bed, "us-east-2").await;
    let bucket = unique_bucket(&ns, "legacy");
    aws::create_bucket(&s3, &bucket, "us-east-2").await;
    aws::put_object(&s3, &bucket, "files/legacy", "kept").await;
    let operator = Operator::start(&bed, &ns, &["--adopt-buckets", &bucket]);
    create(
        &client,
        &ns,
        "legacy",
        json!({"region": "us-east-2", "bucket": {"name": bucket, "create": false, "deletionPolicy": "Delete"}}),
    )
    .await;
    let ready = ready_status(&client, &ns, "legacy", &operator).await;
    assert_eq!(
        ready.bucket.as_ref().and_then(|b| b.adopted),
        Some(true),
        "adoption is recorded"
    );
    let tags = s3
        .get_bucket_tagging()
        .bucket(&bucket)
        .send()
        .await
        .expect("tags");
    assert!(
        tags.tag_set()
            .iter()
            .any(|t| t.key() == "bucketwire.io/adopted" && t.value() == "true"),
        "the bucket says it was adopted"
    );

    let api: Api<BucketIntegration> = Api::namespaced(client.clone(), &ns);
    let flip = json!({"spec": {"bucket": {"create": true}}});
    let refused = api
        .patch("legacy", &PatchParams::default(), &Patch::Merge(&flip))
        .await
        .expect_err("admission refuses create: true on an adopted bucket");
    assert!(format!("{refused}").contains("adopted"), "{refused}");

    // Without the record in status (as with a CRD that lacks the rule), the flip is admitted;
    // the operator still refuses it before writing anything to the bucket.
    api.patch_status(
        "legacy",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"bucket": {"adopted": null}}})),
    )
    .await
    .expect("status edited");
    let writes_before = bucket_writes(&bed, &bucket).len();
    api.patch("legacy", &PatchParams::default(), &Patch::Merge(&flip))
        .await
        .expect("admitted without the record");
    let bi = wait_condition(
        &client,
        &ns,
        "legacy",
        "BucketReady",
        "False",
        Some("InvalidSpec"),
        &operator,
    )
    .await;
    assert!(
        condition(&bi, "BucketReady")
            .expect("bucket")
            .message
            .contains("adopted")
    );
    wait_reconciles(&operator, 3).await;
    let writes_after_flip = bucket_writes(&bed, &bucket).len() - writes_before;
    assert_eq!(writes_after_flip, 0, "no write to the adopted bucket");

    // Empty the bucket: deletionPolicy Delete still never deletes an adopted bucket.
    s3.delete_object()
        .bucket(&bucket)
        .key("files/legacy")
        .send()
        .await
        .expect("emptied");
    delete(&client, &ns, "legacy").await;
    assert!(bucket_exists(&s3, &bucket).await, "the adopted bucket is kept");
    record(
        "ownership-adoption",
        &json!({
            "flipRefusedAtAdmission": true,
            "writesToTheAdoptedBucketAfterTheFlip": writes_after_flip,
            "emptyAdoptedBucketKeptWithDeletePolicy": true,
        }),
    );
}

async fn annotation(client: &kube::Client, ns: &str, name: &str) -> Option<String> {
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .expect("ServiceAccount reads")
        .and_then(|sa| sa.annotations().get(ROLE_ARN_ANNOTATION).cloned())
}

/// Item 4: two integrations in one namespace naming the same ServiceAccount: the first owns
/// the annotation, the second is ServiceAccountOwnedElsewhere and never flips it; a value set
/// by another field manager (a GitOps tool) is a condition, not a flip war; deleting the second
/// leaves the first's wiring intact.
#[tokio::test]
async fn one_service_account_serves_one_integration() {
    let (bed, client, ns) = setup("shared-sa").await;
    let operator = Operator::start(&bed, &ns, &[]);
    create(
        &client,
        &ns,
        "first",
        json!({"region": "us-east-2", "serviceAccount": {"name": "milvus"}}),
    )
    .await;
    let first = ready_status(&client, &ns, "first", &operator).await;
    let first_role = first.role_arn.clone().expect("role");
    create(
        &client,
        &ns,
        "second",
        json!({"region": "us-east-2", "serviceAccount": {"name": "milvus"}}),
    )
    .await;
    let bi = wait_condition(
        &client,
        &ns,
        "second",
        "Ready",
        "False",
        Some("ServiceAccountOwnedElsewhere"),
        &operator,
    )
    .await;
    assert!(
        condition(&bi, "ServiceAccountReady")
            .expect("sa")
            .message
            .contains("bucketwire/first")
    );

    // Over several resyncs of both, the annotation never moves.
    let mut seen = BTreeSet::new();
    let start = reconciles_finished(&operator).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while reconciles_finished(&operator).await < start + 6 {
        assert!(
            std::time::Instant::now() < deadline,
            "6 more reconciles within 60s"
        );
        seen.insert(annotation(&client, &ns, "milvus").await);
        tokio::time::sleep(Duration::from_millis(100)).await; // the polling interval
    }
    assert_eq!(
        seen,
        BTreeSet::from([Some(first_role.clone())]),
        "the annotation never flipped"
    );
    assert_eq!(
        condition(
            &Api::<BucketIntegration>::namespaced(client.clone(), &ns)
                .get("first")
                .await
                .expect("first"),
            "Ready"
        )
        .expect("ready")
        .status,
        "True"
    );

    // Deleting the second leaves the first's wiring intact.
    delete(&client, &ns, "second").await;
    assert_eq!(annotation(&client, &ns, "milvus").await, Some(first_role.clone()));
    wait_reconciles(&operator, 2).await;
    ready_status(&client, &ns, "first", &operator).await;

    // A GitOps tool takes the annotation (its own field manager, with force): the operator
    // reports it and does not fight back.
    let sa_api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let theirs = "arn:aws:iam::123456789012:role/gitops-chosen";
    sa_api
        .patch(
            "milvus",
            &PatchParams::apply("flux").force(),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": "milvus", "namespace": ns, "annotations": {ROLE_ARN_ANNOTATION: theirs}},
            })),
        )
        .await
        .expect("the GitOps tool applies");
    let bi = wait_condition(
        &client,
        &ns,
        "first",
        "ServiceAccountReady",
        "False",
        Some("ServiceAccountOwnedElsewhere"),
        &operator,
    )
    .await;
    assert!(
        condition(&bi, "ServiceAccountReady")
            .expect("sa")
            .message
            .contains("flux")
    );
    wait_reconciles(&operator, 3).await;
    assert_eq!(
        annotation(&client, &ns, "milvus").await.as_deref(),
        Some(theirs),
        "no flip war"
    );
    record(
        "ownership-service-account",
        &json!({
            "integrationsNamingOneServiceAccount": 2,
            "distinctAnnotationValuesSeenOverSixReconciles": seen.len(),
            "secondIntegrationReason": "ServiceAccountOwnedElsewhere",
            "gitOpsValueKept": true,
        }),
    );
}

async fn boundary_of(iam: &aws_sdk_iam::Client, role: &str) -> Option<String> {
    iam.get_role()
        .role_name(role)
        .send()
        .await
        .expect("role")
        .role()
        .and_then(|r| r.permissions_boundary())
        .and_then(|b| b.permissions_boundary_arn())
        .map(str::to_string)
}

async fn inline_policies(iam: &aws_sdk_iam::Client, role: &str) -> Vec<String> {
    iam.list_role_policies()
        .role_name(role)
        .send()
        .await
        .expect("inline policies")
        .policy_names()
        .to_vec()
}

async fn put_inline(iam: &aws_sdk_iam::Client, role: &str) {
    let wide = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::other-bucket/*"}]});
    iam.put_role_policy()
        .role_name(role)
        .policy_name("added-by-hand")
        .policy_document(wide.to_string())
        .send()
        .await
        .expect("inline policy added out of band");
}

async fn managed_policy(iam: &aws_sdk_iam::Client, name: &str) -> String {
    let doc = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::x"}]});
    iam.create_policy()
        .policy_name(name)
        .policy_document(doc.to_string())
        .send()
        .await
        .expect("policy")
        .policy()
        .and_then(|p| p.arn())
        .expect("arn")
        .to_string()
}

/// Item 8: with no boundary configured, a boundary someone else set stays (only the one
/// bucketwire set is ever asked to go); an inline policy added to the role is drift, removed, and
/// never blocks deleting the role. Under the operator's published policy the boundary bucketwire
/// set cannot be removed either: the policy grants no iam:DeleteRolePermissionsBoundary, and the
/// refusal names that action (issue 14).
#[tokio::test]
async fn only_our_boundary_is_removed_and_inline_policies_never_block_deletion() {
    let (bed, client, ns) = setup("boundary").await;
    let iam = aws::iam(&bed, "us-east-2").await;
    let theirs = managed_policy(&iam, &format!("{ns}-their-boundary")).await;
    // Ours: the test bed's boundary, the one the operator's policy lets it create roles with.
    let ours = bed.var("BUCKETWIRE_TESTBED_PERMISSIONS_BOUNDARY").to_string();
    let testbed = aws::Identity::testbed(&bed);
    let mut operator = Operator::start(&bed, &ns, &[]);
    create(&client, &ns, "bounded", json!({"region": "us-east-2"})).await;
    let role = role_name(&ready_status(&client, &ns, "bounded", &operator).await);
    assert_eq!(boundary_of(&iam, &role).await.as_deref(), Some(ours.as_str()));

    // Without a boundary configured, someone else sets theirs and adds an inline policy.
    operator.kill();
    iam.put_role_permissions_boundary()
        .role_name(&role)
        .permissions_boundary(&theirs)
        .send()
        .await
        .expect("boundary set out of band");
    put_inline(&iam, &role).await;
    operator = Operator::start_as(&bed, &ns, &[], &[], &testbed.clone().without_boundary());
    wait_for(
        "the inline policy to be removed",
        Duration::from_secs(60),
        || async { inline_policies(&iam, &role).await.is_empty().then_some(()) },
    )
    .await;
    wait_reconciles(&operator, 3).await;
    assert_eq!(
        boundary_of(&iam, &role).await.as_deref(),
        Some(theirs.as_str()),
        "their boundary stays"
    );
    let boundary_deletes = common::aws::emulator_requests(&bed)
        .into_iter()
        .filter(|r| r.action == "DeleteRolePermissionsBoundary" && r.target == role)
        .count();
    assert_eq!(
        boundary_deletes, 0,
        "never asked to remove a boundary it did not set"
    );
    let events = common::integration::events(&client, &ns, "bounded").await;
    assert!(
        events
            .iter()
            .any(|(reason, message)| reason == "DriftCorrected" && message.contains("added-by-hand")),
        "the removal is an Event: {events:?}"
    );

    // The operator's own boundary replaces theirs when configured...
    operator.kill();
    operator = Operator::start(&bed, &ns, &[]);
    wait_for("our boundary on the role", Duration::from_secs(60), || async {
        (boundary_of(&iam, &role).await.as_deref() == Some(ours.as_str())).then_some(())
    })
    .await;
    wait_for("our boundary recorded", Duration::from_secs(60), || async {
        let recorded = status(&client, &ns, "bounded").await.permissions_boundary_arn;
        (recorded.as_deref() == Some(ours.as_str())).then_some(())
    })
    .await;
    // ...and is the one it asks to remove when the setting goes away, which its policy refuses:
    // the boundary is the ceiling of every role it creates, and stays.
    operator.kill();
    operator = Operator::start_as(&bed, &ns, &[], &[], &testbed.clone().without_boundary());
    let refused = wait_condition(
        &client,
        &ns,
        "bounded",
        "RoleReady",
        "False",
        Some("AccessDenied"),
        &operator,
    )
    .await;
    let message = condition(&refused, "RoleReady").expect("role").message;
    assert!(
        message.starts_with("AccessDenied: iam:DeleteRolePermissionsBoundary on arn:aws:iam::")
            && message.contains(&format!("role/bucketwire/{role} (DeleteRolePermissionsBoundary)")),
        "{message}"
    );
    assert_eq!(
        boundary_of(&iam, &role).await.as_deref(),
        Some(ours.as_str()),
        "the boundary stays"
    );
    operator.kill();
    operator = Operator::start(&bed, &ns, &[]);
    ready_status(&client, &ns, "bounded", &operator).await;

    // An inline policy added while the integration is being deleted does not block DeleteRole.
    operator.kill();
    let api: Api<BucketIntegration> = Api::namespaced(client.clone(), &ns);
    api.delete("bounded", &DeleteParams::default())
        .await
        .expect("delete accepted");
    put_inline(&iam, &role).await;
    let operator = Operator::start(&bed, &ns, &[]);
    wait_for("the integration to be gone", Duration::from_secs(60), || async {
        api.get_opt("bounded").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(
        iam.get_role().role_name(&role).send().await.is_err(),
        "the role is deleted"
    );
    drop(operator);
    record(
        "ownership-boundary-inline",
        &json!({
            "foreignBoundaryKeptOverReconciles": 3,
            "deleteRolePermissionsBoundaryRequestsForAForeignBoundary": boundary_deletes,
            "ownBoundaryRemovalRefusedByTheOperatorPolicy": message,
            "inlinePolicyRemovedAsDrift": true,
            "roleDeletedDespiteAnInlinePolicy": true,
        }),
    );
}
