//! The client half of `make demo` (scripts/demo.sh runs the operator): installs the CRD,
//! applies an integration, waits for Ready and prints what a user would look at.
//!
//!     demo install-crd
//!     demo apply examples/milvus-prod.yaml

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use bucketwire::api::{BucketIntegration, Provider};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let client = Client::try_default().await?;
    match args.get(1).map(String::as_str) {
        Some("install-crd") => install_crd(&client).await,
        Some("apply") => apply(&client, args.get(2).ok_or("usage: demo apply FILE")?).await,
        _ => Err("usage: demo install-crd | demo apply FILE".into()),
    }
}

async fn install_crd(client: &Client) -> Result<()> {
    let crd: CustomResourceDefinition = serde_yaml::from_str(&bucketwire::crd::crd_yaml()?)?;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.name_any();
    api.patch(
        &name,
        &PatchParams::apply("bucketwire-demo").force(),
        &Patch::Apply(&crd),
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let established = api
            .get(&name)
            .await?
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default();
        if established
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
        {
            println!("customresourcedefinition.apiextensions.k8s.io/{name} established");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("CRD {name} not established").into())
}

async fn apply(client: &Client, file: &str) -> Result<()> {
    let bi: BucketIntegration = serde_yaml::from_str(&std::fs::read_to_string(file)?)?;
    let ns = bi.namespace().ok_or("the example needs a namespace")?;
    let name = bi.name_any();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .patch(
            &ns,
            &PatchParams::apply("bucketwire-demo"),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})),
        )
        .await?;
    let api: Api<BucketIntegration> = Api::namespaced(client.clone(), &ns);
    api.patch(&name, &PatchParams::apply("bucketwire-demo"), &Patch::Apply(&bi))
        .await?;
    println!("bucketintegration.bucketwire.io/{name} applied in namespace {ns}");

    let started = Instant::now();
    let mut last = String::new();
    let bi = loop {
        let bi = api.get(&name).await?;
        let ready = bi
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready").cloned());
        if let Some(c) = &ready {
            let line = format!("  Ready={} {}: {}", c.status, c.reason, c.message);
            if line != last {
                println!("{line}");
                last = line;
            }
            if c.status == "True" {
                break bi;
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err(format!("{name} did not become Ready within 60s").into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    println!("Ready after {:.1}s\n", started.elapsed().as_secs_f64());

    let status = bi.status.clone().unwrap_or_default();
    let cond = |t: &str| {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == t)
            .map(|c| c.status.clone())
            .unwrap_or_default()
    };
    let bucket = status
        .bucket
        .as_ref()
        .and_then(|b| b.name.clone())
        .unwrap_or_default();
    println!("$ kubectl get bi -n {ns}");
    println!(
        "{:<14} {:<34} {:<10} {:<6} {:<10} AGE",
        "NAME", "BUCKET", "REGION", "READY", "VALIDATED"
    );
    println!(
        "{:<14} {:<34} {:<10} {:<6} {:<10} {}s\n",
        name,
        bucket,
        bi.spec.region,
        cond("Ready"),
        cond("Validated"),
        started.elapsed().as_secs()
    );
    println!("conditions:");
    for c in &status.conditions {
        println!("  {:<20} {:<8} {:<16} {}", c.type_, c.status, c.reason, c.message);
    }
    let validated = status
        .last_validated
        .as_ref()
        .map(|t| t.0.to_string())
        .unwrap_or_default();
    let exchange = match bi.spec.provider {
        Provider::Aws => "AssumeRoleWithWebIdentity",
        Provider::Alibaba => "AssumeRoleWithOIDC",
    };
    println!("\nlast validated:  {validated} (TokenRequest, {exchange}, the probe as the ServiceAccount)");
    println!("role ARN:        {}", status.role_arn.clone().unwrap_or_default());
    println!(
        "policy ARN:      {}",
        status.policy_arn.clone().unwrap_or_default()
    );
    println!(
        "OIDC provider:   {}",
        status.oidc_provider_arn.clone().unwrap_or_default()
    );
    let sa_name = status.service_account.clone().unwrap_or_default();
    let sa_short = sa_name.rsplit('/').next().unwrap_or_default().to_string();
    let sa = Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .get(&sa_short)
        .await?;
    match sa.annotations().get("eks.amazonaws.com/role-arn") {
        Some(role) => println!("ServiceAccount:  {sa_name} (eks.amazonaws.com/role-arn={role})"),
        None => println!("ServiceAccount:  {sa_name}"),
    }
    let cm_name = status.values_config_map.clone().unwrap_or_default();
    let cm = Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .get(&cm_name)
        .await?;
    let values = cm
        .data
        .and_then(|d| d.get("values.yaml").cloned())
        .unwrap_or_default();
    println!(
        "\nvalues.yaml from ConfigMap {ns}/{cm_name} (helm upgrade milvus milvus/milvus -f values.yaml):"
    );
    for line in values.lines() {
        println!("  {line}");
    }
    Ok(())
}
