//! bucketwire: a Kubernetes operator that wires Milvus to its S3 bucket through IAM (EKS IRSA),
//! with no static keys.

pub mod api;
pub mod crd;
