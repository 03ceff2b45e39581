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
    /// `host:port` of the store's S3-compatible endpoint (Milvus always speaks S3 to it).
    pub endpoint: String,
    /// Milvus's `minio.cloudProvider`: `aws` or `aliyun` (which credential chain `useIAM` reads).
    pub cloud_provider: &'static str,
    /// Virtual-host addressing (`minio.useVirtualHost`): OSS refuses path-style requests.
    pub virtual_host: bool,
    /// What every component's Pod needs beyond the ServiceAccount (RRSA without ACK's webhook:
    /// the variables, the token volume and its mount); `None` leaves those fields alone.
    pub pods: Option<PodWiring>,
}

/// `spec.components.{env, volumes, volumeMounts}` of a Milvus object. The CRD declares them as
/// plain lists, so server-side apply treats each list as one field: whoever else sets one of
/// them is a conflict (reported, never forced).
#[derive(Clone, Debug, PartialEq)]
pub struct PodWiring {
    pub env: Value,
    pub volumes: Value,
    pub volume_mounts: Value,
}

impl DesiredStorage {
    /// The AWS wiring: S3's regional endpoint, IAM through the ServiceAccount.
    pub fn aws(bucket: &str, root_path: &str, region: &str, service_account: &str) -> Self {
        DesiredStorage {
            bucket: bucket.into(),
            root_path: root_path.into(),
            region: region.into(),
            service_account: service_account.into(),
            endpoint: format!("{}:443", crate::naming::s3_host(region)),
            cloud_provider: "aws",
            virtual_host: false,
            pods: None,
        }
    }

    /// `s3://bucket/root` or `oss://bucket/root`, for messages.
    fn url(&self) -> String {
        let scheme = if self.cloud_provider == "aliyun" {
            "oss"
        } else {
            "s3"
        };
        format!("{scheme}://{}/{}", self.bucket, self.root_path)
    }
}

/// Pure: the apply configuration: exactly bucketwire's fields.
pub fn storage_patch(namespace: &str, name: &str, desired: &DesiredStorage) -> Value {
    let mut patch = json!({
        "apiVersion": "milvus.io/v1beta1",
        "kind": "Milvus",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "dependencies": {"storage": {
                "external": true,
                "type": "S3",
                "endpoint": desired.endpoint,
                // Explicitly empty: a secret left from before the move to IAM would give Milvus
                // static keys (or a missing secret) instead of the role.
                "secretRef": "",
            }},
            "config": {"minio": {
                "bucketName": desired.bucket,
                "rootPath": desired.root_path,
                "useSSL": true,
                "useIAM": true,
                "cloudProvider": desired.cloud_provider,
                "region": desired.region,
            }},
            "components": {"serviceAccountName": desired.service_account},
        },
    });
    if desired.virtual_host {
        patch["spec"]["config"]["minio"]["useVirtualHost"] = json!(true);
    }
    if let Some(pods) = &desired.pods {
        let components = &mut patch["spec"]["components"];
        components["env"] = pods.env.clone();
        components["volumes"] = pods.volumes.clone();
        components["volumeMounts"] = pods.volume_mounts.clone();
    }
    patch
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
                hint: if fields.iter().any(|f| {
                    f.starts_with(".spec.components.env") || f.starts_with(".spec.components.volume")
                }) {
                    " (the Pods' env and volumes carry RRSA's variables and token here: with provider alibaba, spec.alibaba.rrsaInjection: Webhook leaves them to ACK's pod-identity webhook)".into()
                } else {
                    String::new()
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
            "Milvus {namespace}/{name} uses {} through {} as ServiceAccount {}",
            desired.url(),
            identity(desired),
            desired.service_account
        ))
    } else {
        Outcome::drift_corrected(format!(
            "applied the storage wiring to Milvus {namespace}/{name}: external {} with useIAM through {}, ServiceAccount {}",
            desired.url(),
            identity(desired),
            desired.service_account
        ))
    })
}

/// How the Milvus Pods get their credentials, for messages.
fn identity(desired: &DesiredStorage) -> &'static str {
    match (desired.cloud_provider, desired.pods.is_some()) {
        ("aliyun", true) => "RRSA (the token and variables on every component)",
        ("aliyun", false) => "RRSA (ACK's pod-identity webhook)",
        _ => "IAM",
    }
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
        DesiredStorage::aws("bw-b", "files", region, "milvus")
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
