//! The EKS pod identity association of a `PodIdentity` integration: it binds the Milvus
//! ServiceAccount to the role. Found by the ARN status recorded, else by List + Describe (List
//! has no role and no tags), tagged like every resource bucketwire owns, and never touched
//! unless it carries this integration's uid. EKS cannot move an association to another
//! ServiceAccount (Update changes only the role), so a new ServiceAccount means delete and
//! re-create.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_eks::types::PodIdentityAssociation;

use crate::aws::AwsFailure;
use crate::aws::actions::{Call, Operation};
use crate::documents::TAG_UID;
use crate::error::Error;
use crate::steps::Outcome;

/// What the association should be.
#[derive(Clone, Debug)]
pub struct DesiredAssociation {
    pub cluster: String,
    /// `arn:<partition>:eks:<region>:<account>:cluster/<name>`, for messages.
    pub cluster_arn: String,
    pub namespace: String,
    pub service_account: String,
    pub role_arn: String,
    pub tags: BTreeMap<String, String>,
    pub uid: String,
}

/// The step's outcome and the association's ARN (recorded in status).
pub struct AssociationReport {
    pub outcome: Outcome,
    pub arn: String,
}

/// The parts of `arn:<p>:eks:<region>:<account>:podidentityassociation/<cluster>/<id>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssociationRef {
    pub region: String,
    pub cluster: String,
    pub id: String,
}

/// Pure: reads an association ARN (as recorded in status).
pub fn parse_arn(arn: &str) -> Option<AssociationRef> {
    let mut fields = arn.splitn(6, ':');
    let (Some("arn"), Some(_partition), Some("eks"), Some(region), Some(_account), Some(resource)) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return None;
    };
    let mut parts = resource.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("podidentityassociation"), Some(cluster), Some(id), None)
            if !cluster.is_empty() && !id.is_empty() =>
        {
            Some(AssociationRef {
                region: region.to_string(),
                cluster: cluster.to_string(),
                id: id.to_string(),
            })
        }
        _ => None,
    }
}

/// Pure: whether an association carries this integration's uid.
pub fn is_ours(tags: Option<&HashMap<String, String>>, uid: &str) -> bool {
    tags.and_then(|t| t.get(TAG_UID)).map(String::as_str) == Some(uid)
}

/// Pure: what to do with an association of ours that exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// It binds the right ServiceAccount to the right role.
    Keep,
    /// Right ServiceAccount, another role: Update can fix it.
    UpdateRole,
    /// Another cluster, namespace or ServiceAccount: delete it (and create the right one).
    Replace,
}

pub fn decide(found: &PodIdentityAssociation, desired: &DesiredAssociation) -> Decision {
    let same_binding = found.cluster_name() == Some(desired.cluster.as_str())
        && found.namespace() == Some(desired.namespace.as_str())
        && found.service_account() == Some(desired.service_account.as_str());
    if !same_binding {
        Decision::Replace
    } else if found.role_arn() != Some(desired.role_arn.as_str()) {
        Decision::UpdateRole
    } else {
        Decision::Keep
    }
}

/// The advice every new association comes with: Pods read Pod Identity credentials only when
/// they start (the EKS webhook injects the agent's address into Pods at creation).
pub fn restart_advice(namespace: &str, service_account: &str) -> String {
    format!(
        "Pods that started before it get no credentials from it: restart Milvus, e.g. `kubectl -n {namespace} rollout restart deployment,statefulset -l app.kubernetes.io/instance=<your Milvus release>` (its Pods: `kubectl -n {namespace} get pods --field-selector spec.serviceAccountName={service_account}`)"
    )
}

/// Pure: the ARN of the cluster an association belongs to.
pub fn cluster_arn_of(association_arn: &str) -> String {
    match association_arn.split_once(":podidentityassociation/") {
        Some((head, rest)) => format!("{head}:cluster/{}", rest.split('/').next().unwrap_or_default()),
        None => association_arn.to_string(),
    }
}

fn association_arn(cluster_arn: &str, id: &str) -> String {
    // arn:<p>:eks:<region>:<account>:cluster/<name> -> ...:podidentityassociation/<name>/<id>
    cluster_arn.replacen(":cluster/", ":podidentityassociation/", 1) + "/" + id
}

/// Makes the association exist, bind `desired.service_account` to `desired.role_arn`, and be
/// the only one of this integration.
pub async fn reconcile(
    eks: &aws_sdk_eks::Client,
    desired: &DesiredAssociation,
    recorded: Option<&str>,
) -> Result<AssociationReport, Error> {
    let mut replaced = None;
    if let Some(recorded) = recorded.and_then(parse_arn) {
        match describe(eks, &recorded.cluster, &recorded.id, &desired.cluster_arn).await? {
            Some(found) if is_ours(found.tags(), &desired.uid) => match decide(&found, desired) {
                Decision::Keep => {
                    return Ok(AssociationReport {
                        outcome: Outcome::up_to_date(format!(
                            "pod identity association {} binds {}/{} to {}",
                            recorded.id, desired.namespace, desired.service_account, desired.role_arn
                        )),
                        arn: found.association_arn().unwrap_or_default().to_string(),
                    });
                }
                Decision::UpdateRole => return update_role(eks, desired, &found).await,
                Decision::Replace => {
                    delete(eks, &recorded.cluster, &recorded.id, &desired.cluster_arn).await?;
                    replaced = Some(format!(
                        "deleted pod identity association {} of {}/{} (EKS cannot move an association to another ServiceAccount)",
                        recorded.id,
                        found.namespace().unwrap_or_default(),
                        found.service_account().unwrap_or_default()
                    ));
                }
            },
            // Gone, or not ours (never touched): look for the ServiceAccount's association.
            _ => {}
        }
    }

    // The ServiceAccount's association, if any (one per ServiceAccount in a cluster).
    for id in list(eks, desired).await? {
        let Some(found) = describe(eks, &desired.cluster, &id, &desired.cluster_arn).await? else {
            continue;
        };
        if !is_ours(found.tags(), &desired.uid) {
            return Err(Error::OwnedElsewhere {
                kind: "pod identity association",
                name: format!(
                    "{id} of {}/{} in {}",
                    desired.namespace, desired.service_account, desired.cluster
                ),
                detail: format!(
                    "it binds the ServiceAccount to {}; EKS allows one association per ServiceAccount: delete that association or name another serviceAccount",
                    found.role_arn().unwrap_or("another role")
                ),
            });
        }
        // Ours, made by a reconcile that did not get to record it.
        return match decide(&found, desired) {
            Decision::UpdateRole => update_role(eks, desired, &found).await,
            _ => Ok(AssociationReport {
                outcome: Outcome::up_to_date(format!(
                    "pod identity association {id} binds {}/{} to {}",
                    desired.namespace, desired.service_account, desired.role_arn
                )),
                arn: found.association_arn().unwrap_or_default().to_string(),
            }),
        };
    }

    let created = create(eks, desired).await?;
    let id = created.association_id().unwrap_or_default().to_string();
    let arn = created
        .association_arn()
        .map(str::to_string)
        .unwrap_or_else(|| association_arn(&desired.cluster_arn, &id));
    let mut message = format!(
        "created pod identity association {id} binding {}/{} to {}; {}",
        desired.namespace,
        desired.service_account,
        desired.role_arn,
        restart_advice(&desired.namespace, &desired.service_account)
    );
    if let Some(replaced) = replaced {
        message = format!("{replaced}; {message}");
    }
    Ok(AssociationReport {
        outcome: Outcome::created(message),
        arn,
    })
}

/// Cleanup (deletion, or a switch to another mode): deletes the recorded association and any
/// association of this integration for the ServiceAccount, if they carry its uid. Returns what
/// was done.
pub async fn delete_ours(
    eks: &aws_sdk_eks::Client,
    desired: &DesiredAssociation,
    recorded: Option<&str>,
) -> Result<Vec<String>, Error> {
    let mut done = vec![];
    if let Some(recorded) = recorded.and_then(parse_arn)
        && let Some(found) = describe(eks, &recorded.cluster, &recorded.id, &desired.cluster_arn).await?
        && is_ours(found.tags(), &desired.uid)
    {
        delete(eks, &recorded.cluster, &recorded.id, &desired.cluster_arn).await?;
        done.push(format!("deleted pod identity association {}", recorded.id));
    }
    for id in list(eks, desired).await? {
        if let Some(found) = describe(eks, &desired.cluster, &id, &desired.cluster_arn).await?
            && is_ours(found.tags(), &desired.uid)
        {
            delete(eks, &desired.cluster, &id, &desired.cluster_arn).await?;
            done.push(format!("deleted pod identity association {id}"));
        }
    }
    Ok(done)
}

async fn list(eks: &aws_sdk_eks::Client, desired: &DesiredAssociation) -> Result<Vec<String>, Error> {
    let mut ids = vec![];
    let mut pages = eks
        .list_pod_identity_associations()
        .cluster_name(&desired.cluster)
        .namespace(&desired.namespace)
        .service_account(&desired.service_account)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            Error::aws(
                Call::new(Operation::ListPodIdentityAssociations, &desired.cluster_arn),
                AwsFailure::from_sdk(&e),
            )
        })?;
        ids.extend(
            page.associations()
                .iter()
                .filter_map(|a| a.association_id().map(str::to_string)),
        );
    }
    Ok(ids)
}

async fn describe(
    eks: &aws_sdk_eks::Client,
    cluster: &str,
    id: &str,
    cluster_arn: &str,
) -> Result<Option<PodIdentityAssociation>, Error> {
    match eks
        .describe_pod_identity_association()
        .cluster_name(cluster)
        .association_id(id)
        .send()
        .await
    {
        Ok(out) => Ok(out.association),
        Err(e) => {
            let failure = AwsFailure::from_sdk(&e);
            if failure.is_code("ResourceNotFoundException") {
                return Ok(None);
            }
            Err(Error::aws(
                Call::new(
                    Operation::DescribePodIdentityAssociation,
                    association_arn(cluster_arn, id),
                ),
                failure,
            ))
        }
    }
}

async fn create(
    eks: &aws_sdk_eks::Client,
    desired: &DesiredAssociation,
) -> Result<PodIdentityAssociation, Error> {
    // bucketwire's ownership tags only, as on IAM (the operator's policy allows no other keys).
    let tags: HashMap<String, String> = desired
        .tags
        .iter()
        .filter(|(key, _)| key.starts_with(crate::documents::TAG_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let out = eks
        .create_pod_identity_association()
        .cluster_name(&desired.cluster)
        .namespace(&desired.namespace)
        .service_account(&desired.service_account)
        .role_arn(&desired.role_arn)
        .set_tags(Some(tags))
        .send()
        .await
        .map_err(|e| {
            Error::aws(
                Call::new(Operation::CreatePodIdentityAssociation, &desired.cluster_arn),
                AwsFailure::from_sdk(&e),
            )
        })?;
    out.association
        .ok_or_else(|| Error::InvalidSpec("CreatePodIdentityAssociation returned no association".into()))
}

async fn update_role(
    eks: &aws_sdk_eks::Client,
    desired: &DesiredAssociation,
    found: &PodIdentityAssociation,
) -> Result<AssociationReport, Error> {
    let id = found.association_id().unwrap_or_default();
    let arn = found.association_arn().unwrap_or_default().to_string();
    eks.update_pod_identity_association()
        .cluster_name(&desired.cluster)
        .association_id(id)
        .role_arn(&desired.role_arn)
        .send()
        .await
        .map_err(|e| {
            Error::aws(
                Call::new(Operation::UpdatePodIdentityAssociation, &arn),
                AwsFailure::from_sdk(&e),
            )
        })?;
    Ok(AssociationReport {
        outcome: Outcome::drift_corrected(format!(
            "pod identity association {id} bound {}/{} to {}; it binds it to {} again",
            desired.namespace,
            desired.service_account,
            found.role_arn().unwrap_or("another role"),
            desired.role_arn
        )),
        arn,
    })
}

async fn delete(eks: &aws_sdk_eks::Client, cluster: &str, id: &str, cluster_arn: &str) -> Result<(), Error> {
    match eks
        .delete_pod_identity_association()
        .cluster_name(cluster)
        .association_id(id)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => {
            let failure = AwsFailure::from_sdk(&e);
            if failure.is_code("ResourceNotFoundException") {
                return Ok(());
            }
            Err(Error::aws(
                Call::new(
                    Operation::DeletePodIdentityAssociation,
                    association_arn(cluster_arn, id),
                ),
                failure,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired() -> DesiredAssociation {
        DesiredAssociation {
            cluster: "test".into(),
            cluster_arn: "arn:aws:eks:us-east-2:123456789012:cluster/test".into(),
            namespace: "milvus".into(),
            service_account: "milvus".into(),
            role_arn: "arn:aws:iam::123456789012:role/bucketwire/r".into(),
            tags: BTreeMap::new(),
            uid: "u-1".into(),
        }
    }

    fn found(namespace: &str, service_account: &str, role: &str) -> PodIdentityAssociation {
        PodIdentityAssociation::builder()
            .cluster_name("test")
            .namespace(namespace)
            .service_account(service_account)
            .role_arn(role)
            .build()
    }

    #[test]
    fn an_association_arn_names_region_cluster_and_id() {
        assert_eq!(
            parse_arn("arn:aws:eks:us-east-2:123456789012:podidentityassociation/test/a-abcdefghijklmnopq"),
            Some(AssociationRef {
                region: "us-east-2".into(),
                cluster: "test".into(),
                id: "a-abcdefghijklmnopq".into()
            })
        );
        assert_eq!(parse_arn("arn:aws:eks:us-east-2:123456789012:cluster/test"), None);
        assert_eq!(parse_arn("arn:aws:iam::123456789012:role/x"), None);
        assert_eq!(
            cluster_arn_of("arn:aws:eks:us-east-2:123456789012:podidentityassociation/test/a-1"),
            "arn:aws:eks:us-east-2:123456789012:cluster/test"
        );
        assert_eq!(
            association_arn(&desired().cluster_arn, "a-1"),
            "arn:aws:eks:us-east-2:123456789012:podidentityassociation/test/a-1"
        );
    }

    #[test]
    fn only_the_service_account_binding_decides_replace_and_only_the_role_update() {
        let d = desired();
        assert_eq!(
            decide(&found("milvus", "milvus", &d.role_arn), &d),
            Decision::Keep
        );
        assert_eq!(
            decide(
                &found("milvus", "milvus", "arn:aws:iam::123456789012:role/other"),
                &d
            ),
            Decision::UpdateRole
        );
        assert_eq!(
            decide(&found("milvus", "old-sa", &d.role_arn), &d),
            Decision::Replace
        );
        assert_eq!(
            decide(&found("other", "milvus", &d.role_arn), &d),
            Decision::Replace
        );
    }

    #[test]
    fn ownership_is_the_uid_tag() {
        let tags = HashMap::from([(TAG_UID.to_string(), "u-1".to_string())]);
        assert!(is_ours(Some(&tags), "u-1"));
        assert!(!is_ours(Some(&tags), "u-2"));
        assert!(!is_ours(None, "u-1"));
    }
}
