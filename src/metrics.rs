//! Prometheus metrics, served on `/metrics` in the text exposition format.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// `success`, or the failure's condition reason (`AccessDenied`, `InvalidSpec`, ...).
    pub result: String,
}

pub struct Metrics {
    registry: Registry,
    pub aws_calls: Family<AwsCallLabels, Counter>,
    pub reconciles: Family<ReconcileLabels, Counter>,
    pub reconcile_duration: Histogram,
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
        Arc::new(Self {
            registry,
            aws_calls,
            reconciles,
            reconcile_duration,
        })
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
