//! Steps 4 and 5: the Milvus ServiceAccount and the values ConfigMap, by server-side apply, so
//! we only ever own the fields we set. The ServiceAccount is written by a field manager of the
//! integration's own (`bucketwire/<name>`) and never with force: when another integration or a
//! GitOps tool sets the role annotation, the apiserver answers with a conflict, reported as
//! `ServiceAccountOwnedElsewhere`, instead of the two writers overwriting each other.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::api::FIELD_MANAGER;
use crate::documents::ROLE_ARN_ANNOTATION;
use crate::error::Error;
use crate::steps::Outcome;

pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_INTEGRATION: &str = "bucketwire.io/integration";

fn our_labels(integration: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED_BY.to_string(), "bucketwire".to_string()),
        (LABEL_INTEGRATION.to_string(), integration.to_string()),
    ])
}

/// The field manager of one integration's ServiceAccount writes (at most 128 characters).
pub fn service_account_manager(integration: &str) -> String {
    let manager = format!("{FIELD_MANAGER}/{integration}");
    if manager.len() <= 128 {
        return manager;
    }
    let digest = crate::naming::Owner {
        cluster: "",
        namespace: "",
        name: integration,
    }
    .short_hash();
    format!("{}-{digest}", &manager[..110])
}

/// The manager named in an apply conflict ("Apply failed with 1 conflict: conflict with
/// \"<manager>\" ..."), if the error is one.
fn conflicting_manager(err: &kube::Error) -> Option<String> {
    let kube::Error::Api(response) = err else {
        return None;
    };
    if response.code != 409 {
        return None;
    }
    let after = response.message.split("conflict with \"").nth(1)?;
    Some(after.split('"').next().unwrap_or_default().to_string())
}

/// Whether we created this ServiceAccount (and so may delete it).
fn created_by_us(sa: &ServiceAccount, integration: &str) -> bool {
    let labels = sa.labels();
    labels.get(LABEL_MANAGED_BY).map(String::as_str) == Some("bucketwire")
        && labels.get(LABEL_INTEGRATION).map(String::as_str) == Some(integration)
}

/// Which manager owns the role annotation `annotation` of a ServiceAccount (from its
/// managedFields).
fn annotation_manager(sa: &ServiceAccount, annotation: &str) -> Option<String> {
    let key = format!("f:{annotation}");
    sa.metadata.managed_fields.as_ref()?.iter().find_map(|entry| {
        let owns = entry
            .fields_v1
            .as_ref()
            .and_then(|f| f.0.get("f:metadata"))
            .and_then(|m| m.get("f:annotations"))
            .and_then(|a| a.get(&key))
            .is_some();
        owns.then(|| entry.manager.clone().unwrap_or_default())
    })
}

/// `key` is the role annotation of the identity mechanism: IRSA's `eks.amazonaws.com/role-arn`
/// or ACK's pod-identity webhook's `pod-identity.alibabacloud.com/role-name`. Given a value
/// (IRSA; RRSA through the webhook), annotates the ServiceAccount (creating it if allowed).
/// Without one (Pod Identity; RRSA through the values) the ServiceAccount must not carry that
/// annotation (with both, the SDKs use IRSA; the webhook would inject a second set of
/// variables): bucketwire's own is removed, anyone else's is reported.
pub async fn reconcile_service_account(
    client: &Client,
    namespace: &str,
    name: &str,
    create: bool,
    integration: &str,
    key: &str,
    role_arn: Option<&str>,
) -> Result<Outcome, Error> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let existing = api
        .get_opt(name)
        .await
        .map_err(Error::kube("get ServiceAccount"))?;
    let annotation = existing
        .as_ref()
        .and_then(|sa| sa.annotations().get(key).cloned());
    let labels = match &existing {
        None if !create => {
            return Err(Error::ServiceAccountNotFound {
                namespace: namespace.into(),
                name: name.into(),
            });
        }
        None => Some(our_labels(integration)),
        Some(sa) => {
            match (role_arn, annotation.as_deref()) {
                (Some(want), Some(have)) if want == have => {
                    return Ok(Outcome::up_to_date(format!(
                        "ServiceAccount {namespace}/{name} is annotated"
                    )));
                }
                (None, None) => {
                    return Ok(Outcome::up_to_date(format!(
                        "ServiceAccount {namespace}/{name} exists, without {key}"
                    )));
                }
                (None, Some(_)) => {
                    let manager = annotation_manager(sa, key).unwrap_or_default();
                    let ours = [service_account_manager(integration), FIELD_MANAGER.to_string()];
                    if !ours.contains(&manager) {
                        let manager = if manager.is_empty() {
                            "an unknown manager".to_string()
                        } else {
                            manager
                        };
                        return Err(if key == ROLE_ARN_ANNOTATION {
                            Error::IrsaAnnotationPresent {
                                namespace: namespace.into(),
                                name: name.into(),
                                manager,
                            }
                        } else {
                            Error::ServiceAccountOwnedElsewhere {
                                namespace: namespace.into(),
                                name: name.into(),
                                manager,
                                annotation: key.into(),
                            }
                        });
                    }
                }
                _ => {}
            }
            // Our labels only on a ServiceAccount we created; an existing one just gets the annotation.
            created_by_us(sa, integration).then(|| our_labels(integration))
        }
    };
    let mut metadata = json!({"name": name, "namespace": namespace, "labels": labels});
    if let Some(role_arn) = role_arn {
        metadata["annotations"] = json!({ key: role_arn });
    }
    let patch = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata});
    // No force: a conflict means someone else sets this annotation. Without the annotation
    // (Pod Identity), applying drops it if, and only if, this manager was its only owner.
    match api
        .patch(
            name,
            &PatchParams::apply(&service_account_manager(integration)),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => {}
        Err(err) => {
            return Err(match conflicting_manager(&err) {
                Some(manager) => Error::ServiceAccountOwnedElsewhere {
                    namespace: namespace.into(),
                    name: name.into(),
                    manager,
                    annotation: key.into(),
                },
                None => Error::kube("apply ServiceAccount")(err),
            });
        }
    }
    if role_arn.is_none() && annotation.is_some() {
        // bucketwire releases before 0.2 applied the annotation as the shared manager.
        api.patch(
            name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}})),
        )
        .await
        .map_err(Error::kube("release ServiceAccount annotation"))?;
    }
    Ok(match (existing, role_arn) {
        (None, _) => Outcome::created(format!("created ServiceAccount {namespace}/{name}")),
        (Some(_), Some(_)) => {
            Outcome::drift_corrected(format!("annotated ServiceAccount {namespace}/{name} with {key}"))
        }
        (Some(_), None) if key == ROLE_ARN_ANNOTATION => Outcome::drift_corrected(format!(
            "removed bucketwire's {key} from ServiceAccount {namespace}/{name}: with Pod Identity it must not carry one (the SDKs would use IRSA)"
        )),
        (Some(_), None) => Outcome::drift_corrected(format!(
            "removed bucketwire's {key} from ServiceAccount {namespace}/{name}: the values carry the RRSA variables, so the webhook must not inject them too"
        )),
    })
}

/// Cleanup: delete the ServiceAccount if we created it, otherwise give up our fields
/// (the annotation) by applying an empty configuration as our field manager.
pub async fn release_service_account(
    client: &Client,
    namespace: &str,
    name: &str,
    integration: &str,
    key: &str,
    role_arn: Option<&str>,
) -> Result<Option<String>, Error> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let Some(sa) = api
        .get_opt(name)
        .await
        .map_err(Error::kube("get ServiceAccount"))?
    else {
        return Ok(None);
    };
    if created_by_us(&sa, integration) {
        api.delete(name, &DeleteParams::default())
            .await
            .map_err(Error::kube("delete ServiceAccount"))?;
        return Ok(Some(format!("deleted ServiceAccount {namespace}/{name}")));
    }
    // Only our own annotation: another integration's (or anyone else's) value stays.
    let annotation = sa.annotations().get(key).map(String::as_str);
    if annotation.is_none() || annotation != role_arn {
        return Ok(None);
    }
    let empty = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}});
    // Our manager gives up its fields; so does the shared manager of bucketwire releases
    // before 0.2 (`bucketwire`), which set the same value.
    for manager in [service_account_manager(integration), FIELD_MANAGER.to_string()] {
        api.patch(name, &PatchParams::apply(&manager), &Patch::Apply(&empty))
            .await
            .map_err(Error::kube("release ServiceAccount annotation"))?;
    }
    Ok(Some(format!(
        "removed {key} from ServiceAccount {namespace}/{name}"
    )))
}

/// Writes the values ConfigMap, owned by the integration so that it goes with it.
pub async fn reconcile_values(
    client: &Client,
    namespace: &str,
    name: &str,
    owner: OwnerReference,
    integration: &str,
    values_yaml: &str,
) -> Result<Outcome, Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let existing = api.get_opt(name).await.map_err(Error::kube("get ConfigMap"))?;
    if let Some(cm) = &existing {
        if !cm.owner_references().iter().any(|r| r.uid == owner.uid) {
            return Err(Error::ConfigMapOwnedElsewhere {
                namespace: namespace.into(),
                name: name.into(),
            });
        }
        let current = cm.data.as_ref().and_then(|d| d.get("values.yaml"));
        if current.map(String::as_str) == Some(values_yaml) {
            return Ok(Outcome::up_to_date(format!(
                "ConfigMap {namespace}/{name} is current"
            )));
        }
    }
    let patch = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": our_labels(integration),
            "ownerReferences": [owner],
        },
        "data": {"values.yaml": values_yaml},
    });
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(Error::kube("apply ConfigMap"))?;
    let message = format!("wrote values.yaml to ConfigMap {namespace}/{name}");
    Ok(if existing.is_none() {
        Outcome::created(message)
    } else {
        Outcome::drift_corrected(message)
    })
}
