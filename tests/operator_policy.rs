//! deploy/iam/operator-policy.json, statement by statement (issue 14): every statement is
//! necessary. For each one, an operator runs with a role (created by the administrator, same
//! boundary) carrying the published policy, rendered for the test bed, without that statement,
//! through the scenario that needs it: a create (IRSA), a create of a versioned bucket, a create
//! interrupted by a crash, a create over IAM entities an earlier integration of the same name
//! left, a boundary removed out of band, an SSE-KMS key allowed by alias, a delete, a create
//! and a delete in mode PodIdentity (against the test bed's EKS fake), or steady resyncs. The
//! test asserts exactly the condition the user then sees, which names the IAM action refused,
//! the resource and the API operation, and the Event that goes with it. The one exception is
//! the bulk read of steady resyncs (`ReadIamInBulk`): refused, it only costs calls, so the
//! integration stays Ready, the refusal is logged with the action, and the resyncs read each
//! role and policy instead. Each scenario also runs with the whole policy, which must see it
//! through: the refusal is the statement's doing.
//!
//! The table (statement -> scenario -> refused action -> condition) is recorded as
//! `operator_policy_statements`.

mod common;

use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, DeleteParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use bucketwire::api::BucketIntegration;
use bucketwire::naming::{Owner, bucket_name, policy_name, role_name};
use common::aws::{self, Identity, OperatorSettings};
use common::integration::{condition, create, events, wait_condition};
use common::operator::Operator;
use common::{TestBed, setup, wait_for};

/// What the operator is taken through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    /// A new IRSA integration.
    Create,
    /// A new integration with a versioned bucket (validation leaves probe versions).
    CreateVersioned,
    /// A new integration, the operator killed right after CreateBucket and started again.
    CrashAfterCreateBucket,
    /// A new integration whose policy an earlier integration of the same name left behind.
    PredecessorPolicy,
    /// A new integration whose role an earlier integration of the same name left behind.
    PredecessorRole,
    /// A Ready integration whose role's permissions boundary someone removed.
    BoundaryRemoved,
    /// A new SSE-KMS integration whose key the operator's allow-list names by alias.
    KmsAlias,
    /// A Ready integration with deletionPolicy Delete, deleted.
    Delete,
    /// A new integration in mode PodIdentity (the association, validation through EKS Auth).
    CreatePodIdentity,
    /// A Ready PodIdentity integration, deleted (its association goes first).
    DeletePodIdentity,
    /// A Ready integration resynced (every 2 s) with nothing to change.
    SteadyResync,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Self::Create => "create (IRSA)",
            Self::CreateVersioned => "create, versioned bucket",
            Self::CrashAfterCreateBucket => "create, killed after CreateBucket",
            Self::PredecessorPolicy => "create over an earlier integration's policy",
            Self::PredecessorRole => "create over an earlier integration's role",
            Self::BoundaryRemoved => "permissions boundary removed out of band",
            Self::KmsAlias => "create, SSE-KMS key allowed by alias",
            Self::Delete => "delete (deletionPolicy Delete)",
            Self::CreatePodIdentity => "create (PodIdentity)",
            Self::DeletePodIdentity => "delete (PodIdentity)",
            Self::SteadyResync => "steady resyncs, nothing to change",
        }
    }
}

/// The names an integration `milvus` in `ns` gets, and what the scenario set up.
struct Names {
    bucket: String,
    role: String,
    role_arn: String,
    policy_arn: String,
    provider_arn: String,
    cluster_arn: String,
    alias: String,
    uid: String,
    /// The pod identity association status records (PodIdentity scenarios).
    association_arn: String,
}

/// One statement left out: the scenario that needs it, and what the user then sees.
struct Case {
    sid: &'static str,
    scenario: Scenario,
    /// The condition that turns (Ready always follows, except for Validated True).
    condition: &'static str,
    status: &'static str,
    reason: &'static str,
    action: &'static str,
    operation: &'static str,
    resource: fn(&Names) -> String,
    /// The action AWS's refusal names when it is not the operation's own (EKS authorizes the
    /// tags and the role of CreatePodIdentityAssociation as eks:TagResource and iam:PassRole).
    refused_as: Option<&'static str>,
}

const CASES: &[Case] = &[
    Case {
        sid: "ManageIntegrationBuckets",
        scenario: Scenario::Create,
        condition: "BucketReady",
        status: "False",
        // A bucket whose tags may not be read is one the operator cannot tell from another
        // account's: the message says both.
        reason: "BucketOwnedElsewhere",
        action: "s3:GetBucketTagging",
        operation: "GetBucketTagging",
        resource: |n| format!("arn:aws:s3:::{}", n.bucket),
        refused_as: None,
    },
    Case {
        sid: "DeleteEmptyIntegrationBuckets",
        scenario: Scenario::Delete,
        condition: "Ready",
        status: "False",
        reason: "AccessDenied",
        action: "s3:ListBucketVersions",
        operation: "ListObjectVersions",
        resource: |n| format!("arn:aws:s3:::{}", n.bucket),
        refused_as: None,
    },
    Case {
        sid: "RemoveValidationProbeVersions",
        scenario: Scenario::CreateVersioned,
        // Validation passed; what it could not clean up is in its message.
        condition: "Validated",
        status: "True",
        reason: "Validated",
        action: "s3:DeleteObjectVersion",
        operation: "DeleteObject",
        resource: |n| format!("arn:aws:s3:::{}/files/.bucketwire-validation/{}", n.bucket, n.uid),
        refused_as: None,
    },
    Case {
        sid: "DateInterruptedBucketCreations",
        scenario: Scenario::CrashAfterCreateBucket,
        condition: "BucketReady",
        status: "False",
        reason: "AccessDenied",
        action: "s3:ListAllMyBuckets",
        operation: "ListBuckets",
        resource: |_| "*".into(),
        refused_as: None,
    },
    Case {
        sid: "ReadOwnRoles",
        // The first reconcile creates the role, and steady resyncs see it in IAM's bulk view;
        // the drift that view shows is read per resource, which is refused.
        scenario: Scenario::BoundaryRemoved,
        condition: "RoleReady",
        status: "False",
        reason: "AccessDenied",
        action: "iam:GetRole",
        operation: "GetRole",
        resource: |n| n.role_arn.clone(),
        refused_as: None,
    },
    Case {
        sid: "LookUpRolesBeforeCreating",
        scenario: Scenario::Create,
        condition: "RoleReady",
        status: "False",
        reason: "AccessDenied",
        action: "iam:GetRole",
        operation: "GetRole",
        resource: |n| n.role_arn.clone(),
        refused_as: None,
    },
    Case {
        sid: "ReadOwnPolicies",
        scenario: Scenario::Create,
        condition: "PolicyReady",
        status: "False",
        reason: "AccessDenied",
        action: "iam:GetPolicy",
        operation: "GetPolicy",
        resource: |n| n.policy_arn.clone(),
        refused_as: None,
    },
    Case {
        sid: "ReadIamInBulk",
        scenario: Scenario::SteadyResync,
        // Refused, the bulk read costs nothing but calls: the integration stays Ready and its
        // role and policy are read one by one, as without the bulk view.
        condition: "Ready",
        status: "True",
        reason: "Ready",
        action: "iam:GetAccountAuthorizationDetails",
        operation: "GetAccountAuthorizationDetails",
        resource: |_| "*".into(),
        refused_as: None,
    },
    Case {
        sid: "CreateTaggedPolicies",
        scenario: Scenario::Create,
        condition: "PolicyReady",
        status: "False",
        reason: "AccessDenied",
        action: "iam:CreatePolicy",
        operation: "CreatePolicy",
        resource: |n| n.policy_arn.clone(),
        refused_as: None,
    },
    Case {
        sid: "TagOwnPolicies",
        scenario: Scenario::PredecessorPolicy,
        condition: "PolicyReady",
        status: "False",
        reason: "AccessDenied",
        action: "iam:TagPolicy",
        operation: "TagPolicy",
        resource: |n| n.policy_arn.clone(),
        refused_as: None,
    },
    Case {
        sid: "ManageOwnPolicies",
        scenario: Scenario::Delete,
        condition: "Ready",
        status: "False",
        reason: "AccessDenied",
        action: "iam:DeletePolicy",
        operation: "DeletePolicy",
        resource: |n| n.policy_arn.clone(),
        refused_as: None,
    },
    Case {
        sid: "CreateBoundedTaggedRoles",
        scenario: Scenario::Create,
        condition: "RoleReady",
        status: "False",
        reason: "AccessDenied",
        action: "iam:CreateRole",
        operation: "CreateRole",
        resource: |n| n.role_arn.clone(),
        refused_as: None,
    },
    Case {
        sid: "TagOwnRoles",
        scenario: Scenario::PredecessorRole,
        condition: "RoleReady",
        status: "False",
        reason: "AccessDenied",
        action: "iam:TagRole",
        operation: "TagRole",
        resource: |n| n.role_arn.clone(),
        refused_as: None,
    },
    Case {
        sid: "ManageOwnRoles",
        scenario: Scenario::Delete,
        condition: "Ready",
        status: "False",
        reason: "AccessDenied",
        action: "iam:DetachRolePolicy",
        operation: "DetachRolePolicy",
        resource: |n| n.role_arn.clone(),
        refused_as: None,
    },
    Case {
        sid: "KeepTheBoundary",
        scenario: Scenario::BoundaryRemoved,
        condition: "RoleReady",
        status: "False",
        reason: "AccessDenied",
        action: "iam:PutRolePermissionsBoundary",
        operation: "PutRolePermissionsBoundary",
        resource: |n| n.role_arn.clone(),
        refused_as: None,
    },
    Case {
        sid: "AttachOnlyOwnPolicies",
        scenario: Scenario::Create,
        condition: "RoleReady",
        status: "False",
        reason: "AccessDenied",
        action: "iam:AttachRolePolicy",
        operation: "AttachRolePolicy",
        resource: |n| n.role_arn.clone(),
        refused_as: None,
    },
    Case {
        sid: "FindTheClusterProvider",
        scenario: Scenario::Create,
        condition: "RoleReady",
        status: "False",
        reason: "AccessDenied",
        action: "iam:GetOpenIDConnectProvider",
        operation: "GetOpenIDConnectProvider",
        resource: |n| n.provider_arn.clone(),
        refused_as: None,
    },
    Case {
        sid: "FindTheClusterIssuer",
        scenario: Scenario::Create,
        condition: "RoleReady",
        status: "False",
        reason: "AccessDenied",
        action: "eks:DescribeCluster",
        operation: "DescribeCluster",
        resource: |n| n.cluster_arn.clone(),
        refused_as: None,
    },
    Case {
        sid: "CreateTaggedPodIdentityAssociations",
        scenario: Scenario::CreatePodIdentity,
        // No association recorded yet: the ServiceAccount's is looked up first.
        condition: "PodIdentityAssociationReady",
        status: "False",
        reason: "AccessDenied",
        action: "eks:ListPodIdentityAssociations",
        operation: "ListPodIdentityAssociations",
        resource: |n| n.cluster_arn.clone(),
        refused_as: None,
    },
    Case {
        sid: "TagPodIdentityAssociationsOnCreate",
        scenario: Scenario::CreatePodIdentity,
        condition: "PodIdentityAssociationReady",
        status: "False",
        reason: "AccessDenied",
        action: "eks:CreatePodIdentityAssociation",
        operation: "CreatePodIdentityAssociation",
        resource: |n| n.cluster_arn.clone(),
        refused_as: Some("eks:TagResource"),
    },
    Case {
        sid: "ReadPodIdentityAssociations",
        scenario: Scenario::CreatePodIdentity,
        // The first reconcile creates the association; the next one may not read it back.
        condition: "PodIdentityAssociationReady",
        status: "False",
        reason: "AccessDenied",
        action: "eks:DescribePodIdentityAssociation",
        operation: "DescribePodIdentityAssociation",
        resource: |n| n.association_arn.clone(),
        refused_as: None,
    },
    Case {
        sid: "ManageOwnPodIdentityAssociations",
        scenario: Scenario::DeletePodIdentity,
        condition: "Ready",
        status: "False",
        reason: "AccessDenied",
        action: "eks:DeletePodIdentityAssociation",
        operation: "DeletePodIdentityAssociation",
        resource: |n| n.association_arn.clone(),
        refused_as: None,
    },
    Case {
        sid: "PassOwnRolesToPodIdentity",
        scenario: Scenario::CreatePodIdentity,
        condition: "PodIdentityAssociationReady",
        status: "False",
        reason: "AccessDenied",
        action: "eks:CreatePodIdentityAssociation",
        operation: "CreatePodIdentityAssociation",
        resource: |n| n.cluster_arn.clone(),
        refused_as: Some("iam:PassRole"),
    },
    Case {
        sid: "ValidateAsThePodIdentityAgent",
        scenario: Scenario::CreatePodIdentity,
        // Validation falls back to its static checks, and says why.
        condition: "Validated",
        status: "True",
        reason: "ValidatedStatically",
        action: "eks-auth:AssumeRoleForPodIdentity",
        operation: "AssumeRoleForPodIdentity",
        resource: |n| n.cluster_arn.clone(),
        refused_as: None,
    },
    Case {
        sid: "ResolveAllowedKeyAliases",
        scenario: Scenario::KmsAlias,
        // The allow-list check runs before the first step.
        condition: "BucketReady",
        status: "False",
        reason: "AccessDenied",
        action: "kms:DescribeKey",
        operation: "DescribeKey",
        resource: |n| format!("{} in us-east-2", n.alias),
        refused_as: None,
    },
];

const NAME: &str = "milvus";

/// The published policy rendered for the test bed, and its statements' Sids.
fn published(bed: &TestBed) -> Value {
    aws::rendered_operator_policy(
        bed,
        &OperatorSettings::testbed(bed),
        bed.var("BUCKETWIRE_TESTBED_PERMISSIONS_BOUNDARY"),
    )
}

fn without(policy: &Value, sid: &str) -> Value {
    let mut policy = policy.clone();
    let statements = policy["Statement"].as_array_mut().expect("statements");
    let before = statements.len();
    statements.retain(|s| s["Sid"] != sid);
    assert_eq!(statements.len() + 1, before, "one statement {sid}");
    policy
}

fn spec(scenario: Scenario, key: &str) -> Value {
    match scenario {
        Scenario::CreateVersioned => json!({"region": "us-east-2", "bucket": {"versioning": true}}),
        Scenario::Delete => json!({"region": "us-east-2", "bucket": {"deletionPolicy": "Delete"}}),
        Scenario::CreatePodIdentity | Scenario::DeletePodIdentity => {
            json!({"region": "us-east-2", "identity": {"mode": "PodIdentity"}})
        }
        Scenario::KmsAlias => {
            json!({"region": "us-east-2", "bucket": {"encryption": {"type": "SSE-KMS", "kmsKeyArn": key}}})
        }
        // Only the operator's own reads on resync (no validation probe).
        Scenario::SteadyResync => json!({"region": "us-east-2", "validation": {"enabled": false}}),
        _ => json!({"region": "us-east-2"}),
    }
}

/// Tags an earlier integration of the same cluster, namespace and name left on its entities.
fn predecessor_tags(bed: &TestBed, ns: &str) -> Vec<(String, String)> {
    [
        ("bucketwire.io/managed-by", "bucketwire"),
        ("bucketwire.io/cluster", bed.var("BUCKETWIRE_CLUSTER_NAME")),
        ("bucketwire.io/namespace", ns),
        ("bucketwire.io/name", NAME),
        ("bucketwire.io/uid", "an-earlier-integration"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// What the scenario needs before the operator starts; returns the KMS key (SSE-KMS only).
async fn prepare(bed: &TestBed, ns: &str, scenario: Scenario, names: &mut Names) -> String {
    let iam = aws::iam(bed, "us-east-2").await;
    let tags = || {
        predecessor_tags(bed, ns)
            .into_iter()
            .map(|(k, v)| {
                aws_sdk_iam::types::Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
                    .expect("tag")
            })
            .collect::<Vec<_>>()
    };
    match scenario {
        Scenario::PredecessorPolicy => {
            let doc = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Action": "s3:ListBucket", "Resource": format!("arn:aws:s3:::{}", names.bucket)}]});
            iam.create_policy()
                .policy_name(names.policy_arn.rsplit('/').next().expect("name"))
                .path("/bucketwire/")
                .policy_document(doc.to_string())
                .set_tags(Some(tags()))
                .send()
                .await
                .expect("the earlier integration's policy");
            String::new()
        }
        Scenario::PredecessorRole => {
            let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Principal": {"Federated": bed.var("BUCKETWIRE_TESTBED_OIDC_PROVIDER_ARN")},
                "Action": "sts:AssumeRoleWithWebIdentity"}]});
            iam.create_role()
                .role_name(&names.role)
                .path("/bucketwire/")
                .assume_role_policy_document(trust.to_string())
                .permissions_boundary(bed.var("BUCKETWIRE_TESTBED_PERMISSIONS_BOUNDARY"))
                .set_tags(Some(tags()))
                .send()
                .await
                .expect("the earlier integration's role");
            String::new()
        }
        Scenario::KmsAlias => {
            let kms = aws_sdk_kms::Client::new(&aws::sdk_config(bed, "us-east-2").await);
            let key = kms
                .create_key()
                .description("bucketwire operator-policy test")
                .send()
                .await
                .expect("key")
                .key_metadata()
                .and_then(|m| m.arn())
                .expect("key ARN")
                .to_string();
            names.alias = format!("alias/bucketwire-policy-{ns}");
            kms.create_alias()
                .alias_name(&names.alias)
                .target_key_id(&key)
                .send()
                .await
                .expect("alias");
            key
        }
        _ => String::new(),
    }
}

/// Takes an operator with `identity` through `scenario`; with `expect` (a statement left out),
/// waits for its refusal and returns the condition, otherwise waits for the scenario to succeed.
async fn run(bed: &TestBed, scenario: Scenario, identity: &Identity, expect: Option<&Case>) -> Value {
    let label = expect.map_or("whole", |c| c.sid);
    let (_, client, ns) = setup("policy").await;
    let cluster = bed.var("BUCKETWIRE_CLUSTER_NAME");
    let owner = Owner {
        cluster,
        namespace: &ns,
        name: NAME,
    };
    let account = bed.var("BUCKETWIRE_TESTBED_ACCOUNT_ID").to_string();
    let mut names = Names {
        bucket: bucket_name(owner, Some(&identity.bucket_prefix)),
        role: role_name(owner),
        role_arn: format!("arn:aws:iam::{account}:role/bucketwire/{}", role_name(owner)),
        policy_arn: format!("arn:aws:iam::{account}:policy/bucketwire/{}", policy_name(owner)),
        provider_arn: bed.var("BUCKETWIRE_TESTBED_OIDC_PROVIDER_ARN").into(),
        cluster_arn: format!(
            "arn:aws:eks:{}:{account}:cluster/{cluster}",
            bed.var("AWS_REGION")
        ),
        alias: String::new(),
        uid: String::new(),
        association_arn: String::new(),
    };
    let key = prepare(bed, &ns, scenario, &mut names).await;
    let kms_args = ["--allowed-kms-keys", names.alias.as_str()];
    let args: &[&str] = if scenario == Scenario::KmsAlias {
        &kms_args
    } else {
        &[]
    };
    let crash = [("BUCKETWIRE_CRASH_AT", "after-create-bucket")];
    let env: &[(&str, &str)] = if scenario == Scenario::CrashAfterCreateBucket {
        &crash
    } else {
        &[]
    };
    let mut operator = Operator::start_as(bed, &ns, args, env, identity);
    let bi = create(&client, &ns, NAME, spec(scenario, &key)).await;
    names.uid = bi.uid().expect("uid");
    let iam = aws::iam(bed, "us-east-2").await;
    match scenario {
        Scenario::CrashAfterCreateBucket => {
            assert!(
                operator.wait_for_exit(Duration::from_secs(30)),
                "{label}: crashed"
            );
            operator.restart_clean(bed);
        }
        Scenario::BoundaryRemoved => {
            wait_condition(&client, &ns, NAME, "RoleReady", "True", None, &operator).await;
            iam.delete_role_permissions_boundary()
                .role_name(&names.role)
                .send()
                .await
                .expect("boundary removed out of band");
        }
        Scenario::Delete | Scenario::DeletePodIdentity => {
            wait_condition(&client, &ns, NAME, "Ready", "True", None, &operator).await;
            Api::<BucketIntegration>::namespaced(client.clone(), &ns)
                .delete(NAME, &DeleteParams::default())
                .await
                .expect("delete accepted");
        }
        _ => {}
    }

    let Some(case) = expect else {
        let seen = succeeded(bed, &client, &ns, scenario, &names, &operator).await;
        finish(bed, &client, &ns, operator).await;
        return json!({"scenario": scenario.name(), "withTheWholePolicy": seen});
    };
    if scenario == Scenario::SteadyResync {
        let row = bulk_read_refused(&client, &ns, case, &operator).await;
        finish(bed, &client, &ns, operator).await;
        return row;
    }
    let bi = wait_condition(
        &client,
        &ns,
        NAME,
        case.condition,
        case.status,
        Some(case.reason),
        &operator,
    )
    .await;
    let seen = condition(&bi, case.condition).expect("condition");
    names.association_arn = bi
        .status
        .as_ref()
        .and_then(|s| s.pod_identity_association_arn.clone())
        .unwrap_or_default();
    let call = format!(
        "{} on {} ({})",
        case.action,
        (case.resource)(&names),
        case.operation
    );
    let aws_words = format!(
        "is not authorized to perform: {}",
        case.refused_as.unwrap_or(case.action)
    );
    assert!(
        seen.message.contains(&call) && seen.message.contains(&aws_words),
        "{}: {} names {call}: {}",
        case.sid,
        case.condition,
        seen.message
    );
    if case.reason == "AccessDenied" {
        assert!(
            seen.message.starts_with(&format!("AccessDenied: {call}: ")),
            "{}: {}",
            case.sid,
            seen.message
        );
    }
    // Ready says the same, and so does a Warning Event (a passed validation raises none).
    let ready = condition(&bi, "Ready").expect("ready");
    let event = if case.status == "False" {
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", case.reason),
            "{}",
            case.sid
        );
        assert!(ready.message.contains(&call), "{}: {}", case.sid, ready.message);
        let found = wait_for(
            &format!("{}: the Event", case.sid),
            Duration::from_secs(15),
            || async {
                events(&client, &ns, NAME)
                    .await
                    .into_iter()
                    .find(|(reason, message)| reason == case.reason && message.contains(&call))
            },
        )
        .await;
        Some(found.1)
    } else {
        let says = match case.scenario {
            Scenario::CreatePodIdentity => "checked statically only",
            _ => "the probe's object versions were not removed",
        };
        assert!(seen.message.contains(says), "{}: {}", case.sid, seen.message);
        None
    };
    finish(bed, &client, &ns, operator).await;
    json!({
        "statement": case.sid,
        "scenario": scenario.name(),
        "refused": {"action": case.action, "resource": (case.resource)(&names), "operation": case.operation},
        "condition": {"type": case.condition, "status": seen.status, "reason": seen.reason, "message": seen.message},
        "ready": {"status": ready.status, "reason": ready.reason},
        "event": event,
    })
}

/// The operator's IAM reads of one role or policy (what the bulk view saves on a steady resync).
const PER_RESOURCE_IAM_READS: &[&str] = &[
    "GetRole",
    "GetPolicy",
    "GetPolicyVersion",
    "ListAttachedRolePolicies",
    "ListRolePolicies",
];

/// The operator's IAM calls so far: (bulk reads that succeeded, bulk reads refused, reads of
/// one role or policy).
async fn iam_reads(operator: &Operator) -> (u64, u64, u64) {
    let mut counts = (0, 0, 0);
    for ((service, operation, outcome), n) in operator.aws_calls().await {
        if !service.eq_ignore_ascii_case("iam") {
            continue;
        }
        match (operation.as_str(), outcome.as_str()) {
            ("GetAccountAuthorizationDetails", "success") => counts.0 += n,
            ("GetAccountAuthorizationDetails", _) => counts.1 += n,
            (op, _) if PER_RESOURCE_IAM_READS.contains(&op) => counts.2 += n,
            _ => {}
        }
    }
    counts
}

/// Three steady resyncs' worth of bulk reads after Ready (the view is at most half a 2 s resync
/// old): returns the counts before and after.
async fn three_bulk_reads(
    client: &Client,
    ns: &str,
    operator: &Operator,
    refused: bool,
) -> ((u64, u64, u64), (u64, u64, u64)) {
    wait_condition(client, ns, NAME, "Ready", "True", None, operator).await;
    let before = iam_reads(operator).await;
    let after = wait_for("three bulk reads", Duration::from_secs(40), || async {
        let now = iam_reads(operator).await;
        let bulk = |c: (u64, u64, u64)| if refused { c.1 } else { c.0 };
        (bulk(now) >= bulk(before) + 3).then_some(now)
    })
    .await;
    (before, after)
}

/// Without `ReadIamInBulk`: every bulk read is refused, the refusal is logged with the IAM
/// action, the resyncs read the role and policy one by one, and the integration stays Ready.
async fn bulk_read_refused(client: &Client, ns: &str, case: &Case, operator: &Operator) -> Value {
    let (before, after) = three_bulk_reads(client, ns, operator, true).await;
    assert!(
        after.2 > before.2,
        "{}: refused, the resyncs read per resource: {before:?} -> {after:?}",
        case.sid
    );
    let call = format!("{} on * ({})", case.action, case.operation);
    let log = operator.log();
    let logged = log
        .lines()
        .find(|l| {
            l.contains(&format!("AccessDenied: {call}: "))
                && l.contains(&format!("is not authorized to perform: {}", case.action))
        })
        .unwrap_or_else(|| panic!("{}: the refusal is logged with the IAM action:\n{log}", case.sid))
        .to_string();
    let bi = wait_condition(client, ns, NAME, "Ready", "True", None, operator).await;
    let ready = condition(&bi, "Ready").expect("ready");
    json!({
        "statement": case.sid,
        "scenario": Scenario::SteadyResync.name(),
        "refused": {"action": case.action, "resource": "*", "operation": case.operation},
        "condition": {"type": "Ready", "status": ready.status, "reason": ready.reason, "message": ready.message},
        "ready": {"status": ready.status, "reason": ready.reason},
        "log": logged,
        "iamReadsOverThreeResyncs": {"bulkRefused": after.1 - before.1, "perResource": after.2 - before.2},
        "event": null,
    })
}

/// With the whole policy: the scenario completes. Returns what says so.
async fn succeeded(
    bed: &TestBed,
    client: &Client,
    ns: &str,
    scenario: Scenario,
    names: &Names,
    operator: &Operator,
) -> String {
    let wait = |type_: &'static str, reason: Option<&'static str>| async move {
        let bi = wait_condition(client, ns, NAME, type_, "True", reason, operator).await;
        let c = condition(&bi, type_).expect("condition");
        format!("{type_} True {}: {}", c.reason, c.message)
    };
    match scenario {
        Scenario::Delete => {
            let api = Api::<BucketIntegration>::namespaced(client.clone(), ns);
            wait_for("the integration to be gone", Duration::from_secs(60), || async {
                api.get_opt(NAME).await.ok()?.is_none().then_some(())
            })
            .await;
            let s3 = aws::s3(bed, "us-east-2").await;
            assert!(
                s3.head_bucket().bucket(&names.bucket).send().await.is_err(),
                "the empty bucket is deleted"
            );
            "deleted: role, policy and the empty bucket".into()
        }
        Scenario::DeletePodIdentity => {
            let api = Api::<BucketIntegration>::namespaced(client.clone(), ns);
            wait_for("the integration to be gone", Duration::from_secs(60), || async {
                api.get_opt(NAME).await.ok()?.is_none().then_some(())
            })
            .await;
            let eks = aws_sdk_eks::Client::new(&aws::sdk_config(bed, bed.var("AWS_REGION")).await);
            let left = eks
                .list_pod_identity_associations()
                .cluster_name(bed.var("BUCKETWIRE_CLUSTER_NAME"))
                .namespace(ns)
                .send()
                .await
                .expect("ListPodIdentityAssociations");
            assert!(left.associations().is_empty(), "the association is deleted");
            "deleted: the association, role and policy".into()
        }
        Scenario::CreateVersioned => {
            let seen = wait("Validated", None).await;
            assert!(
                seen.contains("the probe's object versions were removed"),
                "{seen}"
            );
            seen
        }
        Scenario::BoundaryRemoved => {
            let iam = aws::iam(bed, "us-east-2").await;
            wait_for("the boundary restored", Duration::from_secs(30), || async {
                let role = aws::role(&iam, &names.role_arn).await;
                role.permissions_boundary()
                    .and_then(|b| b.permissions_boundary_arn())
                    .filter(|b| *b == bed.var("BUCKETWIRE_TESTBED_PERMISSIONS_BOUNDARY"))
                    .map(|_| ())
            })
            .await;
            let (_, message) = wait_for("the repair's Event", Duration::from_secs(15), || async {
                events(client, ns, NAME)
                    .await
                    .into_iter()
                    .find(|(reason, message)| {
                        reason == "DriftCorrected" && message.contains("permissions boundary")
                    })
            })
            .await;
            message
        }
        Scenario::PredecessorPolicy => wait("PolicyReady", None).await,
        Scenario::PredecessorRole => wait("RoleReady", None).await,
        // The key passed the allow-list; whether the workload may use it is the key policy's
        // and the simulator's business (tests/allow_lists.rs), not the operator's policy.
        Scenario::KmsAlias => wait("BucketReady", None).await,
        Scenario::Create | Scenario::CrashAfterCreateBucket => wait("Ready", None).await,
        Scenario::CreatePodIdentity => wait("Validated", Some("Validated")).await,
        Scenario::SteadyResync => {
            let (before, after) = three_bulk_reads(client, ns, operator, false).await;
            assert_eq!(
                (after.1, after.2),
                (before.1, before.2),
                "steady resyncs read IAM in bulk only: {before:?} -> {after:?}"
            );
            format!(
                "{} bulk reads over the steady resyncs, no role or policy read one by one",
                after.0 - before.0
            )
        }
    }
}

/// Lets the integration go with the whole policy (a refused delete stays until then).
async fn finish(bed: &TestBed, client: &Client, ns: &str, mut operator: Operator) {
    operator.kill();
    let operator = Operator::start(bed, ns, &[]);
    let api = Api::<BucketIntegration>::namespaced(client.clone(), ns);
    if api.get_opt(NAME).await.ok().flatten().is_some() {
        let _ = api.delete(NAME, &DeleteParams::default()).await;
    }
    wait_for("the integration to be gone", Duration::from_secs(60), || async {
        api.get_opt(NAME).await.ok()?.is_none().then_some(())
    })
    .await;
    drop(operator);
}

#[tokio::test]
async fn every_statement_of_the_operator_policy_is_needed_and_its_refusal_names_the_iam_action() {
    let bed = TestBed::load();
    let policy = published(&bed);
    let sids: Vec<&str> = policy["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .map(|s| s["Sid"].as_str().expect("every statement has a Sid"))
        .collect();
    let cased: Vec<&str> = CASES.iter().map(|c| c.sid).collect();
    assert_eq!(sids, cased, "one case per statement, in the policy's order");

    // Each case's operator role: the policy without that statement, created and assumed by the
    // administrator, with the test bed's boundary and prefix.
    let mut identities = vec![];
    for case in CASES {
        let identity =
            aws::operator_identity_with_policy(&bed, "us-east-2", &without(&policy, case.sid)).await;
        identities.push(identity);
    }
    let whole = Identity::testbed(&bed);
    let mut scenarios: Vec<Scenario> = CASES.iter().map(|c| c.scenario).collect();
    scenarios.dedup();
    scenarios.sort_by_key(|s| s.name());
    scenarios.dedup();

    // Four at a time: the test bed is shared with the other tests.
    let controls: Vec<Value> = futures::stream::iter(scenarios.iter().map(|s| run(&bed, *s, &whole, None)))
        .buffer_unordered(4)
        .collect()
        .await;
    let rows: Vec<Value> = futures::stream::iter(
        CASES
            .iter()
            .zip(&identities)
            .map(|(case, identity)| run(&bed, case.scenario, identity, Some(case))),
    )
    .buffered(4)
    .collect()
    .await;
    common::results::record(
        "operator_policy_statements",
        &json!({
            "test": "tests/operator_policy.rs::every_statement_of_the_operator_policy_is_needed_and_its_refusal_names_the_iam_action",
            "policy": "deploy/iam/operator-policy.json, rendered for the test bed (tests/testbed/policies.py)",
            "statements": sids.len(),
            "everyStatementNeeded": rows.len() == sids.len(),
            "withoutOneStatement": rows,
            "scenariosWithTheWholePolicy": controls,
        }),
    );
}
