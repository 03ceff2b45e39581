//! The real Milvus Helm chart (../shared/fixtures/milvus-helm: zilliztech/milvus-helm chart
//! 5.0.19, Milvus 2.6.15, unchanged, subcharts included) rendered offline by the test bed's Helm
//! with the values bucketwire writes, in the chart's cluster and standalone modes: Milvus's own
//! configuration must point at the bucket through IAM with no keys, no MinIO may be rendered, and
//! every Milvus workload must run as the wired ServiceAccount.
//!
//! The values are `documents::milvus_values`, what the values step writes for every mode with a
//! workload in the cluster (IRSA and PodIdentity alike: credentials come from the ServiceAccount's
//! wiring, not from the values), so the table has a row per mode and per partition's host.

mod common;

use serde::Deserialize;
use serde_json::Value;

use bucketwire::documents::{milvus_values, render_values};
use common::cli::helm;
use common::fixture;

struct Row {
    mode: &'static str,
    region: &'static str,
    host: &'static str,
}

const ROWS: &[Row] = &[
    Row {
        mode: "IRSA",
        region: "us-east-2",
        host: "s3.us-east-2.amazonaws.com",
    },
    Row {
        mode: "PodIdentity",
        region: "us-east-2",
        host: "s3.us-east-2.amazonaws.com",
    },
    Row {
        mode: "IRSA",
        region: "cn-north-1",
        host: "s3.cn-north-1.amazonaws.com.cn",
    },
];

/// `helm template` of the fixture chart with `values`, the chart's mode set by `--set`.
fn render(values: &str, set: &str) -> Vec<Value> {
    let dir = common::cli::root().join("target/testbed/tmp");
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let file = dir.join(format!("milvus-values-{}.yaml", std::process::id()));
    std::fs::write(&file, values).expect("values written");
    let chart = fixture("milvus-helm/milvus");
    let out = helm(
        &[
            "template",
            "my-release",
            chart.to_str().expect("path"),
            "--namespace",
            "milvus",
            "--values",
            file.to_str().expect("path"),
            "--set",
            set,
        ],
        None,
    );
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_file(&file);
    let text = String::from_utf8(out.stdout).expect("utf-8");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("a rendered document is YAML"))
        .filter(|doc| !doc.is_null())
        .collect()
}

fn pod_spec(doc: &Value) -> Option<&Value> {
    match doc["kind"].as_str()? {
        "Deployment" | "StatefulSet" | "Job" | "DaemonSet" => Some(&doc["spec"]["template"]["spec"]),
        "CronJob" => Some(&doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]),
        _ => None,
    }
}

#[test]
fn the_real_milvus_chart_renders_iam_storage_without_keys_as_the_wired_service_account() {
    for row in ROWS {
        let values = render_values(&milvus_values("milvus-s3-sa", "bw-bucket", "files", row.region))
            .expect("values render");
        for (chart_mode, set, mq) in [
            ("cluster", "cluster.enabled=true", "pulsar"),
            ("standalone", "cluster.enabled=false", "woodpecker"),
        ] {
            let case = format!("{} in {}, {chart_mode}", row.mode, row.region);
            let docs = render(&values, set);

            // Milvus's configuration (the chart's ConfigMap, default.yaml): the minio section.
            let config = docs
                .iter()
                .find(|d| d["kind"] == "ConfigMap" && d["data"]["default.yaml"].is_string())
                .expect("the chart's milvus config");
            let milvus: Value =
                serde_yaml::from_str(config["data"]["default.yaml"].as_str().expect("text")).expect("yaml");
            let minio = &milvus["minio"];
            assert_eq!(minio["address"], row.host, "{case}: {minio}");
            assert_eq!(minio["port"], 443, "{case}");
            assert_eq!(minio["useSSL"], true, "{case}");
            assert_eq!(minio["useIAM"], true, "{case}");
            assert_eq!(minio["cloudProvider"], "aws", "{case}");
            assert_eq!(minio["bucketName"], "bw-bucket", "{case}");
            assert_eq!(minio["rootPath"], "files", "{case}");
            assert_eq!(minio["region"], row.region, "{case}");
            for key in ["accessKeyID", "secretAccessKey"] {
                assert!(
                    minio[key].is_null() || minio[key] == "",
                    "{case}: no {key}: {minio}"
                );
            }
            // The message queue this chart mode uses (Woodpecker writes to the same bucket).
            assert_eq!(milvus["mq"]["type"], mq, "{case}");

            // No MinIO, and no Secret carrying storage keys.
            let minio_objects: Vec<String> = docs
                .iter()
                .filter(|d| {
                    d["metadata"]["labels"]["app"] == "minio"
                        || d["metadata"]["name"]
                            .as_str()
                            .is_some_and(|n| n.contains("minio"))
                })
                .map(|d| format!("{} {}", d["kind"], d["metadata"]["name"]))
                .collect();
            assert!(minio_objects.is_empty(), "{case}: {minio_objects:?}");

            // Every Milvus workload runs as the wired ServiceAccount, which the chart does not
            // create. (Its etcd and Pulsar subcharts keep their own accounts: they do not touch
            // the bucket.)
            let milvus_workloads: Vec<&Value> = docs
                .iter()
                .filter(|d| pod_spec(d).is_some())
                .filter(|d| d["metadata"]["labels"]["app.kubernetes.io/name"] == "milvus")
                .collect();
            let expected = if chart_mode == "cluster" { 5 } else { 1 };
            assert!(
                milvus_workloads.len() >= expected,
                "{case}: {} Milvus workloads",
                milvus_workloads.len()
            );
            for workload in milvus_workloads {
                assert_eq!(
                    pod_spec(workload).expect("pod spec")["serviceAccountName"],
                    "milvus-s3-sa",
                    "{case}: {}",
                    workload["metadata"]["name"]
                );
            }
            assert!(
                !docs
                    .iter()
                    .any(|d| d["kind"] == "ServiceAccount" && d["metadata"]["name"] == "milvus-s3-sa"),
                "{case}: the chart must not create the wired ServiceAccount"
            );
        }
    }
}
