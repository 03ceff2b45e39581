//! `identity.mode: PodIdentity` on the test bed: the role's trust, the pod identity association
//! (made, repaired, replaced when the ServiceAccount changes, deleted on a mode switch and with
//! the integration), the ServiceAccount without an IRSA annotation, and validation as the
//! workload through EKS Auth's AssumeRoleForPodIdentity.
//!
//! EKS's association API and EKS Auth are answered by the test bed's fake
//! (tests/testbed/eks_pod_identity.py): no emulator implements them. The fake keeps the
//! associations, verifies the ServiceAccount token against the test apiserver's keys and decides
//! the role's trust policy with the test bed's IAM policy simulator before handing out the
//! emulator's STS credentials, so "Validated" here means the trust conditions admitted exactly
//! this ServiceAccount and the credentials reached the bucket.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use bucketwire::api::BucketIntegration;
use bucketwire::documents::{ROLE_ARN_ANNOTATION, pod_identity_trust};
use common::aws;
use common::integration::{condition, create, events, ready_status, wait_condition};
use common::operator::Operator;
use common::{TestBed, setup, wait_for};

async fn eks(bed: &TestBed) -> aws_sdk_eks::Client {
    aws_sdk_eks::Client::new(&aws::sdk_config(bed, bed.var("AWS_REGION")).await)
}

fn cluster_arn(bed: &TestBed) -> String {
    format!(
        "arn:aws:eks:{}:{}:cluster/{}",
        bed.var("AWS_REGION"),
        bed.var("BUCKETWIRE_TESTBED_ACCOUNT_ID"),
        bed.var("BUCKETWIRE_CLUSTER_NAME")
    )
}

/// (association id, role ARN, tags) of every association for `ns/sa` in the test bed's cluster.
async fn associations(bed: &TestBed, ns: &str, sa: &str) -> Vec<(String, String, HashMap<String, String>)> {
    let eks = eks(bed).await;
    let cluster = bed.var("BUCKETWIRE_CLUSTER_NAME");
    let listed = eks
        .list_pod_identity_associations()
        .cluster_name(cluster)
        .namespace(ns)
        .service_account(sa)
        .send()
        .await
        .expect("ListPodIdentityAssociations");
    let mut found = vec![];
    for summary in listed.associations() {
        let id = summary.association_id().expect("id").to_string();
        let described = eks
            .describe_pod_identity_association()
            .cluster_name(cluster)
            .association_id(&id)
            .send()
            .await
            .expect("DescribePodIdentityAssociation");
        let a = described.association().expect("association");
        found.push((
            id,
            a.role_arn().unwrap_or_default().to_string(),
            a.tags().cloned().unwrap_or_default(),
        ));
    }
    found
}

async fn annotation(client: &Client, ns: &str, sa: &str) -> Option<String> {
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .get(sa)
        .await
        .expect("ServiceAccount")
        .annotations()
        .get(ROLE_ARN_ANNOTATION)
        .cloned()
}

async fn patch_spec(client: &Client, ns: &str, name: &str, spec: serde_json::Value) {
    Api::<BucketIntegration>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": spec})),
        )
        .await
        .expect("spec patched");
}

/// Waits until Ready is True for the integration's current generation.
async fn ready_again(client: &Client, ns: &str, name: &str, operator: &Operator) -> BucketIntegration {
    let api: Api<BucketIntegration> = Api::namespaced(client.clone(), ns);
    wait_for(
        "Ready for the new generation",
        Duration::from_secs(60),
        || async {
            let bi = api.get(name).await.ok()?;
            let ready = condition(&bi, "Ready")?;
            (ready.status == "True" && ready.observed_generation == bi.metadata.generation).then_some(bi)
        },
    )
    .await;
    wait_condition(client, ns, name, "Ready", "True", None, operator).await
}

#[tokio::test]
async fn a_pod_identity_integration_is_ready_and_validated_through_eks_auth() {
    let (bed, client, ns) = setup("podid").await;
    let operator = Operator::start(&bed, &ns, &[]);
    let mark = aws::request_log_mark(&bed);
    create(
        &client,
        &ns,
        "milvus",
        json!({"region": "us-east-2", "identity": {"mode": "PodIdentity"}}),
    )
    .await;
    let status = ready_status(&client, &ns, "milvus", &operator).await;
    let role_arn = status.role_arn.clone().expect("role");
    let association_arn = status
        .pod_identity_association_arn
        .clone()
        .expect("association recorded");

    // The trust: EKS Pod Identity for exactly this cluster, namespace and ServiceAccount.
    let iam = aws::iam(&bed, "us-east-2").await;
    assert_eq!(
        aws::trust_of(&iam, &role_arn).await,
        pod_identity_trust(&cluster_arn(&bed), &ns, "milvus")
    );
    assert_eq!(status.oidc_provider_arn, None, "no OIDC provider in this mode");

    // One association, ours, binding the ServiceAccount to the role.
    let found = associations(&bed, &ns, "milvus").await;
    assert_eq!(found.len(), 1, "{found:?}");
    let (id, role, tags) = &found[0];
    assert!(association_arn.ends_with(&format!("/{id}")), "{association_arn}");
    assert_eq!(role, &role_arn);
    let bi = Api::<BucketIntegration>::namespaced(client.clone(), &ns)
        .get("milvus")
        .await
        .expect("integration");
    assert_eq!(tags.get("bucketwire.io/uid"), bi.uid().as_ref());
    assert_eq!(
        tags.get("bucketwire.io/managed-by").map(String::as_str),
        Some("bucketwire")
    );

    // The ServiceAccount carries no IRSA annotation (with both, the SDKs use IRSA).
    assert_eq!(annotation(&client, &ns, "milvus").await, None);

    // Validated as the workload: EKS Auth gave the role's credentials, and they reached the bucket.
    let validated = condition(&bi, "Validated").expect("Validated");
    assert_eq!(
        (validated.status.as_str(), validated.reason.as_str()),
        ("True", "Validated")
    );
    assert!(
        validated.message.contains("got Pod Identity credentials for")
            && validated.message.contains(&role_arn),
        "{}",
        validated.message
    );
    let requests = aws::emulator_requests_since(&bed, mark);
    let assumed = requests
        .iter()
        .filter(|r| r.path.ends_with("/assume-role-for-pod-identity") && r.status == 200)
        .count();
    assert!(assumed >= 1, "AssumeRoleForPodIdentity answered");
    let bucket = status.bucket.and_then(|b| b.name).expect("bucket");
    assert!(
        requests.iter().any(|r| r.method == "HEAD"
            && r.is_for_bucket(&bucket)
            && r.decisions
                .iter()
                .any(|d| d.principal == role_arn && d.result == "Allowed")),
        "the probe's HeadBucket was made, and allowed, with the role's session"
    );

    // The Event says Pods must start after the association, and how to restart Milvus.
    let (_, message) = wait_for("the association's Event", Duration::from_secs(15), || async {
        events(&client, &ns, "milvus")
            .await
            .into_iter()
            .find(|(reason, message)| reason == "Created" && message.contains("pod identity association"))
    })
    .await;
    assert!(
        message.contains("rollout restart") && message.contains("Pods that started before it"),
        "{message}"
    );

    // `bucketwire describe` repeats the Milvus version this mode needs.
    let (code, out) = common::run_cli(&bed, &["describe", &format!("{ns}/milvus")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2.6 or later"), "{out}");
    assert!(out.contains(&association_arn), "{out}");

    // `bucketwire validate` validates the same way, from status.
    let (code, out) = common::run_cli(&bed, &["validate", &format!("{ns}/milvus")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("AssumeRoleForPodIdentity"), "{out}");
}

#[tokio::test]
async fn switching_modes_and_service_accounts_moves_the_wiring_and_leaves_nothing_behind() {
    let (bed, client, ns) = setup("podswitch").await;
    let operator = Operator::start(&bed, &ns, &[]);
    create(&client, &ns, "milvus", json!({"region": "us-east-2"})).await;
    let status = ready_status(&client, &ns, "milvus", &operator).await;
    let role_arn = status.role_arn.expect("role");
    assert_eq!(
        annotation(&client, &ns, "milvus").await.as_deref(),
        Some(role_arn.as_str())
    );

    // IRSA -> PodIdentity: the annotation bucketwire set goes, an association comes.
    patch_spec(
        &client,
        &ns,
        "milvus",
        json!({"identity": {"mode": "PodIdentity"}}),
    )
    .await;
    let bi = ready_again(&client, &ns, "milvus", &operator).await;
    assert_eq!(
        annotation(&client, &ns, "milvus").await,
        None,
        "IRSA annotation removed"
    );
    assert_eq!(associations(&bed, &ns, "milvus").await.len(), 1);
    assert_eq!(
        condition(&bi, "Validated").map(|c| (c.status, c.reason)),
        Some(("True".to_string(), "Validated".to_string()))
    );

    // A new ServiceAccount: EKS cannot move an association, so the old one goes and a new one
    // binds the new ServiceAccount.
    patch_spec(
        &client,
        &ns,
        "milvus",
        json!({"serviceAccount": {"name": "milvus-2"}}),
    )
    .await;
    let bi = ready_again(&client, &ns, "milvus", &operator).await;
    assert!(
        associations(&bed, &ns, "milvus").await.is_empty(),
        "old association deleted"
    );
    let moved = associations(&bed, &ns, "milvus-2").await;
    assert_eq!(moved.len(), 1, "{moved:?}");
    let recorded = bi
        .status
        .as_ref()
        .and_then(|s| s.pod_identity_association_arn.clone())
        .expect("recorded");
    assert!(recorded.ends_with(&moved[0].0), "{recorded}");

    // PodIdentity -> IRSA: the association goes, the annotation comes back.
    patch_spec(&client, &ns, "milvus", json!({"identity": {"mode": "IRSA"}})).await;
    let bi = ready_again(&client, &ns, "milvus", &operator).await;
    assert!(
        associations(&bed, &ns, "milvus-2").await.is_empty(),
        "association deleted"
    );
    assert_eq!(
        bi.status
            .as_ref()
            .and_then(|s| s.pod_identity_association_arn.clone()),
        None
    );
    assert_eq!(
        annotation(&client, &ns, "milvus-2").await.as_deref(),
        Some(role_arn.as_str())
    );

    // Back to PodIdentity, then delete: association, role and annotation all go.
    patch_spec(
        &client,
        &ns,
        "milvus",
        json!({"identity": {"mode": "PodIdentity"}}),
    )
    .await;
    ready_again(&client, &ns, "milvus", &operator).await;
    assert_eq!(associations(&bed, &ns, "milvus-2").await.len(), 1);
    Api::<BucketIntegration>::namespaced(client.clone(), &ns)
        .delete("milvus", &DeleteParams::default())
        .await
        .expect("deleted");
    wait_for("the integration to be gone", Duration::from_secs(60), || async {
        Api::<BucketIntegration>::namespaced(client.clone(), &ns)
            .get_opt("milvus")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        associations(&bed, &ns, "milvus-2").await.is_empty(),
        "association deleted with the integration"
    );
    let iam = aws::iam(&bed, "us-east-2").await;
    assert!(
        iam.get_role()
            .role_name(role_arn.rsplit('/').next().expect("name"))
            .send()
            .await
            .is_err(),
        "role deleted"
    );
}

#[tokio::test]
async fn association_drift_is_repaired_and_another_owners_association_or_annotation_is_never_touched() {
    let (bed, client, ns) = setup("poddrift").await;
    let operator = Operator::start(&bed, &ns, &[]);
    create(
        &client,
        &ns,
        "milvus",
        json!({"region": "us-east-2", "identity": {"mode": "PodIdentity"}}),
    )
    .await;
    let status = ready_status(&client, &ns, "milvus", &operator).await;
    let role_arn = status.role_arn.expect("role");
    let cluster = bed.var("BUCKETWIRE_CLUSTER_NAME");
    let eks = eks(&bed).await;
    let (id, _, _) = associations(&bed, &ns, "milvus").await.remove(0);

    // Pointed at another role out of band: bound back to ours (UpdatePodIdentityAssociation).
    let other_role = format!(
        "arn:aws:iam::{}:role/someone-elses",
        bed.var("BUCKETWIRE_TESTBED_ACCOUNT_ID")
    );
    let iam = aws::iam(&bed, "us-east-2").await;
    let _ = iam
        .create_role()
        .role_name("someone-elses")
        .assume_role_policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Principal": {"Service": "pods.eks.amazonaws.com"},
                "Action": ["sts:AssumeRole", "sts:TagSession"]}]})
            .to_string(),
        )
        .send()
        .await;
    eks.update_pod_identity_association()
        .cluster_name(cluster)
        .association_id(&id)
        .role_arn(&other_role)
        .send()
        .await
        .expect("changed out of band");
    wait_for(
        "the association bound to our role again",
        Duration::from_secs(30),
        || async {
            let found = associations(&bed, &ns, "milvus").await;
            (found.len() == 1 && found[0].1 == role_arn).then_some(())
        },
    )
    .await;

    // Deleted out of band: made again.
    eks.delete_pod_identity_association()
        .cluster_name(cluster)
        .association_id(&id)
        .send()
        .await
        .expect("deleted out of band");
    wait_for("a new association", Duration::from_secs(30), || async {
        let found = associations(&bed, &ns, "milvus").await;
        (found.len() == 1 && found[0].0 != id && found[0].1 == role_arn).then_some(())
    })
    .await;

    // Another ServiceAccount already bound by someone else's association: refused, untouched.
    let sa_api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    sa_api
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "taken"}})).expect("sa"),
        )
        .await
        .expect("ServiceAccount");
    let theirs = eks
        .create_pod_identity_association()
        .cluster_name(cluster)
        .namespace(&ns)
        .service_account("taken")
        .role_arn(&other_role)
        .send()
        .await
        .expect("someone else's association")
        .association()
        .and_then(|a| a.association_id().map(str::to_string))
        .expect("id");
    create(
        &client,
        &ns,
        "second",
        json!({"region": "us-east-2", "identity": {"mode": "PodIdentity"}, "serviceAccount": {"name": "taken", "create": false}}),
    )
    .await;
    let bi = wait_condition(
        &client,
        &ns,
        "second",
        "PodIdentityAssociationReady",
        "False",
        Some("OwnedElsewhere"),
        &operator,
    )
    .await;
    let message = condition(&bi, "PodIdentityAssociationReady")
        .expect("condition")
        .message;
    assert!(
        message.contains(&theirs) && message.contains(&other_role),
        "{message}"
    );
    let found = associations(&bed, &ns, "taken").await;
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].0.as_str(), found[0].1.as_str()),
        (theirs.as_str(), other_role.as_str())
    );

    // A ServiceAccount someone annotated for IRSA: Pod Identity would never be used; said, and
    // the annotation kept.
    sa_api
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "irsa-sa",
                "annotations": {ROLE_ARN_ANNOTATION: other_role}}}))
            .expect("sa"),
        )
        .await
        .expect("ServiceAccount");
    create(
        &client,
        &ns,
        "third",
        json!({"region": "us-east-2", "identity": {"mode": "PodIdentity"}, "serviceAccount": {"name": "irsa-sa"}}),
    )
    .await;
    let bi = wait_condition(
        &client,
        &ns,
        "third",
        "ServiceAccountReady",
        "False",
        Some("IRSAAnnotationPresent"),
        &operator,
    )
    .await;
    let message = condition(&bi, "ServiceAccountReady").expect("condition").message;
    assert!(message.contains("the AWS SDKs use IRSA"), "{message}");
    assert_eq!(
        annotation(&client, &ns, "irsa-sa").await.as_deref(),
        Some(other_role.as_str())
    );
    assert!(
        associations(&bed, &ns, "irsa-sa").await.is_empty(),
        "no association made"
    );
}

/// The operator's policy lets it hand a role to EKS Pod Identity (iam:PassRole, which EKS
/// demands of an association's creator) only for roles tagged as bucketwire's: a role under the
/// operator's role path that someone else made cannot be bound to a ServiceAccount through
/// the operator's credentials.
#[tokio::test]
async fn the_operator_passes_only_its_own_tagged_roles_to_pod_identity() {
    let (bed, _client, ns) = setup("podpass").await;
    let iam = aws::iam(&bed, "us-east-2").await;
    let path = bed.var("BUCKETWIRE_TESTBED_ROLE_PATH");
    let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Service": "pods.eks.amazonaws.com"},
        "Action": ["sts:AssumeRole", "sts:TagSession"]}]})
    .to_string();
    let mut roles = vec![];
    for (suffix, tagged) in [("untagged", false), ("ours", true)] {
        let mut request = iam
            .create_role()
            .role_name(format!("{ns}-{suffix}"))
            .path(path)
            .assume_role_policy_document(&trust);
        if tagged {
            request = request.tags(
                aws_sdk_iam::types::Tag::builder()
                    .key("bucketwire.io/managed-by")
                    .value("bucketwire")
                    .build()
                    .expect("tag"),
            );
        }
        let role = request.send().await.expect("role");
        roles.push(role.role().map(|r| r.arn().to_string()).expect("arn"));
    }
    let config = aws::config_as(
        aws::operator_credentials(&bed),
        bed.var("BUCKETWIRE_AWS_ENDPOINT_URL"),
        "us-east-2",
    )
    .await;
    let eks = aws_sdk_eks::Client::new(&config);
    let create = |role: String, sa: &'static str| {
        eks.create_pod_identity_association()
            .cluster_name(bed.var("BUCKETWIRE_CLUSTER_NAME"))
            .namespace(&ns)
            .service_account(sa)
            .role_arn(role)
            .tags("bucketwire.io/managed-by", "bucketwire")
            .send()
    };
    let refused = create(roles[0].clone(), "a")
        .await
        .expect_err("an untagged role passed");
    let message = format!("{:?}", refused.into_service_error());
    assert!(
        message.contains("AccessDenied") && message.contains("iam:PassRole"),
        "{message}"
    );
    let made = create(roles[1].clone(), "b")
        .await
        .expect("our own role is passed");
    let id = made
        .association()
        .and_then(|a| a.association_id())
        .map(str::to_string)
        .expect("id");
    eks.delete_pod_identity_association()
        .cluster_name(bed.var("BUCKETWIRE_CLUSTER_NAME"))
        .association_id(id)
        .send()
        .await
        .expect("the operator deletes its own association");
}
