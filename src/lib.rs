//! bucketwire: a Kubernetes operator that wires Milvus to its S3 bucket through IAM (EKS IRSA),
//! with no static keys.
//!
//! The pipeline of one reconcile: `reconcile::resolve` (pure) -> the `steps` in order (each
//! observes, decides with pure functions from `documents`/`naming`, applies differences) ->
//! status. `controller` runs it; `aws` holds the clients.

pub mod allow;
pub mod api;
pub mod aws;
pub mod cadence;
pub mod controller;
pub mod crd;
pub mod documents;
pub mod error;
pub mod failpoint;
pub mod metrics;
pub mod naming;
pub mod provider;
pub mod reconcile;
pub mod settings;
pub mod steps;
pub mod validate;

/// The admission cases shared with the apiserver tests.
#[cfg(test)]
#[path = "../tests/common/admission.rs"]
mod admission_fixture;
