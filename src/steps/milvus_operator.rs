//! The Milvus Operator as a target (`spec.milvus.milvusRef`): the storage wiring of a `Milvus`
//! object (milvus.io/v1beta1), by server-side apply with the integration's own field manager and
//! never with force. Only the fields below are applied; everything else in the object is the
//! user's (or their GitOps tool's). A field another manager owns is a conflict, reported with the
//! field and the manager, not a fight. `minio.address`/`minio.port` are never written: the Milvus
//! Operator deletes them from `spec.config`, so writing them would loop.

use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::error::Error;
use crate::steps::Outcome;

/// The Milvus Operator's API.
pub fn milvus_resource() -> ApiResource {
    ApiResource {
        group: "milvus.io".into(),
        version: "v1beta1".into(),
        api_version: "milvus.io/v1beta1".into(),
        kind: "Milvus".into(),
        plural: "milvuses".into(),
    }
}

/// What the integration wires into the Milvus object.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredStorage {
    pub bucket: String,
    pub root_path: String,
    pub region: String,
    pub service_account: String,
}

/// Pure: the apply configuration: exactly bucketwire's fields.
pub fn storage_patch(namespace: &str, name: &str, desired: &DesiredStorage) -> Value {
    json!({
        "apiVersion": "milvus.io/v1beta1",
        "kind": "Milvus",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "dependencies": {"storage": {
                "external": true,
                "type": "S3",
                "endpoint": format!("{}:443", crate::naming::s3_host(&desired.region)),
                // Explicitly empty: a secret left from before the move to IAM would give Milvus
                // static keys (or a missing secret) instead of the role.
                "secretRef": "",
            }},
            "config": {"minio": {
                "bucketName": desired.bucket,
                "rootPath": desired.root_path,
                "useSSL": true,
                "useIAM": true,
                "cloudProvider": "aws",
                "region": desired.region,
            }},
            "components": {"serviceAccountName": desired.service_account},
        },
    })
}

/// Pure: the object only says who it belongs to: applying it as our manager releases every
/// field only that manager owned.
pub fn release_patch(namespace: &str, name: &str) -> Value {
    json!({"apiVersion": "milvus.io/v1beta1", "kind": "Milvus", "metadata": {"name": name, "namespace": namespace}})
}

/// Pure: whether the Milvus Operator already set this Milvus up with in-cluster storage. Its
/// defaulting gives a Milvus whose storage is not external an `inCluster` section (and then
/// deploys MinIO for it); switching such a Milvus to S3 would leave its data behind in MinIO.
pub fn in_cluster_storage(object: &Value) -> bool {
    let storage = &object["spec"]["dependencies"]["storage"];
    storage["external"] != json!(true) && !storage["inCluster"].is_null()
}

/// Pure: (manager, fields) of an apply conflict message, e.g. `Apply failed with 1 conflict:
/// conflict with "argocd-controller" using milvus.io/v1beta1: .spec.config.minio.bucketName`
/// or, with several, `conflicts with "x" using ...:\n- .spec.a\n- .spec.b`.
pub fn parse_conflict(message: &str) -> Option<(String, Vec<String>)> {
    let after = message.split(" with \"").nth(1)?;
    let manager = after.split('"').next()?.to_string();
    let fields = after
        .split_once(':')
        .map(|(_, rest)| {
            rest.split(['\n', ','])
                .map(|f| f.trim().trim_start_matches("- ").trim())
                .filter(|f| f.starts_with('.'))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Some((manager, fields))
}

/// Reads the Milvus object; `Ok(None)` when it does not exist.
async fn get(api: &Api<DynamicObject>, namespace: &str, name: &str) -> Result<Option<DynamicObject>, Error> {
    match api.get(name).await {
        Ok(object) => Ok(Some(object)),
        Err(kube::Error::Api(status)) if status.code == 404 => {
            if status.message.contains("could not find the requested resource") {
                // The resource type itself is missing: no Milvus Operator CRD.
                return Err(Error::MilvusOperatorNotInstalled {
                    namespace: namespace.into(),
                    name: name.into(),
                });
            }
            Ok(None)
        }
        Err(err) => Err(Error::kube("get Milvus")(err)),
    }
}

/// Applies the storage wiring to `namespace/name` as `manager`.
pub async fn reconcile(
    client: &Client,
    namespace: &str,
    name: &str,
    manager: &str,
    desired: &DesiredStorage,
) -> Result<Outcome, Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &milvus_resource());
    let Some(existing) = get(&api, namespace, name).await? else {
        return Err(Error::MilvusNotFound {
            namespace: namespace.into(),
            name: name.into(),
        });
    };
    let observed = serde_json::to_value(&existing).unwrap_or_default();
    if in_cluster_storage(&observed) {
        return Err(Error::InClusterStorage {
            namespace: namespace.into(),
            name: name.into(),
        });
    }
    let before = existing.resource_version();
    let patch = storage_patch(namespace, name, desired);
    let applied = match api
        .patch(name, &PatchParams::apply(manager), &Patch::Apply(&patch))
        .await
    {
        Ok(applied) => applied,
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let (other, fields) = parse_conflict(&status.message).unwrap_or_default();
            return Err(Error::MilvusFieldConflict {
                namespace: namespace.into(),
                name: name.into(),
                manager: if other.is_empty() {
                    "another manager".into()
                } else {
                    other
                },
                fields: if fields.is_empty() {
                    status.message.clone()
                } else {
                    fields.join(", ")
                },
            });
        }
        Err(err) => return Err(Error::kube("apply Milvus storage")(err)),
    };
    Ok(if applied.resource_version() == before {
        Outcome::up_to_date(format!(
            "Milvus {namespace}/{name} uses s3://{}/{} through IAM as ServiceAccount {}",
            desired.bucket, desired.root_path, desired.service_account
        ))
    } else {
        Outcome::drift_corrected(format!(
            "applied the storage wiring to Milvus {namespace}/{name}: external S3 s3://{}/{} with useIAM, ServiceAccount {}",
            desired.bucket, desired.root_path, desired.service_account
        ))
    })
}

/// Gives up every field `manager` applied to `namespace/name` (the object and the user's fields
/// stay). Nothing to do when the object or the Milvus API is gone.
pub async fn release(
    client: &Client,
    namespace: &str,
    name: &str,
    manager: &str,
) -> Result<Option<String>, Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &milvus_resource());
    match get(&api, namespace, name).await {
        Ok(Some(_)) => {}
        Ok(None) | Err(Error::MilvusOperatorNotInstalled { .. }) => return Ok(None),
        Err(err) => return Err(err),
    }
    api.patch(
        name,
        &PatchParams::apply(manager),
        &Patch::Apply(&release_patch(namespace, name)),
    )
    .await
    .map_err(Error::kube("release Milvus storage fields"))?;
    Ok(Some(format!(
        "released bucketwire's storage fields of Milvus {namespace}/{name}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(region: &str) -> DesiredStorage {
        DesiredStorage {
            bucket: "bw-b".into(),
            root_path: "files".into(),
            region: region.into(),
            service_account: "milvus".into(),
        }
    }

    #[test]
    fn the_patch_holds_exactly_the_storage_wiring() {
        let patch = storage_patch("ns", "m", &desired("us-east-2"));
        assert_eq!(
            patch["spec"],
            json!({
                "dependencies": {"storage": {"external": true, "type": "S3",
                    "endpoint": "s3.us-east-2.amazonaws.com:443", "secretRef": ""}},
                "config": {"minio": {"bucketName": "bw-b", "rootPath": "files", "useSSL": true,
                    "useIAM": true, "cloudProvider": "aws", "region": "us-east-2"}},
                "components": {"serviceAccountName": "milvus"},
            })
        );
        // Never address/port: the Milvus Operator deletes them, so writing them would loop.
        let minio = patch["spec"]["config"]["minio"].as_object().expect("minio");
        assert!(!minio.contains_key("address") && !minio.contains_key("port"));
        assert_eq!(
            storage_patch("ns", "m", &desired("cn-north-1"))["spec"]["dependencies"]["storage"]["endpoint"],
            "s3.cn-north-1.amazonaws.com.cn:443"
        );
    }

    #[test]
    fn in_cluster_storage_is_a_non_external_storage_with_an_in_cluster_section() {
        let with = |storage: Value| json!({"spec": {"dependencies": {"storage": storage}}});
        assert!(in_cluster_storage(&with(json!({"inCluster": {"values": {}}}))));
        assert!(in_cluster_storage(&with(
            json!({"external": false, "inCluster": {"deletionPolicy": "Retain"}})
        )));
        assert!(!in_cluster_storage(&with(
            json!({"external": true, "type": "S3"})
        )));
        assert!(!in_cluster_storage(&with(json!({}))));
        assert!(!in_cluster_storage(&json!({"spec": {}})));
    }

    #[test]
    fn a_conflict_names_the_manager_and_the_fields() {
        assert_eq!(
            parse_conflict(
                "Apply failed with 1 conflict: conflict with \"argocd-controller\" using milvus.io/v1beta1: .spec.config.minio.bucketName"
            ),
            Some((
                "argocd-controller".into(),
                vec![".spec.config.minio.bucketName".into()]
            ))
        );
        assert_eq!(
            parse_conflict(
                "Apply failed with 2 conflicts: conflicts with \"flux\" using milvus.io/v1beta1:\n- .spec.config.minio.bucketName\n- .spec.components.serviceAccountName"
            ),
            Some((
                "flux".into(),
                vec![
                    ".spec.config.minio.bucketName".into(),
                    ".spec.components.serviceAccountName".into()
                ]
            ))
        );
    }
}
