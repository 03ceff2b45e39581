//! Prometheus metrics, served on `/metrics` in the text exposition format.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AwsCallLabels {
    /// `operator` (the operator's own credentials) or `workload` (the Milvus role's, during
    /// validation).
    pub identity: String,
    pub service: String,
    pub operation: String,
    /// `success` or `error`.
    pub outcome: String,
}

/// Calls to a cloud's APIs, by identity, service, operation and outcome.
pub type CallFamily = Family<AwsCallLabels, Counter>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AwsServiceLabels {
    /// `s3`, `iam`, `sts`, `eks` or `eks-auth`.
    pub service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KubernetesRequestLabels {
    /// The HTTP method, or `WATCH` for watch requests.
    pub verb: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// `success`, or the failure's condition reason (`AccessDenied`, `InvalidSpec`, ...).
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConditionLabels {
    /// The condition type: `Ready`, `Validated`, ...
    pub condition: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
}

/// Each integration's conditions as indices into the few (condition, status) pairs there are
/// (a condition type per step, three statuses): an index a condition, not two strings.
#[derive(Default)]
struct ConditionCounts {
    labels: Vec<ConditionLabels>,
    by_integration: HashMap<Box<str>, Box<[usize]>>,
}

impl ConditionCounts {
    /// Records an integration's conditions; returns the pairs it no longer has and the ones it
    /// now has (each pair both gone and come back is in both, which nets out in the gauge).
    fn set(
        &mut self,
        integration: &str,
        conditions: Option<BTreeMap<String, String>>,
    ) -> (Box<[usize]>, Box<[usize]>) {
        let came: Box<[usize]> = conditions
            .unwrap_or_default()
            .into_iter()
            .map(|(condition, status)| self.index(ConditionLabels { condition, status }))
            .collect();
        let gone = if came.is_empty() {
            self.by_integration.remove(integration)
        } else {
            self.by_integration.insert(integration.into(), came.clone())
        };
        (gone.unwrap_or_default(), came)
    }

    fn index(&mut self, labels: ConditionLabels) -> usize {
        match self.labels.iter().position(|l| *l == labels) {
            Some(at) => at,
            None => {
                self.labels.push(labels);
                self.labels.len() - 1
            }
        }
    }
}

pub struct Metrics {
    registry: Registry,
    /// Integrations by condition and status, kept in step with `integration_conditions`.
    pub integrations: Family<ConditionLabels, Gauge>,
    /// The latest conditions of each integration, kept small: at 10,000 integrations this map
    /// is one of the few things the operator holds per integration (issue 18).
    integration_conditions: Mutex<ConditionCounts>,
    pub aws_calls: CallFamily,
    /// Alibaba Cloud's: RAM, STS and ACK (`ram`, `sts`, `cs`), OSS's own API (`oss`) and its
    /// S3-compatible API (`oss-s3`, with S3's operation names).
    pub alibaba_calls: CallFamily,
    pub aws_request_duration: Family<AwsServiceLabels, Histogram>,
    pub aws_rate_limit_wait: Family<AwsServiceLabels, Counter<f64, AtomicU64>>,
    /// The client-side rate limit in force, per service that has one (IAM).
    pub aws_rate_limit: Family<AwsServiceLabels, Gauge>,
    pub kubernetes_requests: Family<KubernetesRequestLabels, Counter>,
    pub reconciles: Family<ReconcileLabels, Counter>,
    pub reconcile_duration: Histogram,
    /// Scheduled waits before retrying a failed reconcile (the backoff, visible).
    pub retry_delay: Histogram,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("bucketwire");
        let aws_calls = Family::<AwsCallLabels, Counter>::default();
        registry.register(
            "aws_calls",
            "AWS API operations made, by service, operation and outcome (retries are one call)",
            aws_calls.clone(),
        );
        let alibaba_calls = CallFamily::default();
        registry.register(
            "alibaba_calls",
            "Alibaba Cloud API operations made (RAM, STS, ACK, OSS), by service, operation and outcome",
            alibaba_calls.clone(),
        );
        let aws_request_duration = Family::<AwsServiceLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 14))
        });
        registry.register(
            "aws_request_duration_seconds",
            "Time AWS (or the configured endpoint) took to answer one HTTP request, retries counted apart",
            aws_request_duration.clone(),
        );
        let aws_rate_limit_wait = Family::<AwsServiceLabels, Counter<f64, AtomicU64>>::default();
        registry.register(
            "aws_rate_limit_wait_seconds",
            "Time requests waited for the client-side rate limit (IAM) before being sent",
            aws_rate_limit_wait.clone(),
        );
        let aws_rate_limit = Family::<AwsServiceLabels, Gauge>::default();
        registry.register(
            "aws_rate_limit_requests_per_second",
            "The client-side limit on requests per second (retries included), per service that has one",
            aws_rate_limit.clone(),
        );
        let kubernetes_requests = Family::<KubernetesRequestLabels, Counter>::default();
        registry.register(
            "kubernetes_requests",
            "Requests the operator sent to the Kubernetes API server, by verb",
            kubernetes_requests.clone(),
        );
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles of BucketIntegrations, by result",
            reconciles.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(0.01, 2.0, 12));
        registry.register(
            "reconcile_duration_seconds",
            "Wall time of one reconcile",
            reconcile_duration.clone(),
        );
        let retry_delay = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        registry.register(
            "reconcile_retry_delay_seconds",
            "Wait scheduled before retrying a failed reconcile (exponential backoff, bounded)",
            retry_delay.clone(),
        );
        let integrations = Family::<ConditionLabels, Gauge>::default();
        registry.register(
            "integrations",
            "BucketIntegrations by condition type and status",
            integrations.clone(),
        );
        Arc::new(Self {
            registry,
            aws_calls,
            alibaba_calls,
            aws_request_duration,
            aws_rate_limit_wait,
            aws_rate_limit,
            kubernetes_requests,
            reconciles,
            reconcile_duration,
            retry_delay,
            integrations,
            integration_conditions: Mutex::default(),
        })
    }

    /// Records an integration's current conditions (`None`: it is gone) and updates the gauge
    /// for the pairs that changed (not a recount of every integration: this runs on every
    /// reconcile).
    pub fn set_conditions(&self, integration: &str, conditions: Option<BTreeMap<String, String>>) {
        let mut counts = self
            .integration_conditions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let (gone, came) = counts.set(integration, conditions);
        for index in gone {
            let labels = &counts.labels[index];
            if self.integrations.get_or_create(labels).dec() == 1 {
                // The last one: the series goes, as it would from a recount.
                self.integrations.remove(labels);
            }
        }
        for index in came {
            self.integrations.get_or_create(&counts.labels[index]).inc();
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integrations_are_counted_by_condition_and_forgotten_when_gone() {
        let m = Metrics::new();
        let ready = |s: &str| Some(BTreeMap::from([("Ready".to_string(), s.to_string())]));
        m.set_conditions("ns/a", ready("True"));
        m.set_conditions("ns/b", ready("False"));
        m.set_conditions("ns/c", ready("True"));
        let text = m.encode();
        assert!(
            text.contains(r#"bucketwire_integrations{condition="Ready",status="True"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"bucketwire_integrations{condition="Ready",status="False"} 1"#),
            "{text}"
        );
        m.set_conditions("ns/b", None);
        let text = m.encode();
        assert!(!text.contains(r#"status="False""#), "{text}");
    }

    /// The gauge is kept by difference, not recounted: an integration recorded again with the
    /// same conditions is not counted twice, and one that changes moves between the series.
    #[test]
    fn recording_an_integration_again_moves_it_between_series() {
        let m = Metrics::new();
        let conditions = |ready: &str, validated: &str| {
            Some(BTreeMap::from([
                ("Ready".to_string(), ready.to_string()),
                ("Validated".to_string(), validated.to_string()),
            ]))
        };
        m.set_conditions("ns/a", conditions("True", "True"));
        m.set_conditions("ns/a", conditions("True", "True"));
        m.set_conditions("ns/b", conditions("True", "True"));
        m.set_conditions("ns/b", conditions("False", "True"));
        let text = m.encode();
        for series in [
            r#"bucketwire_integrations{condition="Ready",status="True"} 1"#,
            r#"bucketwire_integrations{condition="Ready",status="False"} 1"#,
            r#"bucketwire_integrations{condition="Validated",status="True"} 2"#,
        ] {
            assert!(text.contains(series), "{series} in {text}");
        }
        m.set_conditions("ns/a", None);
        m.set_conditions("ns/b", None);
        let text = m.encode();
        assert!(!text.contains("bucketwire_integrations{"), "{text}");
    }
}
