//! Steps 2 and 3 on Alibaba Cloud: the RAM permission policy and the RAM role, with IAM's
//! rules: created tagged as this integration's, never taken over when someone else's (the
//! `bucketwire.io/uid` tag decides), documents compared semantically, a changed policy written
//! as a new default version, a changed trust policy rewritten, the policy attached.

use std::collections::BTreeMap;

use serde_json::Value;

use super::api_error;
use super::naming;
use super::openapi::OpenApi;
use super::services::Tagged;
use super::signer::AccessKey;
use crate::documents::{TAG_UID, documents_equivalent};
use crate::error::Error;
use crate::steps::Outcome;

/// The RAM policy an integration owns.
#[derive(Clone, Debug)]
pub struct DesiredPolicy {
    pub name: String,
    pub document: Value,
    pub description: String,
    pub tags: BTreeMap<String, String>,
    pub uid: String,
}

/// The RAM role an integration owns.
#[derive(Clone, Debug)]
pub struct DesiredRole {
    pub name: String,
    pub trust: Value,
    pub description: String,
    pub policy_name: String,
    pub tags: BTreeMap<String, String>,
    pub uid: String,
}

/// The role as it is in RAM once the step ran.
pub struct RoleReport {
    pub outcome: Outcome,
    pub arn: String,
    /// Its trust policy as RAM holds it (what validation checks).
    pub trust: Value,
}

fn resource(account: &str, kind: &str, name: &str) -> String {
    format!("acs:ram::{account}:{kind}/{name}")
}

/// Pure: whether tags say this integration owns the resource; why not otherwise.
pub fn owned(tags: &BTreeMap<String, String>, uid: &str) -> Result<(), String> {
    match tags.get(TAG_UID) {
        Some(found) if found == uid => Ok(()),
        Some(found) => Err(format!("its {TAG_UID} tag is {found}")),
        None => Err(format!("it has no {TAG_UID} tag")),
    }
}

async fn check_owned(
    api: &OpenApi,
    key: &AccessKey,
    account: &str,
    kind: Tagged,
    name: &str,
    uid: &str,
) -> Result<(), Error> {
    let (label, ram_kind, action) = match kind {
        Tagged::Role => ("RAM role", "role", "ram:ListTagResources"),
        Tagged::Policy => ("RAM policy", "policy", "ram:ListTagResources"),
    };
    let tags = api
        .list_tags(key, kind, name)
        .await
        .map_err(|e| api_error(action, &resource(account, ram_kind, name), e))?;
    owned(&tags, uid).map_err(|detail| Error::OwnedElsewhere {
        kind: label,
        name: name.to_string(),
        detail,
    })
}

/// Step 2: the permission policy.
pub async fn reconcile_policy(
    api: &OpenApi,
    key: &AccessKey,
    account: &str,
    desired: &DesiredPolicy,
) -> Result<Outcome, Error> {
    let name = desired.name.as_str();
    let arn = resource(account, "policy", name);
    let existing = api
        .get_policy(key, name)
        .await
        .map_err(|e| api_error("ram:GetPolicy", &arn, e))?;
    let Some(existing) = existing else {
        api.create_policy(key, name, &desired.document, &desired.description, &desired.tags)
            .await
            .map_err(|e| api_error("ram:CreatePolicy", &arn, e))?;
        return Ok(Outcome::created(format!("created RAM policy {name}")));
    };
    check_owned(api, key, account, Tagged::Policy, name, &desired.uid).await?;
    if documents_equivalent(&existing.document, &desired.document) {
        return Ok(Outcome::up_to_date(format!("RAM policy {name} is current")));
    }
    api.create_policy_version(key, name, &desired.document)
        .await
        .map_err(|e| api_error("ram:CreatePolicyVersion", &arn, e))?;
    Ok(Outcome::drift_corrected(format!(
        "RAM policy {name}: wrote the desired document as a new default version (was version {})",
        existing.default_version
    )))
}

/// Step 3: the role, its trust policy, and the permission policy attached to it.
pub async fn reconcile_role(
    api: &OpenApi,
    key: &AccessKey,
    account: &str,
    desired: &DesiredRole,
) -> Result<RoleReport, Error> {
    let name = desired.name.as_str();
    let arn = naming::role_arn(account, name);
    let existing = api
        .get_role(key, name)
        .await
        .map_err(|e| api_error("ram:GetRole", &arn, e))?;
    let mut fixes = vec![];
    let (outcome_created, role) = match existing {
        None => {
            let role = api
                .create_role(key, name, &desired.trust, &desired.description, &desired.tags)
                .await
                .map_err(|e| api_error("ram:CreateRole", &arn, e))?;
            (true, role)
        }
        Some(role) => {
            check_owned(api, key, account, Tagged::Role, name, &desired.uid).await?;
            if !documents_equivalent(&role.trust, &desired.trust) {
                api.update_role_trust(key, name, &desired.trust)
                    .await
                    .map_err(|e| api_error("ram:UpdateRole", &arn, e))?;
                fixes.push("trust policy");
            }
            (false, role)
        }
    };
    let arn = if role.arn.is_empty() {
        arn
    } else {
        role.arn.clone()
    };
    let attached = api
        .list_policies_for_role(key, name)
        .await
        .map_err(|e| api_error("ram:ListPoliciesForRole", &arn, e))?
        .unwrap_or_default();
    if !attached.iter().any(|p| p == &desired.policy_name) {
        api.attach_policy_to_role(key, &desired.policy_name, name)
            .await
            .map_err(|e| api_error("ram:AttachPolicyToRole", &arn, e))?;
        if !outcome_created {
            fixes.push("policy attachment");
        }
    }
    let outcome = if outcome_created {
        Outcome::created(format!("created RAM role {arn}"))
    } else if fixes.is_empty() {
        Outcome::up_to_date(format!("RAM role {arn} is current"))
    } else {
        Outcome::drift_corrected(format!("RAM role {arn}: repaired {}", fixes.join(", ")))
    };
    Ok(RoleReport {
        outcome,
        arn,
        trust: desired.trust.clone(),
    })
}

/// Cleanup: the role (its policy detached first) and the policy, each only if tagged as this
/// integration's. Answers what was done.
pub async fn delete_role_and_policy(
    api: &OpenApi,
    key: &AccessKey,
    account: &str,
    role_name: &str,
    policy_name: &str,
    uid: &str,
) -> Result<Vec<String>, Error> {
    let mut done = vec![];
    let role_arn = naming::role_arn(account, role_name);
    let role = api
        .get_role(key, role_name)
        .await
        .map_err(|e| api_error("ram:GetRole", &role_arn, e))?;
    if role.is_some()
        && check_owned(api, key, account, Tagged::Role, role_name, uid)
            .await
            .is_ok()
    {
        for attached in api
            .list_policies_for_role(key, role_name)
            .await
            .map_err(|e| api_error("ram:ListPoliciesForRole", &role_arn, e))?
            .unwrap_or_default()
        {
            api.detach_policy_from_role(key, &attached, role_name)
                .await
                .map_err(|e| api_error("ram:DetachPolicyFromRole", &role_arn, e))?;
        }
        api.delete_role(key, role_name)
            .await
            .map_err(|e| api_error("ram:DeleteRole", &role_arn, e))?;
        done.push(format!("deleted RAM role {role_arn}"));
    }
    let policy_arn = resource(account, "policy", policy_name);
    let policy = api
        .get_policy(key, policy_name)
        .await
        .map_err(|e| api_error("ram:GetPolicy", &policy_arn, e))?;
    if policy.is_some()
        && check_owned(api, key, account, Tagged::Policy, policy_name, uid)
            .await
            .is_ok()
    {
        match api.delete_policy(key, policy_name, false).await {
            Ok(()) => {}
            // Only its older versions are left (drift repairs wrote them): RAM deletes them
            // with the policy. An attachment elsewhere (DeleteConflict.Policy.Role/.User) is
            // someone's use of it: reported, never cascaded away.
            Err(e) if e.code() == Some("DeleteConflict.Policy.Version") => api
                .delete_policy(key, policy_name, true)
                .await
                .map_err(|e| api_error("ram:DeletePolicy", &policy_arn, e))?,
            Err(e) => return Err(api_error("ram:DeletePolicy", &policy_arn, e)),
        }
        done.push(format!("deleted RAM policy {policy_name}"));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_uid_tag_makes_a_ram_resource_ours() {
        let ours = BTreeMap::from([(TAG_UID.to_string(), "u1".to_string())]);
        assert!(owned(&ours, "u1").is_ok());
        assert!(owned(&ours, "u2").unwrap_err().contains("u1"));
        assert!(owned(&BTreeMap::new(), "u1").unwrap_err().contains("no"));
    }
}
