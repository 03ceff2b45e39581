//! Steps 2 and 3: the customer-managed policy and the IRSA role. Documents are compared
//! semantically; only differences are written.

use std::collections::BTreeMap;

use aws_sdk_iam::types::Tag;
use serde_json::Value;

use crate::aws::AwsFailure;
use crate::aws::actions::{Call, Operation};
use crate::documents::{TAG_UID, documents_equivalent, parse_document};
use crate::error::Error;
use crate::steps::Outcome;

/// IAM keeps at most five versions of a managed policy.
const MAX_POLICY_VERSIONS: usize = 5;

pub struct DesiredPolicy {
    pub arn: String,
    pub name: String,
    pub path: String,
    pub description: String,
    pub document: Value,
    pub tags: BTreeMap<String, String>,
    pub uid: String,
}

pub struct DesiredRole {
    pub name: String,
    /// The role's ARN (what a refusal names).
    pub arn: String,
    pub path: String,
    pub description: String,
    pub trust: Value,
    pub permissions_boundary: Option<String>,
    /// The boundary bucketwire itself put on the role earlier (recorded in status): the only
    /// one it may remove when no boundary is configured any more.
    pub boundary_set_by_us: Option<String>,
    pub policy_arn: String,
    pub tags: BTreeMap<String, String>,
    pub uid: String,
}

/// The tags an IAM role or policy gets: bucketwire's ownership tags only. A spec's extra tags
/// (`bucket.tags`) go on the bucket, never on IAM: on a role they would be principal tags that
/// attribute-based policies elsewhere in the account may trust, chosen by whoever may create an
/// integration. The operator's IAM policy enforces it (aws:TagKeys `bucketwire.io/*`).
fn iam_tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .filter(|(key, _)| key.starts_with(crate::documents::TAG_PREFIX))
        .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
        .collect()
}

fn owned(tags: &[Tag], uid: &str) -> Result<(), String> {
    match tags.iter().find(|t| t.key() == TAG_UID) {
        Some(t) if t.value() == uid => Ok(()),
        Some(t) => Err(format!("tagged {TAG_UID}={}", t.value())),
        None => Err(format!("no {TAG_UID} tag")),
    }
}

/// Whether the entity was tagged by an earlier integration of the same cluster, namespace and
/// name (see `bucket::is_predecessor`): then this integration takes it back.
fn predecessor(tags: &[Tag], ours: &BTreeMap<String, String>) -> bool {
    let tags: BTreeMap<String, String> = tags
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    crate::steps::bucket::is_predecessor(&tags, ours)
}

/// Creates the policy, or makes a new default version when its document drifted.
pub async fn reconcile_policy(iam: &aws_sdk_iam::Client, desired: &DesiredPolicy) -> Result<Outcome, Error> {
    let on_policy = |operation| Call::new(operation, &desired.arn);
    let policy = match get_policy(iam, &desired.arn).await? {
        Some(policy) => policy,
        None => {
            let created = iam
                .create_policy()
                .policy_name(&desired.name)
                .path(&desired.path)
                .description(&desired.description)
                .policy_document(desired.document.to_string())
                .set_tags(Some(iam_tags(&desired.tags)))
                .send()
                .await;
            match created {
                Ok(_) => return Ok(Outcome::created(format!("created policy {}", desired.arn))),
                // An attempt whose answer was lost (a reset connection, a timeout) did create
                // it: look at what is there, and check that it is ours, like any existing one.
                Err(e) if AwsFailure::from_sdk(&e).is_code("EntityAlreadyExists") => {
                    get_policy(iam, &desired.arn).await?.ok_or_else(|| {
                        Error::aws(on_policy(Operation::CreatePolicy), AwsFailure::from_sdk(&e))
                    })?
                }
                Err(e) => {
                    return Err(Error::aws(
                        on_policy(Operation::CreatePolicy),
                        AwsFailure::from_sdk(&e),
                    ));
                }
            }
        }
    };
    let mut taken_back = false;
    if predecessor(policy.tags(), &desired.tags) {
        iam.tag_policy()
            .policy_arn(&desired.arn)
            .set_tags(Some(iam_tags(&desired.tags)))
            .send()
            .await
            .map_err(|e| Error::aws(on_policy(Operation::TagPolicy), AwsFailure::from_sdk(&e)))?;
        taken_back = true;
    } else {
        owned(policy.tags(), &desired.uid).map_err(|detail| Error::OwnedElsewhere {
            kind: "IAM policy",
            name: desired.arn.clone(),
            detail,
        })?;
    }

    let version_id = policy.default_version_id().unwrap_or("v1").to_string();
    let version = iam
        .get_policy_version()
        .policy_arn(&desired.arn)
        .version_id(&version_id)
        .send()
        .await
        .map_err(|e| Error::aws(on_policy(Operation::GetPolicyVersion), AwsFailure::from_sdk(&e)))?;
    let current = version
        .policy_version()
        .and_then(|v| v.document())
        .and_then(parse_document);
    if current
        .as_ref()
        .is_some_and(|doc| documents_equivalent(doc, &desired.document))
    {
        if taken_back {
            return Ok(Outcome::adopted(format!(
                "took back policy {} from an earlier integration of the same name",
                desired.arn
            )));
        }
        return Ok(Outcome::up_to_date(format!("policy {} matches", desired.arn)));
    }

    // Make room for the new version: drop the oldest non-default one when at the limit.
    let versions = iam
        .list_policy_versions()
        .policy_arn(&desired.arn)
        .send()
        .await
        .map_err(|e| Error::aws(on_policy(Operation::ListPolicyVersions), AwsFailure::from_sdk(&e)))?;
    let mut old: Vec<_> = versions
        .versions()
        .iter()
        .filter(|v| !v.is_default_version())
        .collect();
    if versions.versions().len() >= MAX_POLICY_VERSIONS {
        old.sort_by_key(|v| v.create_date().map(|d| (d.secs(), d.subsec_nanos())));
        if let Some(oldest) = old.first().and_then(|v| v.version_id()) {
            iam.delete_policy_version()
                .policy_arn(&desired.arn)
                .version_id(oldest)
                .send()
                .await
                .map_err(|e| {
                    Error::aws(
                        on_policy(Operation::DeletePolicyVersion),
                        AwsFailure::from_sdk(&e),
                    )
                })?;
        }
    }
    iam.create_policy_version()
        .policy_arn(&desired.arn)
        .policy_document(desired.document.to_string())
        .set_as_default(true)
        .send()
        .await
        .map_err(|e| {
            Error::aws(
                on_policy(Operation::CreatePolicyVersion),
                AwsFailure::from_sdk(&e),
            )
        })?;
    Ok(Outcome::drift_corrected(format!(
        "policy {}: document restored as a new default version",
        desired.arn
    )))
}

/// What the role step did, and the permissions boundary bucketwire has set on the role now.
pub struct RoleReport {
    pub outcome: Outcome,
    pub arn: String,
    pub boundary_set_by_us: Option<String>,
}

/// Pure: the boundary change to make. A configured boundary is enforced; without one, only a
/// boundary bucketwire set itself is removed (someone else's is theirs to keep).
#[derive(Debug, PartialEq, Eq)]
pub enum BoundaryChange {
    None,
    Put(String),
    Delete,
}

pub fn boundary_change(
    current: Option<&str>,
    desired: Option<&str>,
    set_by_us: Option<&str>,
) -> BoundaryChange {
    match (current, desired) {
        (c, Some(d)) if c != Some(d) => BoundaryChange::Put(d.to_string()),
        (Some(c), None) if set_by_us == Some(c) => BoundaryChange::Delete,
        _ => BoundaryChange::None,
    }
}

/// Pure: the boundary bucketwire has set on a role whose boundary needs no change: the
/// configured one, or the one it set earlier if that is still there.
pub fn boundary_kept(current: Option<&str>, desired: &DesiredRole) -> Option<String> {
    desired.permissions_boundary.clone().or_else(|| {
        desired
            .boundary_set_by_us
            .clone()
            .filter(|b| Some(b.as_str()) == current)
    })
}

/// Creates the role, or repairs its trust policy, permissions boundary, attachments and inline
/// policies.
pub async fn reconcile_role(iam: &aws_sdk_iam::Client, desired: &DesiredRole) -> Result<RoleReport, Error> {
    let on_role = |operation| Call::new(operation, &desired.arn);
    let role = match get_role(iam, &desired.name, &desired.arn).await? {
        Some(role) => role,
        None => {
            let created = iam
                .create_role()
                .role_name(&desired.name)
                .path(&desired.path)
                .description(&desired.description)
                .assume_role_policy_document(desired.trust.to_string())
                .set_permissions_boundary(desired.permissions_boundary.clone())
                .set_tags(Some(iam_tags(&desired.tags)))
                .send()
                .await;
            match created {
                Ok(out) => {
                    let arn = out.role().map(|r| r.arn().to_string()).unwrap_or_default();
                    attach(iam, &desired.name, &desired.arn, &desired.policy_arn).await?;
                    return Ok(RoleReport {
                        outcome: Outcome::created(format!("created role {arn}")),
                        arn,
                        boundary_set_by_us: desired.permissions_boundary.clone(),
                    });
                }
                // As for the policy: a lost answer; the checks below finish the job.
                Err(e) if AwsFailure::from_sdk(&e).is_code("EntityAlreadyExists") => {
                    get_role(iam, &desired.name, &desired.arn)
                        .await?
                        .ok_or_else(|| Error::aws(on_role(Operation::CreateRole), AwsFailure::from_sdk(&e)))?
                }
                Err(e) => {
                    return Err(Error::aws(
                        on_role(Operation::CreateRole),
                        AwsFailure::from_sdk(&e),
                    ));
                }
            }
        }
    };
    let arn = role.arn().to_string();
    let mut repaired = vec![];
    if predecessor(role.tags(), &desired.tags) {
        iam.tag_role()
            .role_name(&desired.name)
            .set_tags(Some(iam_tags(&desired.tags)))
            .send()
            .await
            .map_err(|e| Error::aws(on_role(Operation::TagRole), AwsFailure::from_sdk(&e)))?;
        repaired.push("ownership (taken back from an earlier integration of the same name)".to_string());
    } else {
        owned(role.tags(), &desired.uid).map_err(|detail| Error::OwnedElsewhere {
            kind: "IAM role",
            name: desired.name.clone(),
            detail,
        })?;
    }

    let trust = role.assume_role_policy_document().and_then(parse_document);
    if !trust
        .as_ref()
        .is_some_and(|t| documents_equivalent(t, &desired.trust))
    {
        iam.update_assume_role_policy()
            .role_name(&desired.name)
            .policy_document(desired.trust.to_string())
            .send()
            .await
            .map_err(|e| {
                Error::aws(
                    on_role(Operation::UpdateAssumeRolePolicy),
                    AwsFailure::from_sdk(&e),
                )
            })?;
        repaired.push("trust policy".to_string());
    }

    let boundary = role
        .permissions_boundary()
        .and_then(|b| b.permissions_boundary_arn());
    let boundary_set_by_us;
    match boundary_change(
        boundary,
        desired.permissions_boundary.as_deref(),
        desired.boundary_set_by_us.as_deref(),
    ) {
        BoundaryChange::None => boundary_set_by_us = boundary_kept(boundary, desired),
        BoundaryChange::Put(b) => {
            iam.put_role_permissions_boundary()
                .role_name(&desired.name)
                .permissions_boundary(&b)
                .send()
                .await
                .map_err(|e| {
                    Error::aws(
                        on_role(Operation::PutRolePermissionsBoundary),
                        AwsFailure::from_sdk(&e),
                    )
                })?;
            boundary_set_by_us = Some(b);
            repaired.push("permissions boundary".to_string());
        }
        BoundaryChange::Delete => {
            iam.delete_role_permissions_boundary()
                .role_name(&desired.name)
                .send()
                .await
                .map_err(|e| {
                    Error::aws(
                        on_role(Operation::DeleteRolePermissionsBoundary),
                        AwsFailure::from_sdk(&e),
                    )
                })?;
            boundary_set_by_us = None;
            repaired.push("permissions boundary (removed the one bucketwire had set)".to_string());
        }
    }

    // An inline policy widens what Milvus can do, and would block DeleteRole: drift.
    for inline in inline_policies(iam, &desired.name, &desired.arn).await? {
        delete_inline(iam, &desired.name, &desired.arn, &inline).await?;
        repaired.push(format!("inline policy {inline} removed"));
    }

    let attached = attached_policies(iam, &desired.name, &desired.arn).await?;
    if !attached.contains(&desired.policy_arn) {
        attach(iam, &desired.name, &desired.arn, &desired.policy_arn).await?;
        repaired.push("policy attachment".to_string());
    }
    // Anything else attached widens what Milvus can do: that is drift too.
    for other in attached.iter().filter(|a| **a != desired.policy_arn) {
        detach(iam, &desired.name, &desired.arn, other).await?;
        repaired.push(format!("foreign policy attachment {other}"));
    }

    let outcome = if repaired.is_empty() {
        Outcome::up_to_date(format!("role {arn} matches"))
    } else {
        Outcome::drift_corrected(format!("role {arn}: repaired {}", repaired.join(", ")))
    };
    Ok(RoleReport {
        outcome,
        arn,
        boundary_set_by_us,
    })
}

async fn get_policy(
    iam: &aws_sdk_iam::Client,
    arn: &str,
) -> Result<Option<aws_sdk_iam::types::Policy>, Error> {
    match iam.get_policy().policy_arn(arn).send().await {
        Ok(out) => Ok(out.policy),
        Err(e) => {
            let failure = AwsFailure::from_sdk(&e);
            if failure.is_code("NoSuchEntity") {
                Ok(None)
            } else {
                Err(Error::aws(Call::new(Operation::GetPolicy, arn), failure))
            }
        }
    }
}

async fn get_role(
    iam: &aws_sdk_iam::Client,
    name: &str,
    arn: &str,
) -> Result<Option<aws_sdk_iam::types::Role>, Error> {
    match iam.get_role().role_name(name).send().await {
        Ok(out) => Ok(out.role),
        Err(e) => {
            let failure = AwsFailure::from_sdk(&e);
            if failure.is_code("NoSuchEntity") {
                Ok(None)
            } else {
                Err(Error::aws(Call::new(Operation::GetRole, arn), failure))
            }
        }
    }
}

async fn attached_policies(iam: &aws_sdk_iam::Client, role: &str, arn: &str) -> Result<Vec<String>, Error> {
    let out = iam
        .list_attached_role_policies()
        .role_name(role)
        .send()
        .await
        .map_err(|e| {
            Error::aws(
                Call::new(Operation::ListAttachedRolePolicies, arn),
                AwsFailure::from_sdk(&e),
            )
        })?;
    Ok(out
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn().map(str::to_string))
        .collect())
}

/// Names of the role's inline policies (all pages).
async fn inline_policies(iam: &aws_sdk_iam::Client, role: &str, arn: &str) -> Result<Vec<String>, Error> {
    let mut names = vec![];
    let mut pages = iam.list_role_policies().role_name(role).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            Error::aws(
                Call::new(Operation::ListRolePolicies, arn),
                AwsFailure::from_sdk(&e),
            )
        })?;
        names.extend(page.policy_names().iter().cloned());
    }
    Ok(names)
}

async fn delete_inline(iam: &aws_sdk_iam::Client, role: &str, arn: &str, policy: &str) -> Result<(), Error> {
    let result = iam
        .delete_role_policy()
        .role_name(role)
        .policy_name(policy)
        .send()
        .await;
    gone_is_done(result, Call::new(Operation::DeleteRolePolicy, arn))
}

/// A removal whose target is already gone (NoSuchEntity) has nothing left to do.
fn gone_is_done<T, E>(
    result: Result<
        T,
        aws_sdk_iam::error::SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
    >,
    call: Call,
) -> Result<(), Error>
where
    E: aws_sdk_iam::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    match result {
        Ok(_) => Ok(()),
        Err(e) => {
            let failure = AwsFailure::from_sdk(&e);
            if failure.is_code("NoSuchEntity") {
                Ok(())
            } else {
                Err(Error::aws(call, failure))
            }
        }
    }
}

async fn attach(iam: &aws_sdk_iam::Client, role: &str, arn: &str, policy_arn: &str) -> Result<(), Error> {
    iam.attach_role_policy()
        .role_name(role)
        .policy_arn(policy_arn)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| {
            Error::aws(
                Call::new(Operation::AttachRolePolicy, arn),
                AwsFailure::from_sdk(&e),
            )
        })
}

async fn detach(iam: &aws_sdk_iam::Client, role: &str, arn: &str, policy_arn: &str) -> Result<(), Error> {
    let result = iam
        .detach_role_policy()
        .role_name(role)
        .policy_arn(policy_arn)
        .send()
        .await;
    gone_is_done(result, Call::new(Operation::DetachRolePolicy, arn))
}

/// Cleanup: detach every policy from our role, delete it, then delete our policy (all its
/// versions). Resources that are gone, or not tagged for this integration, are left alone.
///
/// A delete that is refused may have succeeded already: when the SDK retries a DeleteRole or
/// DeletePolicy whose answer was lost (a timeout, a reset connection), the role or policy is
/// gone, and IAM answers AccessDenied rather than NoSuchEntity to a caller whose permission
/// depends on the entity's tags and path (the operator's does: deploy/iam/operator-policy.json).
/// A read, which that policy allows whether the entity exists or not, tells the two apart.
pub async fn delete_role_and_policy(
    iam: &aws_sdk_iam::Client,
    role_name: &str,
    role_arn: &str,
    policy_arn: &str,
    uid: &str,
) -> Result<Vec<String>, Error> {
    let mut done = vec![];
    match iam.get_role().role_name(role_name).send().await {
        Ok(out) => {
            if let Some(role) = out.role.filter(|r| owned(r.tags(), uid).is_ok()) {
                for attached in attached_policies(iam, role_name, role_arn).await? {
                    detach(iam, role_name, role_arn, &attached).await?;
                }
                // Inline policies someone added would make DeleteRole fail forever.
                for inline in inline_policies(iam, role_name, role_arn).await? {
                    delete_inline(iam, role_name, role_arn, &inline).await?;
                }
                match iam.delete_role().role_name(role_name).send().await {
                    Ok(_) => done.push(format!("deleted role {}", role.arn())),
                    Err(e) => {
                        let failure = AwsFailure::from_sdk(&e);
                        let gone = failure.is_code("NoSuchEntity")
                            || failure.is_access_denied()
                                && get_role(iam, role_name, role_arn).await?.is_none();
                        if !gone {
                            return Err(Error::aws(Call::new(Operation::DeleteRole, role_arn), failure));
                        }
                    }
                }
            }
        }
        Err(e) => {
            let failure = AwsFailure::from_sdk(&e);
            if !failure.is_code("NoSuchEntity") {
                return Err(Error::aws(Call::new(Operation::GetRole, role_arn), failure));
            }
        }
    }

    match iam.get_policy().policy_arn(policy_arn).send().await {
        Ok(out) => {
            if out.policy.as_ref().is_some_and(|p| owned(p.tags(), uid).is_ok()) {
                let versions = iam
                    .list_policy_versions()
                    .policy_arn(policy_arn)
                    .send()
                    .await
                    .map_err(|e| {
                        Error::aws(
                            Call::new(Operation::ListPolicyVersions, policy_arn),
                            AwsFailure::from_sdk(&e),
                        )
                    })?;
                for v in versions.versions().iter().filter(|v| !v.is_default_version()) {
                    if let Some(id) = v.version_id() {
                        iam.delete_policy_version()
                            .policy_arn(policy_arn)
                            .version_id(id)
                            .send()
                            .await
                            .map_err(|e| {
                                Error::aws(
                                    Call::new(Operation::DeletePolicyVersion, policy_arn),
                                    AwsFailure::from_sdk(&e),
                                )
                            })?;
                    }
                }
                match iam.delete_policy().policy_arn(policy_arn).send().await {
                    Ok(_) => done.push(format!("deleted policy {policy_arn}")),
                    Err(e) => {
                        let failure = AwsFailure::from_sdk(&e);
                        let gone = failure.is_code("NoSuchEntity")
                            || failure.is_access_denied() && get_policy(iam, policy_arn).await?.is_none();
                        if !gone {
                            return Err(Error::aws(
                                Call::new(Operation::DeletePolicy, policy_arn),
                                failure,
                            ));
                        }
                    }
                }
            }
        }
        Err(e) => {
            let failure = AwsFailure::from_sdk(&e);
            if !failure.is_code("NoSuchEntity") {
                return Err(Error::aws(Call::new(Operation::GetPolicy, policy_arn), failure));
            }
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_boundary_is_enforced() {
        assert_eq!(
            boundary_change(None, Some("b"), None),
            BoundaryChange::Put("b".into())
        );
        assert_eq!(
            boundary_change(Some("x"), Some("b"), None),
            BoundaryChange::Put("b".into())
        );
        assert_eq!(
            boundary_change(Some("b"), Some("b"), Some("b")),
            BoundaryChange::None
        );
    }

    #[test]
    fn without_a_configured_boundary_only_ours_is_removed() {
        assert_eq!(boundary_change(Some("theirs"), None, None), BoundaryChange::None);
        assert_eq!(
            boundary_change(Some("theirs"), None, Some("ours")),
            BoundaryChange::None
        );
        assert_eq!(
            boundary_change(Some("ours"), None, Some("ours")),
            BoundaryChange::Delete
        );
        assert_eq!(boundary_change(None, None, Some("ours")), BoundaryChange::None);
    }
}
