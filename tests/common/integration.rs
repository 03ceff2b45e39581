//! Helpers for tests that run the operator: creating integrations, waiting on conditions,
//! reading Events.

use std::time::Duration;

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};

use bucketwire::api::BucketIntegration;

use super::operator::Operator;

pub async fn create(client: &Client, ns: &str, name: &str, spec: Value) -> BucketIntegration {
    let obj: BucketIntegration = serde_json::from_value(json!({
        "apiVersion": "bucketwire.io/v1alpha1",
        "kind": "BucketIntegration",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }))
    .expect("integration");
    Api::<BucketIntegration>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &obj)
        .await
        .expect("the integration is accepted")
}

pub fn condition(bi: &BucketIntegration, type_: &str) -> Option<Condition> {
    bi.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .cloned()
}

/// Waits until condition `type_` has `status` (and `reason`, if given).
pub async fn wait_condition(
    client: &Client,
    ns: &str,
    name: &str,
    type_: &str,
    status: &str,
    reason: Option<&str>,
    operator: &Operator,
) -> BucketIntegration {
    let api: Api<BucketIntegration> = Api::namespaced(client.clone(), ns);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let bi = api.get(name).await.expect("integration reads");
        if let Some(c) = condition(&bi, type_)
            && c.status == status
            && reason.is_none_or(|r| c.reason == r)
        {
            return bi;
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "{ns}/{name}: {type_} did not become {status} {reason:?}; status: {}\noperator log:\n{}",
                serde_json::to_string_pretty(&bi.status).unwrap_or_default(),
                operator.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn wait_ready(client: &Client, ns: &str, name: &str, operator: &Operator) -> BucketIntegration {
    wait_condition(client, ns, name, "Ready", "True", None, operator).await
}

/// (reason, message) of every Event about the integration `name`.
pub async fn events(client: &Client, ns: &str, name: &str) -> Vec<(String, String)> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let list = api.list(&ListParams::default()).await.expect("events list");
    list.items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect()
}

/// Waits for Ready and returns the status.
pub async fn ready_status(
    client: &Client,
    ns: &str,
    name: &str,
    operator: &Operator,
) -> bucketwire::api::BucketIntegrationStatus {
    wait_ready(client, ns, name, operator)
        .await
        .status
        .expect("a Ready integration has a status")
}
