//! The controller over an integration's life on the test bed: drift repair, clear failures,
//! adoption, deletion that never loses data, and crash safety.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use bucketwire::api::BucketIntegration;
use bucketwire::documents::{canonical, parse_document};
use common::aws::{get_object, put_object, unique_bucket};
use common::integration::{condition, create, events, ready_status, wait_condition, wait_ready};
use common::operator::{AwsProxy, Operator};
use common::{aws, setup, wait_for};

async fn create_bucket(s3: &aws_sdk_s3::Client, name: &str, region: &str, tags: &[(&str, &str)]) {
    aws::create_bucket(s3, name, region).await;
    if !tags.is_empty() {
        aws::tag_bucket(s3, name, tags).await;
    }
}

async fn bucket_tags(s3: &aws_sdk_s3::Client, bucket: &str) -> BTreeMap<String, String> {
    s3.get_bucket_tagging()
        .bucket(bucket)
        .send()
        .await
        .map(|o| {
            o.tag_set()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn out_of_band_changes_are_repaired_on_the_next_resync() {
    let (bed, client, ns) = setup("drift").await;
    let operator = Operator::start(&bed, &ns, &[]);
    create(&client, &ns, "drift", json!({"region": "us-east-2"})).await;
    let status = ready_status(&client, &ns, "drift", &operator).await;
    let policy_arn = status.policy_arn.expect("policy");
    let role_arn = status.role_arn.expect("role");
    let role_name = role_arn.rsplit('/').next().expect("name").to_string();
    let bucket = status.bucket.and_then(|b| b.name).expect("bucket");
    let iam = aws::iam(&bed, "us-east-1").await;
    let s3 = aws::s3(&bed, "us-east-2").await;
    let expected_policy = parse_document(
        iam.get_policy_version()
            .policy_arn(&policy_arn)
            .version_id("v1")
            .send()
            .await
            .expect("v1")
            .policy_version()
            .and_then(|v| v.document())
            .expect("doc"),
    )
    .expect("json");
    let expected_trust = parse_document(
        iam.get_role()
            .role_name(&role_name)
            .send()
            .await
            .expect("role")
            .role
            .expect("role")
            .assume_role_policy_document()
            .expect("trust"),
    )
    .expect("json");

    // Four changes out of band, as a hurried human or another tool would make them.
    let narrowed = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": format!("arn:aws:s3:::{bucket}/*")}]});
    iam.create_policy_version()
        .policy_arn(&policy_arn)
        .policy_document(narrowed.to_string())
        .set_as_default(true)
        .send()
        .await
        .expect("policy changed");
    let mut other_trust = expected_trust.clone();
    let sub_key = other_trust["Statement"][0]["Condition"]["StringEquals"]
        .as_object()
        .and_then(|m| m.keys().find(|k| k.ends_with(":sub")).cloned())
        .expect("sub condition");
    other_trust["Statement"][0]["Condition"]["StringEquals"][&sub_key] =
        json!(format!("system:serviceaccount:{ns}:intruder"));
    iam.update_assume_role_policy()
        .role_name(&role_name)
        .policy_document(other_trust.to_string())
        .send()
        .await
        .expect("trust changed");
    iam.detach_role_policy()
        .role_name(&role_name)
        .policy_arn(&policy_arn)
        .send()
        .await
        .expect("detached");
    s3.delete_bucket_policy()
        .bucket(&bucket)
        .send()
        .await
        .expect("bucket policy deleted");
    let sa_api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    sa_api
        .patch(
            "drift",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"eks.amazonaws.com/role-arn": null}}})),
        )
        .await
        .expect("annotation removed");

    wait_for("every drift to be repaired", Duration::from_secs(30), || async {
        let policy = iam
            .get_policy()
            .policy_arn(&policy_arn)
            .send()
            .await
            .ok()?
            .policy?;
        let doc = iam
            .get_policy_version()
            .policy_arn(&policy_arn)
            .version_id(policy.default_version_id()?)
            .send()
            .await
            .ok()?
            .policy_version()?
            .document()
            .and_then(parse_document)?;
        let role = iam.get_role().role_name(&role_name).send().await.ok()?.role?;
        let trust = parse_document(role.assume_role_policy_document()?)?;
        let attached = iam
            .list_attached_role_policies()
            .role_name(&role_name)
            .send()
            .await
            .ok()?;
        let attached_ok = attached
            .attached_policies()
            .iter()
            .any(|p| p.policy_arn() == Some(policy_arn.as_str()));
        let bucket_policy_ok = s3.get_bucket_policy().bucket(&bucket).send().await.is_ok();
        let sa = sa_api.get("drift").await.ok()?;
        let annotated = sa.annotations().get("eks.amazonaws.com/role-arn") == Some(&role_arn);
        (canonical(&doc) == canonical(&expected_policy)
            && canonical(&trust) == canonical(&expected_trust)
            && attached_ok
            && bucket_policy_ok
            && annotated)
            .then_some(())
    })
    .await;
    // Events are recorded right after the repairs' status write: give them a moment.
    wait_for(
        "one DriftCorrected Event per repaired step",
        Duration::from_secs(15),
        || async {
            let drift = events(&client, &ns, "drift")
                .await
                .into_iter()
                .filter(|(r, _)| r == "DriftCorrected")
                .count();
            (drift >= 3).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn failures_are_reported_in_status_with_precise_reasons() {
    let (bed, client, ns) = setup("fail").await;
    // The cluster and issuer overrides below are allowed (TrustNotAllowed is tests/allow_lists.rs'),
    // and the operator's policy names the allowed cluster, as the README says to extend it.
    let cluster_arn = format!(
        "arn:aws:eks:{}:{}:cluster/no-such-cluster",
        bed.var("AWS_REGION"),
        bed.var("BUCKETWIRE_TESTBED_ACCOUNT_ID")
    );
    let policy = aws::testbed_policy_extended(&bed, "FindTheClusterIssuer", &[cluster_arn]);
    let identity = aws::operator_identity_with_policy(&bed, bed.var("AWS_REGION"), &policy).await;
    let operator = Operator::start_as(
        &bed,
        &ns,
        &[
            "--allowed-eks-clusters",
            "no-such-cluster",
            "--allowed-oidc-issuers",
            "https://oidc.eks.us-east-2.amazonaws.com/id/NOPROVIDER",
        ],
        &[],
        &identity,
    );
    let west = aws::s3(&bed, "us-west-2").await;
    let east = aws::s3(&bed, "us-east-2").await;

    // A bucket in another region.
    let west_bucket = unique_bucket(&ns, "west");
    create_bucket(&west, &west_bucket, "us-west-2", &[]).await;
    create(
        &client,
        &ns,
        "region",
        json!({"region": "us-east-2", "bucket": {"name": west_bucket, "create": false}}),
    )
    .await;
    let bi = wait_condition(
        &client,
        &ns,
        "region",
        "Ready",
        "False",
        Some("BucketRegionMismatch"),
        &operator,
    )
    .await;
    assert_eq!(
        condition(&bi, "Ready").expect("ready").message,
        "bucket region not match, want[us-east-2] got[us-west-2]"
    );
    assert_eq!(
        condition(&bi, "BucketReady").expect("bucket").reason,
        "BucketRegionMismatch"
    );

    // A bucket owned by something else.
    let foreign = unique_bucket(&ns, "foreign");
    create_bucket(
        &east,
        &foreign,
        "us-east-2",
        &[("bucketwire.io/uid", "someone-else")],
    )
    .await;
    create(
        &client,
        &ns,
        "foreign",
        json!({"region": "us-east-2", "bucket": {"name": foreign}}),
    )
    .await;
    let bi = wait_condition(
        &client,
        &ns,
        "foreign",
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
            .contains("someone-else")
    );
    assert_eq!(
        bucket_tags(&east, &foreign)
            .await
            .get("bucketwire.io/uid")
            .map(String::as_str),
        Some("someone-else")
    );

    // An EKS cluster that does not exist.
    create(
        &client,
        &ns,
        "nocluster",
        json!({"region": "us-east-2", "identity": {"eksClusterName": "no-such-cluster"}}),
    )
    .await;
    let bi = wait_condition(
        &client,
        &ns,
        "nocluster",
        "Ready",
        "False",
        Some("ClusterNotFound"),
        &operator,
    )
    .await;
    assert!(
        condition(&bi, "RoleReady")
            .expect("role")
            .message
            .contains("no-such-cluster")
    );

    // An OIDC issuer without an IAM OIDC provider: the message says how to fix it.
    create(
        &client,
        &ns,
        "noprovider",
        json!({"region": "us-east-2", "identity": {"oidcIssuer": "https://oidc.eks.us-east-2.amazonaws.com/id/NOPROVIDER"}}),
    )
    .await;
    let bi = wait_condition(
        &client,
        &ns,
        "noprovider",
        "Ready",
        "False",
        Some("OIDCProviderNotFound"),
        &operator,
    )
    .await;
    let message = condition(&bi, "RoleReady").expect("role").message;
    assert!(
        message.contains("oidc-provider/oidc.eks.us-east-2.amazonaws.com/id/NOPROVIDER"),
        "{message}"
    );
    assert!(
        message.contains("eksctl utils associate-iam-oidc-provider"),
        "{message}"
    );
    // The Warning is published after the status write the condition came in: wait for it.
    let warnings: Vec<String> = wait_for(
        "the OIDCProviderNotFound Warning",
        Duration::from_secs(30),
        || async {
            let reasons: Vec<String> = events(&client, &ns, "noprovider")
                .await
                .into_iter()
                .map(|(r, _)| r)
                .collect();
            reasons
                .iter()
                .any(|r| r == "OIDCProviderNotFound")
                .then_some(reasons)
        },
    )
    .await;
    assert!(
        warnings.contains(&"OIDCProviderNotFound".to_string()),
        "{warnings:?}"
    );
}

#[tokio::test]
async fn an_invalid_spec_makes_no_aws_call() {
    let (bed, client, ns) = setup("invalid").await;
    let operator = Operator::start(&bed, &ns, &["--bucket-prefix", "acme-"]);
    create(
        &client,
        &ns,
        "outside",
        json!({"region": "us-east-2", "bucket": {"name": "not-acme-bucket"}}),
    )
    .await;
    let bi = wait_condition(
        &client,
        &ns,
        "outside",
        "Ready",
        "False",
        Some("InvalidSpec"),
        &operator,
    )
    .await;
    assert!(condition(&bi, "Ready").expect("ready").message.contains("acme-"));
    assert_eq!(
        operator.total_aws_calls().await,
        0,
        "{:?}",
        operator.aws_calls().await
    );
}

#[tokio::test]
async fn untagged_buckets_are_adopted_only_when_the_operator_allows_it() {
    let (bed, client, ns) = setup("adopt").await;
    let s3 = aws::s3(&bed, "us-east-2").await;
    let legacy = unique_bucket(&ns, "legacy");
    create_bucket(&s3, &legacy, "us-east-2", &[("owner", "data-team")]).await;
    put_object(&s3, &legacy, "files/existing", "precious").await;

    let mut operator = Operator::start(&bed, &ns, &[]);
    create(
        &client,
        &ns,
        "legacy",
        json!({"region": "us-east-2", "bucket": {"name": legacy, "create": false}}),
    )
    .await;
    let bi = wait_condition(
        &client,
        &ns,
        "legacy",
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
            .contains("allow-list")
    );
    assert!(
        !bucket_tags(&s3, &legacy).await.contains_key("bucketwire.io/uid"),
        "refused means untouched"
    );

    operator.kill();
    let operator = Operator::start(&bed, &ns, &["--adopt-buckets", &format!("{}*", &legacy[..10])]);
    let bi = wait_ready(&client, &ns, "legacy", &operator).await;
    assert_eq!(condition(&bi, "BucketReady").expect("bucket").reason, "Adopted");
    let tags = bucket_tags(&s3, &legacy).await;
    assert_eq!(tags.get("bucketwire.io/uid"), bi.uid().as_ref());
    assert_eq!(
        tags.get("owner").map(String::as_str),
        Some("data-team"),
        "existing tags are kept"
    );
    assert_eq!(
        get_object(&s3, &legacy, "files/existing").await.as_deref(),
        Some("precious")
    );
}

#[tokio::test]
async fn a_bucket_tagged_for_the_integration_is_adopted() {
    let (bed, client, ns) = setup("tagged").await;
    let s3 = aws::s3(&bed, "us-east-2").await;
    let name = unique_bucket(&ns, "pre");
    let operator = Operator::start(&bed, &ns, &[]);
    let bi = create(
        &client,
        &ns,
        "tagged",
        json!({"region": "us-east-2", "bucket": {"name": name, "create": false}}),
    )
    .await;
    wait_condition(
        &client,
        &ns,
        "tagged",
        "Ready",
        "False",
        Some("BucketNotFound"),
        &operator,
    )
    .await;
    let uid = bi.uid().expect("uid");
    create_bucket(&s3, &name, "us-east-2", &[("bucketwire.io/uid", &uid)]).await;
    let bi = wait_ready(&client, &ns, "tagged", &operator).await;
    assert_eq!(condition(&bi, "BucketReady").expect("bucket").reason, "Adopted");
}

async fn delete_and_wait_gone(client: &kube::Client, ns: &str, name: &str) {
    let api: Api<BucketIntegration> = Api::namespaced(client.clone(), ns);
    api.delete(name, &DeleteParams::default())
        .await
        .expect("delete accepted");
    wait_for("the integration to be gone", Duration::from_secs(30), || async {
        api.get_opt(name).await.ok()?.is_none().then_some(())
    })
    .await;
}

#[tokio::test]
async fn deletion_with_retain_keeps_the_bucket_and_every_object() {
    let (bed, client, ns) = setup("retain").await;
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "theirs", "annotations": {"keep": "me"}}}))
            .expect("sa");
    let sa_api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    sa_api.create(&PostParams::default(), &sa).await.expect("sa");
    let operator = Operator::start(&bed, &ns, &[]);
    create(
        &client,
        &ns,
        "kept",
        json!({"region": "us-east-2", "serviceAccount": {"name": "theirs"}}),
    )
    .await;
    create(&client, &ns, "ours", json!({"region": "us-east-2"})).await;
    let kept = ready_status(&client, &ns, "kept", &operator).await;
    wait_ready(&client, &ns, "ours", &operator).await;
    let bucket = kept.bucket.and_then(|b| b.name).expect("bucket");
    let s3 = aws::s3(&bed, "us-east-2").await;
    for i in 0..3 {
        put_object(
            &s3,
            &bucket,
            &format!("files/segment-{i}"),
            &format!("vectors {i}"),
        )
        .await;
    }

    delete_and_wait_gone(&client, &ns, "kept").await;
    for i in 0..3 {
        assert_eq!(
            get_object(&s3, &bucket, &format!("files/segment-{i}")).await,
            Some(format!("vectors {i}"))
        );
    }
    let iam = aws::iam(&bed, "us-east-1").await;
    let role_name = kept
        .role_arn
        .as_deref()
        .and_then(|a| a.rsplit('/').next())
        .expect("role")
        .to_string();
    assert!(
        iam.get_role().role_name(&role_name).send().await.is_err(),
        "role deleted"
    );
    assert!(
        iam.get_policy()
            .policy_arn(kept.policy_arn.as_deref().expect("policy"))
            .send()
            .await
            .is_err(),
        "policy deleted"
    );
    let sa = sa_api.get("theirs").await.expect("their ServiceAccount stays");
    assert!(
        !sa.annotations().contains_key("eks.amazonaws.com/role-arn"),
        "our annotation is removed"
    );
    assert_eq!(sa.annotations().get("keep").map(String::as_str), Some("me"));
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    wait_for(
        "the values ConfigMap to go with its owner",
        Duration::from_secs(30),
        || async {
            cms.get_opt("kept-milvus-values")
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;

    delete_and_wait_gone(&client, &ns, "ours").await;
    assert!(
        sa_api.get_opt("ours").await.expect("get").is_none(),
        "a ServiceAccount we created is deleted"
    );
}

#[tokio::test]
async fn deletion_policy_delete_removes_only_an_empty_bucket() {
    let (bed, client, ns) = setup("delete").await;
    let operator = Operator::start(&bed, &ns, &[]);
    create(
        &client,
        &ns,
        "empty",
        json!({"region": "us-east-2", "bucket": {"deletionPolicy": "Delete"}}),
    )
    .await;
    create(
        &client,
        &ns,
        "full",
        json!({"region": "us-east-2", "bucket": {"deletionPolicy": "Delete"}}),
    )
    .await;
    let empty = wait_ready(&client, &ns, "empty", &operator)
        .await
        .status
        .and_then(|s| s.bucket)
        .and_then(|b| b.name)
        .expect("b");
    let full = wait_ready(&client, &ns, "full", &operator)
        .await
        .status
        .and_then(|s| s.bucket)
        .and_then(|b| b.name)
        .expect("b");
    let s3 = aws::s3(&bed, "us-east-2").await;
    put_object(&s3, &full, "files/data", "do not lose me").await;

    delete_and_wait_gone(&client, &ns, "empty").await;
    assert!(
        s3.head_bucket().bucket(&empty).send().await.is_err(),
        "the empty bucket is deleted"
    );

    let api: Api<BucketIntegration> = Api::namespaced(client.clone(), &ns);
    api.delete("full", &DeleteParams::default())
        .await
        .expect("delete accepted");
    wait_for("a DeletionBlocked Event", Duration::from_secs(30), || async {
        events(&client, &ns, "full")
            .await
            .iter()
            .any(|(r, _)| r == "DeletionBlocked")
            .then_some(())
    })
    .await;
    assert_eq!(
        get_object(&s3, &full, "files/data").await.as_deref(),
        Some("do not lose me")
    );
    assert!(
        api.get_opt("full").await.expect("get").is_some(),
        "the finalizer holds the integration"
    );
}

/// SIGTERM (the Deployment deleted, a node drained) is a shutdown, never a cleanup. A cleanup
/// would show here: it would delete the empty bucket of `empty` (deletionPolicy Delete), the
/// roles and policies, and remove the finalizers and the ServiceAccount annotations; a data
/// loss would show as a missing object in `data`'s bucket. The proxy every AWS request of the
/// operator goes through shows that it wrote nothing to AWS from the SIGTERM on.
#[tokio::test]
async fn sigterm_writes_nothing_to_aws_and_keeps_every_bucket_object_role_and_annotation() {
    let (bed, client, ns) = setup("stop").await;
    let proxy = AwsProxy::start(bed.var("BUCKETWIRE_AWS_ENDPOINT_URL"), &ns, &["--rate", "0"]);
    // No resync during the test: no reconcile is in flight when SIGTERM comes.
    let mut operator = Operator::start_with_env(
        &bed,
        &ns,
        &["--resync-interval", "1h"],
        &[("BUCKETWIRE_AWS_ENDPOINT_URL", proxy.url.as_str())],
    );
    let spec = json!({"region": "us-east-2", "bucket": {"deletionPolicy": "Delete"}});
    create(&client, &ns, "data", spec.clone()).await;
    create(&client, &ns, "empty", spec).await;
    let s3 = aws::s3(&bed, "us-east-2").await;
    let mut statuses = BTreeMap::new();
    for name in ["data", "empty"] {
        statuses.insert(name, ready_status(&client, &ns, name, &operator).await);
    }
    let bucket = |name: &str| {
        statuses[name]
            .bucket
            .as_ref()
            .and_then(|b| b.name.clone())
            .expect("bucket")
    };
    for i in 0..3 {
        put_object(
            &s3,
            &bucket("data"),
            &format!("files/segment-{i}"),
            &format!("vectors {i}"),
        )
        .await;
    }

    let before_sigterm = proxy.requests().len();
    operator.terminate();
    assert!(
        operator.wait_for_exit(Duration::from_secs(20)),
        "the operator exits on SIGTERM"
    );
    assert!(
        operator.log().contains("bucketwire controller stopped"),
        "{}",
        operator.log()
    );
    let after: Vec<_> = proxy.requests().into_iter().skip(before_sigterm).collect();
    let writes: Vec<_> = after.iter().filter(|r| r.is_write()).collect();
    assert!(writes.is_empty(), "AWS writes after SIGTERM: {writes:?}");

    let iam = aws::iam(&bed, "us-east-1").await;
    let api: Api<BucketIntegration> = Api::namespaced(client.clone(), &ns);
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    for name in ["data", "empty"] {
        let status = &statuses[name];
        assert!(
            s3.head_bucket().bucket(bucket(name)).send().await.is_ok(),
            "{name}: the bucket is still there"
        );
        let role_arn = status.role_arn.clone().expect("role");
        let policy_arn = status.policy_arn.clone().expect("policy");
        let role_name = role_arn.rsplit('/').next().expect("role name").to_string();
        let attached = iam
            .list_attached_role_policies()
            .role_name(&role_name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{name}: the role is still there: {e}"));
        assert_eq!(
            attached
                .attached_policies()
                .iter()
                .filter_map(|p| p.policy_arn())
                .collect::<Vec<_>>(),
            [policy_arn.as_str()],
            "{name}: the policy is still attached"
        );
        let bi = api.get(name).await.expect("the integration is still there");
        assert!(
            bi.finalizers().iter().any(|f| f == bucketwire::api::FINALIZER),
            "{name}: the finalizer stays, so a later deletion still cleans up: {:?}",
            bi.finalizers()
        );
        let sa = sas.get(name).await.expect("the ServiceAccount is still there");
        assert_eq!(
            sa.annotations().get("eks.amazonaws.com/role-arn"),
            Some(&role_arn),
            "{name}: the ServiceAccount still names the role"
        );
    }
    for i in 0..3 {
        assert_eq!(
            get_object(&s3, &bucket("data"), &format!("files/segment-{i}")).await,
            Some(format!("vectors {i}")),
            "files/segment-{i}"
        );
    }
}

/// Kills the operator (abort, as kill -9) right after a step, restarts it, and counts what
/// exists: exactly one bucket, one policy and one role for the integration.
async fn crash_case(point: &str) {
    let (bed, client, ns) = setup(&format!("crash-{point}")).await;
    let mut operator = Operator::start_with_env(&bed, &ns, &[], &[("BUCKETWIRE_CRASH_AT", point)]);
    let bi = create(&client, &ns, "crash", json!({"region": "us-east-2"})).await;
    assert!(
        operator.wait_for_exit(Duration::from_secs(30)),
        "the operator crashed at {point}"
    );
    operator.restart_clean(&bed);
    wait_ready(&client, &ns, "crash", &operator).await;
    let uid = bi.uid().expect("uid");
    let found = aws::inventory(&bed, "us-east-2", &ns, &BTreeSet::from([uid.clone()])).await;
    let count = |m: &BTreeMap<String, Vec<String>>| m.get(&uid).map_or(0, Vec::len);
    assert_eq!(
        (count(&found.buckets), count(&found.roles), count(&found.policies)),
        (1, 1, 1),
        "buckets, roles and policies tagged for the integration after a crash at {point}: {found:?}"
    );
}

#[tokio::test]
async fn crash_after_create_bucket_converges_to_one_of_each() {
    crash_case("after-create-bucket").await;
}

#[tokio::test]
async fn crash_after_bucket_converges_to_one_of_each() {
    crash_case("after-bucket").await;
}

#[tokio::test]
async fn crash_after_policy_converges_to_one_of_each() {
    crash_case("after-policy").await;
}

#[tokio::test]
async fn crash_after_role_converges_to_one_of_each() {
    crash_case("after-role").await;
}
