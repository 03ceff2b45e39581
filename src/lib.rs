//! bucketwire: a Kubernetes operator that wires Milvus to its S3 bucket through IAM (EKS IRSA),
//! with no static keys.

pub mod api;
pub mod crd;
pub mod documents;
pub mod naming;

/// The admission cases shared with the apiserver tests.
#[cfg(test)]
#[path = "../tests/common/admission.rs"]
mod admission_fixture;
