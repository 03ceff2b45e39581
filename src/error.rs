//! Typed reconcile errors. Each variant knows its condition reason (for status, Events and
//! metrics) and whether retrying can help without someone changing something.

use crate::aws::AwsFailure;
use crate::aws::actions::Call;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidSpec(String),

    /// An operator setting changed under a name this integration already recorded.
    #[error("{0}")]
    SettingConflict(String),

    /// Another integration (or another field manager, such as a GitOps tool) sets the role
    /// annotation on this ServiceAccount.
    #[error(
        "ServiceAccount {namespace}/{name} is wired by someone else ({manager} sets {annotation}); one ServiceAccount serves one integration. Name another serviceAccount, or remove the other's annotation"
    )]
    ServiceAccountOwnedElsewhere {
        namespace: String,
        name: String,
        manager: String,
        annotation: String,
    },

    /// Pod Identity on a ServiceAccount that someone else annotated for IRSA: the SDKs would use
    /// IRSA and never the association.
    #[error(
        "ServiceAccount {namespace}/{name} carries eks.amazonaws.com/role-arn, set by {manager}: with both IRSA and Pod Identity, the AWS SDKs use IRSA, so the pod identity association would never be used. Remove that annotation (bucketwire removes only its own) or name another serviceAccount"
    )]
    IrsaAnnotationPresent {
        namespace: String,
        name: String,
        manager: String,
    },

    /// `spec.milvus.milvusRef` names a Milvus object that does not exist (yet).
    #[error(
        "Milvus {namespace}/{name} does not exist yet: create it (with spec.dependencies.storage.external: true, or after this integration is Ready) and bucketwire will wire its storage"
    )]
    MilvusNotFound { namespace: String, name: String },

    /// No `milvus.io` API: the Milvus Operator is not installed.
    #[error(
        "spec.milvus.milvusRef names Milvus {namespace}/{name}, but the cluster has no milvuses.milvus.io API: install the Milvus Operator, or remove milvusRef and use the values ConfigMap"
    )]
    MilvusOperatorNotInstalled { namespace: String, name: String },

    /// Another field manager (a GitOps tool, a person) owns a storage field of the Milvus object.
    #[error(
        "Milvus {namespace}/{name}: {fields} owned by {manager}; bucketwire does not force it. Remove the field from {manager}'s configuration (bucketwire sets it) or set it to the same value{hint}"
    )]
    MilvusFieldConflict {
        namespace: String,
        name: String,
        manager: String,
        fields: String,
        /// What else the user can do, where there is something (empty otherwise).
        hint: String,
    },

    /// The Milvus object already runs in-cluster MinIO: switching it to S3 would leave its data.
    #[error(
        "Milvus {namespace}/{name} already uses in-cluster MinIO (spec.dependencies.storage.inCluster, set by the Milvus Operator when it first saw the object without external storage); bucketwire does not switch storage under existing data. Migrate the data and recreate the Milvus with spec.dependencies.storage.external: true, or remove milvusRef"
    )]
    InClusterStorage { namespace: String, name: String },

    /// The store accepted a conditional write (`If-None-Match: *`) over an existing object.
    #[error(
        "s3://{bucket}/{key}: a second PutObject with If-None-Match: * was accepted over the existing object; Milvus 2.6's Woodpecker message queue needs conditional writes (S3 refuses it with 412 PreconditionFailed), and its startup self-test would fail"
    )]
    ConditionalWritesUnsupported { bucket: String, key: String },

    /// The spec names a KMS key the operator's `--allowed-kms-keys` does not allow.
    #[error(
        "bucket.encryption.kmsKeyArn {key} is not allowed: {detail}. Ask the platform team to add the key (or an alias of it) to the operator's --allowed-kms-keys, or use SSE-S3"
    )]
    KmsKeyNotAllowed { key: String, detail: String },

    /// The spec names a trust anchor (an account, an OIDC issuer, an EKS cluster) the
    /// operator's allow-lists do not allow.
    #[error("{field} {value} is not allowed: {detail}")]
    TrustNotAllowed {
        field: &'static str,
        value: String,
        detail: String,
    },

    #[error(
        "check bucket failed: bucket {bucket} does not exist (NoSuchBucket); create it, or set bucket.create: true"
    )]
    BucketNotFound { bucket: String },

    #[error("bucket region not match, want[{want}] got[{got}]")]
    BucketRegionMismatch { want: String, got: String },

    #[error("bucket {bucket} is owned elsewhere: {detail}")]
    BucketOwnedElsewhere { bucket: String, detail: String },

    #[error(
        "{kind} {name} exists but is not tagged for this integration ({detail}); bucketwire never takes over IAM resources it did not create"
    )]
    OwnedElsewhere {
        kind: &'static str,
        name: String,
        detail: String,
    },

    #[error(
        "EKS cluster {cluster} not found in {region}: set spec.identity.eksClusterName or the operator's --cluster-name, or (IRSA) give spec.identity.oidcIssuer"
    )]
    ClusterNotFound { cluster: String, region: String },

    #[error(
        "IAM OIDC provider {arn} not found: the role can only trust an existing provider. Create it with `eksctl utils associate-iam-oidc-provider --cluster <cluster> --approve` or `aws iam create-open-id-connect-provider --url {issuer} --client-id-list sts.amazonaws.com`"
    )]
    OidcProviderNotFound { arn: String, issuer: String },

    #[error("ServiceAccount {namespace}/{name} does not exist and serviceAccount.create is false")]
    ServiceAccountNotFound { namespace: String, name: String },

    #[error(
        "ConfigMap {namespace}/{name} exists and is not owned by this integration; choose another milvus.valuesConfigMap"
    )]
    ConfigMapOwnedElsewhere { namespace: String, name: String },

    /// AWS refused a call: the message names the IAM action and the resource it was refused
    /// on (what a policy must grant), then the operation and AWS's own words.
    #[error("AccessDenied: {call}: {}", failure.detail())]
    AccessDenied { call: Call, failure: AwsFailure },

    #[error("throttled on {call}: {failure}")]
    Throttled { call: Call, failure: AwsFailure },

    /// Validation stopped on a transient failure (already in the Validated condition, with
    /// its precise reason); returned so that the reconcile is retried with backoff.
    #[error("validation did not finish: {0}")]
    ValidationInterrupted(String),

    #[error("{call} failed: {failure}")]
    Aws { call: Call, failure: AwsFailure },

    #[error("{operation} failed: {source}")]
    Kube {
        operation: &'static str,
        #[source]
        source: kube::Error,
    },

    #[error(
        "bucket {bucket} is not empty ({detail}); deletionPolicy Delete never empties a bucket, so it is kept. Empty it yourself or set deletionPolicy: Retain"
    )]
    DeletionBlocked { bucket: String, detail: String },

    #[error("assuming {role} as {subject} failed: {detail}")]
    AssumeRoleFailed {
        role: String,
        subject: String,
        detail: String,
    },

    #[error(
        "KMS denied {call}: {detail}; the role needs kms:GenerateDataKey and kms:Decrypt on the bucket's key, and the key policy must allow the account to delegate them"
    )]
    KmsAccessDenied { call: Call, detail: String },

    /// The operator has no credentials (or no settings) for the integration's cloud.
    #[error("{0}")]
    ProviderNotConfigured(String),

    /// An Alibaba Cloud call failed: `call` names the RAM action and resource (what a policy
    /// must grant) or the operation, then the service's own words. Classified like AWS's.
    #[error("{class}: {call}: {detail}", class = class.prefix())]
    Alibaba {
        call: String,
        detail: String,
        class: CloudFailureClass,
    },

    /// The ACK cluster of an RRSA integration has no RRSA OIDC provider (RRSA is off).
    #[error(
        "ACK cluster {cluster} in {region} has no RRSA OIDC provider ({detail}); the role can only trust an existing provider, and bucketwire never creates one. Enable RRSA: `aliyun cs PUT /api/v2/clusters/{cluster} --body '{{\"enable_rrsa\": true}}'` (or the console: cluster, Security, RRSA OIDC)"
    )]
    RrsaNotEnabled {
        cluster: String,
        region: String,
        detail: String,
    },

    /// The ACK cluster an RRSA integration trusts does not exist, or has RRSA off.
    #[error("ACK cluster {cluster} in {region}: {detail}")]
    AckCluster {
        cluster: String,
        region: String,
        detail: String,
    },
}

/// How a cloud call failed, for the condition reason and the retry policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloudFailureClass {
    /// Refused by the cloud's authorization: a policy must change.
    AccessDenied,
    /// Throttled: retried with backoff.
    Throttled,
    /// The service failed or did not answer: retried with backoff.
    Transient,
    /// Refused for another reason (a bad request, a conflict): needs a change.
    Refused,
}

impl CloudFailureClass {
    fn prefix(self) -> &'static str {
        match self {
            Self::AccessDenied => "AccessDenied",
            Self::Throttled => "throttled",
            Self::Transient | Self::Refused => "failed",
        }
    }
}

impl Error {
    /// Classifies an AWS failure of `call`.
    pub fn aws(call: Call, failure: AwsFailure) -> Self {
        if failure.is_access_denied() {
            Self::AccessDenied { call, failure }
        } else if failure.is_throttling() {
            Self::Throttled { call, failure }
        } else {
            Self::Aws { call, failure }
        }
    }

    pub fn kube(operation: &'static str) -> impl FnOnce(kube::Error) -> Self {
        move |source| Self::Kube { operation, source }
    }

    /// The condition reason (PascalCase) this error is reported with.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidSpec(_) => "InvalidSpec",
            Self::SettingConflict(_) => "SettingConflict",
            Self::ServiceAccountOwnedElsewhere { .. } => "ServiceAccountOwnedElsewhere",
            Self::IrsaAnnotationPresent { .. } => "IRSAAnnotationPresent",
            Self::MilvusNotFound { .. } => "MilvusNotFound",
            Self::MilvusOperatorNotInstalled { .. } => "MilvusOperatorNotInstalled",
            Self::MilvusFieldConflict { .. } => "MilvusFieldConflict",
            Self::InClusterStorage { .. } => "InClusterStorage",
            Self::ConditionalWritesUnsupported { .. } => "ConditionalWritesUnsupported",
            Self::KmsKeyNotAllowed { .. } => "KmsKeyNotAllowed",
            Self::TrustNotAllowed { .. } => "TrustNotAllowed",
            Self::BucketNotFound { .. } => "BucketNotFound",
            Self::BucketRegionMismatch { .. } => "BucketRegionMismatch",
            Self::BucketOwnedElsewhere { .. } => "BucketOwnedElsewhere",
            Self::OwnedElsewhere { .. } => "OwnedElsewhere",
            Self::ClusterNotFound { .. } => "ClusterNotFound",
            Self::OidcProviderNotFound { .. } => "OIDCProviderNotFound",
            Self::ServiceAccountNotFound { .. } => "ServiceAccountNotFound",
            Self::ConfigMapOwnedElsewhere { .. } => "ConfigMapOwnedElsewhere",
            Self::AccessDenied { .. } => "AccessDenied",
            Self::Throttled { .. } => "Throttled",
            Self::Aws { .. } => "AWSError",
            Self::ValidationInterrupted(_) => "ValidationInterrupted",
            Self::Kube { .. } => "KubernetesError",
            Self::DeletionBlocked { .. } => "DeletionBlocked",
            Self::AssumeRoleFailed { .. } => "AssumeRoleFailed",
            Self::KmsAccessDenied { .. } => "KmsAccessDenied",
            Self::ProviderNotConfigured(_) => "ProviderNotConfigured",
            Self::Alibaba { class, .. } => match class {
                CloudFailureClass::AccessDenied => "AccessDenied",
                CloudFailureClass::Throttled => "Throttled",
                CloudFailureClass::Transient | CloudFailureClass::Refused => "AlibabaCloudError",
            },
            Self::AckCluster { .. } => "ClusterNotFound",
            Self::RrsaNotEnabled { .. } => "IdentityProviderNotFound",
        }
    }

    /// Terminal errors need a change by someone (spec, AWS account, settings); they are
    /// retried slowly. The rest are retried with backoff.
    pub fn is_terminal(&self) -> bool {
        !matches!(
            self,
            Self::Throttled { .. }
                | Self::Aws { .. }
                | Self::Kube { .. }
                | Self::ValidationInterrupted(_)
                // The Milvus object is expected to appear (GitOps may apply it after us).
                | Self::MilvusNotFound { .. }
                | Self::Alibaba {
                    class: CloudFailureClass::Throttled | CloudFailureClass::Transient,
                    ..
                }
        )
    }
}
