//! Faults: a reverse proxy in front of the AWS emulator (tests/faultproxy/faultproxy.py) fails
//! a fifth of all AWS requests the ways AWS does (IAM Throttling, S3 503 SlowDown, 500s,
//! connection resets before and after the request ran, slow answers). A hundred integrations
//! still all become Ready and are all deleted; retries back off (the delays are on /metrics);
//! listing everything by our tags finds exactly one bucket, role and policy (of one version)
//! per integration, and nothing after deletion.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::{Value, json};

use bucketwire::api::BucketIntegration;
use common::integration::create;
use common::operator::{Operator, http_get, sample};
use common::{aws, setup, wait_for};

const N: usize = 100;

struct FaultProxy {
    child: Child,
    url: String,
}

impl FaultProxy {
    fn start(target: &str, rate: f64) -> Self {
        let root = env!("CARGO_MANIFEST_DIR");
        let mut child = Command::new(format!("{root}/target/testbed/venv/bin/python"))
            .arg(format!("{root}/tests/faultproxy/faultproxy.py"))
            .args(["--target", target, "--rate", &rate.to_string(), "--slow", "1.5"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the fault proxy starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the proxy says where it listens");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected proxy output: {line}"))
            .to_string();
        Self { child, url }
    }

    async fn counts(&self) -> Value {
        let text = http_get(&format!("{}/__faults", self.url))
            .await
            .expect("fault counts");
        serde_json::from_str(&text).expect("fault counts")
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn with_a_fifth_of_aws_requests_failing_a_hundred_integrations_converge_and_delete_cleanly() {
    let (bed, client, ns) = setup("faults").await;
    let proxy = FaultProxy::start(bed.var("BUCKETWIRE_AWS_ENDPOINT_URL"), 0.2);
    let operator = Operator::start_with_env(
        &bed,
        &ns,
        &[
            "--resync-interval",
            "1h",
            "--max-concurrent-reconciles",
            "8",
            "--iam-requests-per-second",
            "50",
        ],
        &[("BUCKETWIRE_AWS_ENDPOINT_URL", proxy.url.as_str())],
    );
    let api: Api<BucketIntegration> = Api::namespaced(client.clone(), &ns);
    let names: Vec<String> = (0..N).map(|i| format!("f{i:03}")).collect();
    futures::stream::iter(&names)
        .for_each_concurrent(10, |name| {
            let (client, ns) = (client.clone(), ns.clone());
            async move {
                create(
                    &client,
                    &ns,
                    name,
                    json!({"region": "us-east-2", "bucket": {"deletionPolicy": "Delete"}}),
                )
                .await;
            }
        })
        .await;
    let ready_count = || async {
        api.list(&ListParams::default())
            .await
            .map(|l| {
                l.items
                    .iter()
                    .filter(|bi| {
                        bi.status.as_ref().is_some_and(|s| {
                            s.conditions
                                .iter()
                                .any(|c| c.type_ == "Ready" && c.status == "True")
                        })
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    loop {
        let ready = ready_count().await;
        if ready == N {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{ready} of {N} Ready after 10 minutes; faults: {}",
            proxy.counts().await
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let uids: BTreeSet<String> = api
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .iter()
        .filter_map(|bi| bi.uid())
        .collect();

    // The faults really happened, of every kind, on every service.
    let counts = proxy.counts().await;
    let requests = counts["requests"].as_u64().unwrap_or(0);
    let injected = counts["injected"].as_u64().unwrap_or(0);
    eprintln!("faults: {counts}");
    assert!(injected * 100 >= requests * 15, "about 20% failed: {counts}");
    for kind in [
        "throttle",
        "slowdown",
        "internal",
        "reset-before",
        "reset-after",
        "slow",
    ] {
        assert!(
            counts["by_kind"][kind].as_u64().unwrap_or(0) > 0,
            "no {kind}: {counts}"
        );
    }

    // No hot loop: every scheduled retry waited at least the first backoff step (2 s less 20%
    // jitter), and reconciles stayed within a few per integration. (Most faults are absorbed by
    // the SDK's own three attempts, so how many reconciles fail varies from run to run.)
    let metrics = operator.metrics().await;
    let retries = sample(&metrics, "bucketwire_reconcile_retry_delay_seconds_count");
    let waited = sample(&metrics, "bucketwire_reconcile_retry_delay_seconds_sum");
    let reconciles: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("bucketwire_reconciles_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    eprintln!("reconciles: {reconciles}, retries: {retries}, waiting {waited:.1} s in all");
    assert!(
        waited >= 1.6 * retries,
        "retries back off: {retries} waited {waited} s"
    );
    assert!(
        reconciles <= 6 * N as u64,
        "{reconciles} reconciles for {N} integrations"
    );

    // No duplicates.
    let found = aws::inventory(&bed, "us-east-2", &ns, &uids).await;
    let one_each = |m: &BTreeMap<String, Vec<String>>| uids.iter().all(|u| m.get(u).map_or(0, Vec::len) == 1);
    assert!(
        one_each(&found.buckets) && one_each(&found.roles) && one_each(&found.policies),
        "{found:?}"
    );
    assert!(found.policy_versions.values().all(|&v| v == 1), "{found:?}");

    // Deletion, through the same faults.
    api.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .expect("delete");
    wait_for(
        "every integration to be deleted",
        Duration::from_secs(600),
        || async {
            api.list_metadata(&ListParams::default())
                .await
                .ok()?
                .items
                .is_empty()
                .then_some(())
        },
    )
    .await;
    let left = aws::inventory(&bed, "us-east-2", &ns, &uids).await;
    assert!(
        left.buckets.is_empty() && left.roles.is_empty() && left.policies.is_empty(),
        "leftovers: {left:?}"
    );
}
