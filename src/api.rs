//! The `BucketIntegration` API, `bucketwire.io/v1alpha1`.
//!
//! The OpenAPI schema and the CEL rules that the apiserver enforces at admission are
//! generated from these types (`bucketwire crd`). Every rule carries a message that names
//! what is wrong, and `maxLength`/`maxProperties` bounds keep the rules within the
//! apiserver's CEL cost budget.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of every bucketwire resource.
pub const GROUP: &str = "bucketwire.io";
/// The finalizer that guards cleanup of AWS resources.
pub const FINALIZER: &str = "bucketwire.io/cleanup";
/// Annotation that asks for a validation now (`bucketwire.io/validate: now`); cleared when done.
pub const VALIDATE_ANNOTATION: &str = "bucketwire.io/validate";
/// Field manager for every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "bucketwire";

// Every provider rule reads `(has(self.provider) && self.provider == 'alibaba')`: `aws` when
// absent (the apiserver defaults it; the CEL unit tests see objects without defaults).

/// CEL (spec): an AWS region such as `us-east-2`, `cn-north-1`, `us-gov-west-1`, `us-isob-east-1`.
const AWS_REGION_RULE: &str = r"(has(self.provider) && self.provider == 'alibaba') || self.region.matches('^[a-z]{2,4}(-(gov|iso|isob|isoe|isof))?-[a-z]+-[0-9]{1,2}$')";

/// CEL (spec): an Alibaba Cloud region id such as `cn-hangzhou`, `ap-southeast-1`,
/// `cn-shanghai-finance-1` (the same shape as `provider::alibaba::naming::is_region`).
const ALIBABA_REGION_RULE: &str = r"!(has(self.provider) && self.provider == 'alibaba') || self.region.matches('^(cn|ap|us|eu|me|na|sa|af|rus)-[a-z]+(-[a-z0-9]+)*$')";

/// CEL: the partition an SSE-KMS key ARN must be in, derived from the region.
const KMS_KEY_PARTITION_RULE: &str = "(has(self.provider) && self.provider == 'alibaba') || \
     !has(self.bucket.encryption) || !has(self.bucket.encryption.kmsKeyArn) || \
     self.bucket.encryption.kmsKeyArn.split(':')[1] == \
     (self.region.startsWith('cn-') ? 'aws-cn' : self.region.startsWith('us-gov-') ? 'aws-us-gov' : 'aws')";

/// CEL: S3 only uses a KMS key in the bucket's own region.
const KMS_KEY_REGION_RULE: &str = "!has(self.bucket.encryption) || !has(self.bucket.encryption.kmsKeyArn) || \
     self.bucket.encryption.kmsKeyArn.split(':')[(has(self.provider) && self.provider == 'alibaba') ? 2 : 3] == self.region";

/// CEL (spec): a KMS key ARN of the provider (AWS: a key id or a multi-region key; Alibaba
/// Cloud: `acs:kms:<region>:<16-digit account>:key/<key id>`). The split/index rules above
/// run only on keys of this shape.
const AWS_KMS_KEY_RULE: &str = "(has(self.provider) && self.provider == 'alibaba') || \
     !has(self.bucket.encryption) || !has(self.bucket.encryption.kmsKeyArn) || \
     self.bucket.encryption.kmsKeyArn.matches('^arn:aws(-cn|-us-gov)?:kms:[a-z]{2,4}(-(gov|iso|isob|isoe|isof))?-[a-z]+-[0-9]{1,2}:[0-9]{12}:key/(mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$')";
const ALIBABA_KMS_KEY_RULE: &str = "!(has(self.provider) && self.provider == 'alibaba') || \
     !has(self.bucket.encryption) || !has(self.bucket.encryption.kmsKeyArn) || \
     self.bucket.encryption.kmsKeyArn.matches('^acs:kms:[a-z]{2,3}-[a-z]+(-[a-z0-9]+)*:[0-9]{16}:key/[A-Za-z0-9-]{1,128}$')";

/// CEL (spec): identity modes per provider.
const AWS_MODE_RULE: &str = "(has(self.provider) && self.provider == 'alibaba') || !has(self.identity) || \
     !has(self.identity.mode) || self.identity.mode != 'RRSA'";
const ALIBABA_MODE_RULE: &str = "!(has(self.provider) && self.provider == 'alibaba') || \
     (has(self.identity) && has(self.identity.mode) && self.identity.mode in ['RRSA', 'CrossAccount'])";

/// CEL (spec): the trusted account of CrossAccount, per provider.
const AWS_ACCOUNT_RULE: &str = "(has(self.provider) && self.provider == 'alibaba') || !has(self.identity) || \
     !has(self.identity.crossAccount) || self.identity.crossAccount.trustedAccountId.matches('^[0-9]{12}$')";
const ALIBABA_ACCOUNT_RULE: &str = "!(has(self.provider) && self.provider == 'alibaba') || !has(self.identity) || \
     !has(self.identity.crossAccount) || self.identity.crossAccount.trustedAccountId.matches('^[0-9]{16}$')";

/// CEL (spec): the EKS fields are AWS's.
const ALIBABA_NO_EKS_RULE: &str = "!(has(self.provider) && self.provider == 'alibaba') || !has(self.identity) || \
     ((!has(self.identity.eksClusterName) || self.identity.eksClusterName == '') && \
      (!has(self.identity.oidcIssuer) || self.identity.oidcIssuer == ''))";

/// CEL (spec): OSS bucket names have no dots.
const ALIBABA_BUCKET_RULE: &str = "!(has(self.provider) && self.provider == 'alibaba') || !has(self.bucket) || \
     !has(self.bucket.name) || !self.bucket.name.contains('.')";

/// CEL (whole object): once the operator has recorded the bucket in status, the spec can
/// only name that same bucket. Spec-level immutability is enforced on `spec.bucket`.
const BUCKET_NAME_RECORDED_RULE: &str = "!has(self.status) || !has(self.status.bucket) || \
     !has(self.status.bucket.name) || self.status.bucket.name == '' || \
     !has(self.spec.bucket.name) || self.spec.bucket.name == '' || \
     self.spec.bucket.name == self.status.bucket.name";

/// CEL (whole object): a bucket the operator recorded as adopted is never managed or deleted,
/// so `bucket.create` cannot become true on it. (The status subresource keeps `self.status`
/// as recorded when the spec is updated.)
const ADOPTED_BUCKET_RULE: &str = "!has(self.status) || !has(self.status.bucket) || \
     !has(self.status.bucket.adopted) || !self.status.bucket.adopted || \
     !has(self.spec.bucket) || !self.spec.bucket.create";

/// Desired state of one Milvus-to-S3 wiring.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "bucketwire.io",
    version = "v1alpha1",
    kind = "BucketIntegration",
    plural = "bucketintegrations",
    shortname = "bi",
    namespaced,
    status = "BucketIntegrationStatus",
    printcolumn = r#"{"name":"Bucket","type":"string","jsonPath":".status.bucket.name"}"#,
    printcolumn = r#"{"name":"Region","type":"string","jsonPath":".spec.region"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Validated","type":"string","jsonPath":".status.conditions[?(@.type==\"Validated\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Role","type":"string","jsonPath":".status.roleArn","priority":1}"#,
    printcolumn = r#"{"name":"External ID","type":"string","jsonPath":".status.externalId","priority":1}"#,
    printcolumn = r#"{"name":"Integration ID","type":"string","jsonPath":".status.integrationId","priority":1}"#,
    validation = Rule::new(BUCKET_NAME_RECORDED_RULE)
        .message("spec.bucket.name is immutable once recorded in status.bucket.name")
        .field_path(".spec.bucket.name")
        .reason(Reason::FieldValueForbidden),
    validation = Rule::new(ADOPTED_BUCKET_RULE)
        .message("spec.bucket.create cannot become true: this integration adopted an existing bucket (status.bucket.adopted), which bucketwire never manages or deletes")
        .field_path(".spec.bucket.create")
        .reason(Reason::FieldValueForbidden)
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(KMS_KEY_REGION_RULE)
        .message("bucket.encryption.kmsKeyArn must be a key in spec.region: S3 only uses a KMS key from the bucket's own region")
        .field_path(".bucket.encryption.kmsKeyArn"),
    validation = Rule::new(KMS_KEY_PARTITION_RULE)
        .message("bucket.encryption.kmsKeyArn must be in the partition of spec.region (aws, aws-cn or aws-us-gov)")
        .field_path(".bucket.encryption.kmsKeyArn"),
    validation = Rule::new("!has(self.milvus) || !has(self.milvus.milvusRef) || !has(self.identity) || !has(self.identity.mode) || self.identity.mode != 'CrossAccount'")
        .message("milvus.milvusRef needs a workload identity (IRSA, PodIdentity or RRSA): with CrossAccount there is no Milvus in this cluster")
        .field_path(".milvus.milvusRef"),
    validation = Rule::new(AWS_REGION_RULE)
        .message("region must be an AWS region name such as us-east-2, cn-north-1 or us-gov-west-1")
        .field_path(".region"),
    validation = Rule::new(ALIBABA_REGION_RULE)
        .message("region must be an Alibaba Cloud region id such as cn-hangzhou, ap-southeast-1 or cn-shanghai-finance-1")
        .field_path(".region"),
    validation = Rule::new(AWS_KMS_KEY_RULE)
        .message("kmsKeyArn must be a KMS key ARN: arn:<partition>:kms:<region>:<12-digit account>:key/<key id>")
        .field_path(".bucket.encryption.kmsKeyArn"),
    validation = Rule::new(ALIBABA_KMS_KEY_RULE)
        .message("kmsKeyArn must be an Alibaba Cloud KMS key ARN: acs:kms:<region>:<16-digit account>:key/<key id>")
        .field_path(".bucket.encryption.kmsKeyArn"),
    validation = Rule::new(AWS_MODE_RULE)
        .message("identity.mode RRSA is Alibaba Cloud's: with provider aws use IRSA, PodIdentity or CrossAccount")
        .field_path(".identity.mode"),
    validation = Rule::new(ALIBABA_MODE_RULE)
        .message("with provider alibaba, identity.mode must be RRSA or CrossAccount (IRSA, the default, and PodIdentity are AWS's)")
        .field_path(".identity.mode"),
    validation = Rule::new(AWS_ACCOUNT_RULE)
        .message("trustedAccountId must be a 12-digit AWS account ID")
        .field_path(".identity.crossAccount.trustedAccountId"),
    validation = Rule::new(ALIBABA_ACCOUNT_RULE)
        .message("trustedAccountId must be a 16-digit Alibaba Cloud account ID")
        .field_path(".identity.crossAccount.trustedAccountId"),
    validation = Rule::new(ALIBABA_NO_EKS_RULE)
        .message("identity.eksClusterName and identity.oidcIssuer are AWS's: with provider alibaba the cluster is spec.alibaba.ackClusterId")
        .field_path(".identity"),
    validation = Rule::new(ALIBABA_BUCKET_RULE)
        .message("bucket name must not contain dots: OSS bucket names are lowercase letters, digits and hyphens")
        .field_path(".bucket.name"),
    validation = Rule::new("!has(self.alibaba) || (has(self.provider) && self.provider == 'alibaba')")
        .message("alibaba is only allowed when provider is alibaba")
        .field_path(".alibaba")
        .reason(Reason::FieldValueForbidden),
    validation = Rule::new("!has(self.alibaba) || !has(self.alibaba.rrsaInjection) || self.alibaba.rrsaInjection == 'Values' || (has(self.identity) && has(self.identity.mode) && self.identity.mode == 'RRSA')")
        .message("alibaba.rrsaInjection: Webhook is for identity.mode RRSA (across accounts no Pod gets credentials)")
        .field_path(".alibaba.rrsaInjection"),
)]
pub struct BucketIntegrationSpec {
    /// The cloud of the bucket: `aws` (S3 and IAM, the default) or `alibaba` (OSS and RAM).
    /// Immutable.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("provider is immutable").reason(Reason::FieldValueForbidden))]
    pub provider: Provider,

    /// Free text, used as the description of the IAM role and policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    #[x_kube(validation = Rule::new(r"self.matches('^[\\p{L}\\p{N}\\p{Z}_.,:/=+@()-]*$')")
        .message("description may contain letters, digits, spaces and _.,:/=+@()- only (IAM's description rules)"))]
    pub description: Option<String>,

    /// Region of the bucket, e.g. `us-east-2` (AWS) or `cn-hangzhou` (Alibaba Cloud). Immutable.
    /// On AWS the partition follows from it: `cn-*` is `aws-cn`, `us-gov-*` is `aws-us-gov`,
    /// everything else `aws`.
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("region is immutable").reason(Reason::FieldValueForbidden))]
    pub region: String,

    /// The S3 bucket Milvus stores its data in.
    #[serde(default)]
    #[schemars(default = "BucketSpec::default")]
    pub bucket: BucketSpec,

    /// What Milvus may do with the objects in the bucket.
    #[serde(default)]
    pub access: Access,

    /// How the Milvus workload authenticates to AWS.
    #[serde(default)]
    #[schemars(default = "IdentitySpec::default")]
    pub identity: IdentitySpec,

    /// The Kubernetes ServiceAccount Milvus runs as; always in the integration's namespace.
    #[serde(default)]
    #[schemars(default = "ServiceAccountSpec::default")]
    pub service_account: ServiceAccountSpec,

    /// Where the rendered Milvus Helm values go.
    #[serde(default)]
    #[schemars(default = "MilvusSpec::default")]
    pub milvus: MilvusSpec,

    /// Proving the wiring by acting as the Milvus ServiceAccount.
    #[serde(default)]
    #[schemars(default = "ValidationSpec::default")]
    pub validation: ValidationSpec,

    /// Alibaba Cloud details (`provider: alibaba` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alibaba: Option<AlibabaSpec>,
}

/// The cloud an integration's bucket and identity live in.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Amazon S3 and IAM.
    #[default]
    Aws,
    /// Alibaba Cloud OSS and RAM.
    Alibaba,
}

/// Alibaba Cloud details of an integration.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AlibabaSpec {
    /// The ACK cluster whose RRSA OIDC provider the role trusts (`identity.mode: RRSA`);
    /// defaults to the operator's `--ack-cluster-id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self == '' || self.matches('^[a-z0-9]+$')")
        .message("alibaba.ackClusterId must be an ACK cluster id: lowercase letters and digits, e.g. c8155823d057948c69a"))]
    pub ack_cluster_id: Option<String>,

    /// Milvus runs inside the bucket region's VPC: its values use the internal endpoint
    /// `oss-<region>-internal.aliyuncs.com` (no internet egress).
    #[serde(default)]
    pub internal_endpoint: bool,

    /// How Milvus's Pods get the RRSA token and variables (`identity.mode: RRSA`): `Values`
    /// (the default: the values ConfigMap carries the projected token and the three
    /// `ALIBABA_CLOUD_*` variables; no add-on needed) or `Webhook` (ACK's ack-pod-identity-webhook
    /// injects them: bucketwire annotates the ServiceAccount with
    /// `pod-identity.alibabacloud.com/role-name`; the namespace needs the label
    /// `pod-identity.alibabacloud.com/injection: 'on'`, which bucketwire does not set).
    #[serde(default)]
    pub rrsa_injection: RrsaInjection,
}

/// Who puts the RRSA token and variables into Milvus's Pods.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RrsaInjection {
    /// The values ConfigMap: works without any add-on.
    #[default]
    Values,
    /// ACK's pod-identity webhook, from the ServiceAccount's annotation.
    Webhook,
}

/// The bucket and how it is configured.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(oldSelf.name) || oldSelf.name == '' || (has(self.name) && self.name == oldSelf.name)")
    .message("bucket.name is immutable once set")
    .field_path(".name")
    .reason(Reason::FieldValueForbidden))]
pub struct BucketSpec {
    /// Bucket name. Derived from cluster, namespace and name when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    #[x_kube(
        validation = Rule::new("self == '' || size(self) >= 3").message("bucket name must be between 3 and 63 characters long"),
        validation = Rule::new("self.matches('^[a-z0-9.-]*$')").message("bucket name may contain only lowercase letters, digits, dots (.) and hyphens (-)"),
        validation = Rule::new("self == '' || self.matches('^[a-z0-9].*[a-z0-9]$')").message("bucket name must begin and end with a lowercase letter or a digit"),
        validation = Rule::new("!self.contains('..')").message("bucket name must not contain two adjacent periods"),
        validation = Rule::new(r"!self.matches('^[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}$')").message("bucket name must not be formatted as an IP address (for example 192.168.5.4)"),
        validation = Rule::new("!self.startsWith('xn--')").message("bucket name must not start with the prefix 'xn--'"),
        validation = Rule::new("!self.startsWith('sthree-')").message("bucket name must not start with the prefix 'sthree-'"),
        validation = Rule::new("!self.startsWith('amzn-s3-demo-')").message("bucket name must not start with the prefix 'amzn-s3-demo-'"),
        validation = Rule::new("!self.endsWith('-s3alias')").message("bucket name must not end with the suffix '-s3alias'"),
        validation = Rule::new("!self.endsWith('--ol-s3')").message("bucket name must not end with the suffix '--ol-s3'"),
        validation = Rule::new("!self.endsWith('.mrap')").message("bucket name must not end with the suffix '.mrap'"),
        validation = Rule::new("!self.endsWith('--x-s3')").message("bucket name must not end with the suffix '--x-s3'"),
    )]
    pub name: Option<String>,

    /// `true`: create the bucket (or adopt one already tagged for this integration).
    /// `false`: use an existing bucket; see adoption in the README.
    #[serde(default = "default_true")]
    #[schemars(default = "default_true")]
    pub create: bool,

    /// Milvus `rootPath`: the key prefix under which Milvus stores its files.
    #[serde(default = "default_root_path")]
    #[schemars(default = "default_root_path", length(min = 1, max = 512))]
    #[x_kube(
        validation = Rule::new("!self.startsWith('/')").message("rootPath must be relative: no leading '/'"),
        validation = Rule::new("!self.endsWith('/')").message("rootPath must not end with '/'"),
        validation = Rule::new("!self.contains('//')").message("rootPath must not contain an empty segment ('//')"),
        validation = Rule::new(r"!self.matches('(^|/)\\.\\.?(/|$)')").message("rootPath must not contain a '.' or '..' segment"),
    )]
    pub root_path: String,

    /// Default encryption of the bucket.
    #[serde(default)]
    #[schemars(default = "Encryption::default")]
    pub encryption: Encryption,

    /// Turn on S3 versioning.
    #[serde(default)]
    pub versioning: bool,

    /// What happens to the bucket when the integration is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// Extra tags for the bucket, the role and the policy. Keys under `aws:` and
    /// `bucketwire.io/` are reserved.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 40, "additionalProperties" = {"type": "string", "maxLength": 256}))]
    #[x_kube(
        validation = Rule::new(r"self.all(k, size(k) <= 128 && k.matches('^[\\p{L}\\p{Z}\\p{N}_.:/=+@-]+$'))").message("tag keys must be 1-128 characters of letters, digits, spaces and _.:/=+-@"),
        validation = Rule::new(r"self.all(k, self[k].matches('^[\\p{L}\\p{Z}\\p{N}_.:/=+@-]*$'))").message("tag values must be at most 256 characters of letters, digits, spaces and _.:/=+-@"),
        validation = Rule::new("self.all(k, !k.matches('^(?i)aws:'))").message("tag keys starting with 'aws:' (in any case) are reserved by AWS"),
        validation = Rule::new("self.all(k, !k.matches('^(?i)bucketwire[.]io/'))").message("tag keys starting with 'bucketwire.io/' (in any case: IAM tag keys are case-insensitive) are reserved for the operator"),
    )]
    pub tags: BTreeMap<String, String>,
}

impl Default for BucketSpec {
    fn default() -> Self {
        Self {
            name: None,
            create: true,
            root_path: default_root_path(),
            encryption: Encryption::default(),
            versioning: false,
            deletion_policy: DeletionPolicy::default(),
            tags: BTreeMap::new(),
        }
    }
}

/// Default encryption of the bucket: `{type: SSE-S3}` or `{type: SSE-KMS, kmsKeyArn: ...}`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.type != 'SSE-KMS' || has(self.kmsKeyArn)")
        .message("kmsKeyArn is required when type is SSE-KMS")
        .field_path(".kmsKeyArn")
        .reason(Reason::FieldValueRequired),
    validation = Rule::new("self.type == 'SSE-KMS' || !has(self.kmsKeyArn)")
        .message("kmsKeyArn is only allowed when type is SSE-KMS")
        .field_path(".kmsKeyArn")
        .reason(Reason::FieldValueForbidden),
)]
pub struct Encryption {
    #[serde(rename = "type", default)]
    pub kind: EncryptionType,

    /// ARN of the KMS key: on AWS `arn:<partition>:kms:<region>:<account>:key/<key-id>` (an
    /// alias ARN does not work in an IAM policy's Resource), on Alibaba Cloud
    /// `acs:kms:<region>:<account>:key/<key-id>`. Its shape is checked per provider at the spec
    /// level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub kms_key_arn: Option<String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EncryptionType {
    /// S3-managed keys (AES256).
    #[default]
    #[serde(rename = "SSE-S3")]
    SseS3,
    /// A customer KMS key (`kmsKeyArn`).
    #[serde(rename = "SSE-KMS")]
    SseKms,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeletionPolicy {
    /// Keep the bucket and its data when the integration is deleted.
    #[default]
    Retain,
    /// Delete the bucket if, and only if, it is empty and owned by this integration.
    Delete,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Access {
    #[default]
    ReadWrite,
    ReadOnly,
}

/// How Milvus gets AWS credentials.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.mode != 'CrossAccount' || has(self.crossAccount)")
        .message("crossAccount is required when mode is CrossAccount")
        .field_path(".crossAccount")
        .reason(Reason::FieldValueRequired),
    validation = Rule::new("self.mode == 'CrossAccount' || !has(self.crossAccount)")
        .message("crossAccount is only allowed when mode is CrossAccount")
        .field_path(".crossAccount")
        .reason(Reason::FieldValueForbidden),
    validation = Rule::new("self.mode != 'PodIdentity' || !has(self.oidcIssuer) || self.oidcIssuer == ''")
        .message("oidcIssuer is only used by mode IRSA: with PodIdentity the role trusts pods.eks.amazonaws.com, not an OIDC provider")
        .field_path(".oidcIssuer")
        .reason(Reason::FieldValueForbidden),
)]
pub struct IdentitySpec {
    #[serde(default)]
    pub mode: IdentityMode,

    /// EKS cluster whose IAM OIDC provider the role trusts (IRSA), or whose pod identity
    /// association binds the ServiceAccount to the role (PodIdentity); defaults to the
    /// operator's setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100))]
    #[x_kube(validation = Rule::new("self == '' || self.matches('^[0-9A-Za-z][A-Za-z0-9_-]*$')")
        .message("eksClusterName must be an EKS cluster name: letters, digits, '-' and '_', starting with a letter or digit"))]
    pub eks_cluster_name: Option<String>,

    /// OIDC issuer URL override, for clusters whose issuer is not found through EKS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new("self == '' || self.matches('^https://[^\\\\s/?#]+(/[^\\\\s?#]*)?$')")
        .message("oidcIssuer must be an https:// URL without query or fragment, e.g. https://oidc.eks.us-east-2.amazonaws.com/id/EXAMPLE"))]
    pub oidc_issuer: Option<String>,

    /// The AWS account (and external ID) trusted to assume the role, for `mode: CrossAccount`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_account: Option<CrossAccountSpec>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IdentityMode {
    /// IAM Roles for Service Accounts: the role trusts the cluster's IAM OIDC provider.
    #[default]
    #[serde(rename = "IRSA")]
    Irsa,
    /// EKS Pod Identity: the role trusts `pods.eks.amazonaws.com` for exactly this cluster,
    /// namespace and ServiceAccount (session-tag conditions), and an EKS pod identity
    /// association binds the ServiceAccount to it. Needs Milvus 2.6 or later and the EKS Pod
    /// Identity Agent add-on; Pods get credentials only if they start after the association.
    PodIdentity,
    /// Another account (for example a managed Milvus service such as Zilliz Cloud) assumes
    /// the role with `sts:AssumeRole` and an external ID. No ServiceAccount, no Helm values.
    CrossAccount,
    /// Alibaba Cloud's RAM Roles for Service Accounts (ACK): the role trusts the cluster's RRSA
    /// OIDC provider for exactly this ServiceAccount, issuer and audience `sts.aliyuncs.com`.
    #[serde(rename = "RRSA")]
    Rrsa,
}

/// The account trusted in `mode: CrossAccount`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CrossAccountSpec {
    /// The account of the service that assumes the role: a 12-digit AWS account ID, or a
    /// 16-digit Alibaba Cloud account ID (checked per provider at the spec level).
    #[schemars(length(max = 16))]
    pub trusted_account_id: String,

    /// The external ID the service presents (sts:ExternalId). Generated (40 characters) and
    /// recorded in status when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 1224))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9+=,.@:/_-]+$')")
        .message("externalId may contain letters, digits and +=,.@:/_- only"))]
    pub external_id: Option<String>,
}

/// The ServiceAccount Milvus runs as.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountSpec {
    /// Defaults to the integration's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self == '' || self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')")
        .message("serviceAccount.name must be a valid ServiceAccount name: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"))]
    pub name: Option<String>,

    /// Create the ServiceAccount if it does not exist. An existing one is annotated, never replaced.
    #[serde(default = "default_true")]
    #[schemars(default = "default_true")]
    pub create: bool,
}

impl Default for ServiceAccountSpec {
    fn default() -> Self {
        Self {
            name: None,
            create: true,
        }
    }
}

/// Where the Milvus Helm values are written.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MilvusSpec {
    /// ConfigMap that receives `values.yaml`; defaults to `<name>-milvus-values`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self == '' || self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')")
        .message("milvus.valuesConfigMap must be a valid ConfigMap name: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"))]
    pub values_config_map: Option<String>,

    /// A `Milvus` object (milvus.io/v1beta1, the Milvus Operator's) in this namespace whose
    /// storage wiring bucketwire server-side applies, besides the values ConfigMap. Create it
    /// with `spec.dependencies.storage.external: true`, or after this integration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub milvus_ref: Option<MilvusRef>,
}

/// A Milvus object in the integration's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MilvusRef {
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')")
        .message("milvus.milvusRef.name must be a valid Milvus object name: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"))]
    pub name: String,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ValidationSpec {
    #[serde(default = "default_true")]
    #[schemars(default = "default_true")]
    pub enabled: bool,
}

impl Default for ValidationSpec {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// Observed state, written by the operator on every reconcile.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BucketIntegrationStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The integration's identity in AWS tags: `metadata.uid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<BucketStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc_provider_arn: Option<String>,
    /// PodIdentity mode: the EKS pod identity association bucketwire made (deleted with the
    /// integration, or when the mode or the ServiceAccount changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_identity_association_arn: Option<String>,
    /// The permissions boundary bucketwire put on the role (the only one it ever removes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions_boundary_arn: Option<String>,
    /// CrossAccount mode: the account trusted to assume the role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_account_id: Option<String>,
    /// CrossAccount mode: the external ID the trusted account must present (given or generated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// `namespace/name` of the Milvus ServiceAccount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values_config_map: Option<String>,
    /// The Milvus object (in this namespace) whose storage fields bucketwire applied; they are
    /// released when milvusRef changes or the integration is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub milvus_object: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_validated: Option<Time>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BucketStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// This integration uses an existing bucket it did not create: the bucket is never managed
    /// or deleted by bucketwire, and `spec.bucket.create` cannot become true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopted: Option<bool>,
    /// When this integration, having found no bucket of this name, recorded that it was about to
    /// create it; cleared once the bucket carries its tags. Only a bucket S3 says was created
    /// after this moment can be this integration's interrupted creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_started_at: Option<Time>,
}

fn default_true() -> bool {
    true
}

fn default_root_path() -> String {
    "files".to_string()
}

/// The CEL rules, evaluated without an apiserver (kube's `cel` feature), on the same cases
/// the apiserver tests use.
#[cfg(test)]
mod cel_tests {
    use kube::CustomResourceExt;
    use kube::core::cel::Validator;
    use serde_json::Value;

    use super::BucketIntegration;

    use crate::admission_fixture::{Layer, fixture, merge, object};

    fn schema() -> Value {
        let crd = BucketIntegration::crd();
        let schema = crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref());
        serde_json::to_value(schema.expect("the CRD has a schema")).expect("schema serializes")
    }

    fn errors(object: &Value, old: Option<&Value>) -> Vec<String> {
        match Validator::new().validate(&schema(), object, old) {
            Ok(()) => vec![],
            Err(errors) => errors
                .iter()
                .map(|e| format!("{}: {}", e.field_path, e.message))
                .collect(),
        }
    }

    fn assert_rejected(errors: &[String], case: &str, field: &str, message: &str) {
        assert!(
            errors.iter().any(|e| e.contains(field) && e.contains(message)),
            "{case}: expected {field:?} and {message:?}, got {errors:?}"
        );
    }

    #[test]
    fn valid_specs_pass_every_rule() {
        let f = fixture();
        for case in &f.valid {
            let obj = object("valid", merge(&f.base, &case.spec));
            assert_eq!(errors(&obj, None), Vec::<String>::new(), "{}", case.name);
        }
    }

    #[test]
    fn each_invalid_spec_fails_its_rule_with_a_message_naming_the_problem() {
        let f = fixture();
        let cel_cases: Vec<_> = f.invalid.iter().filter(|c| c.layer == Layer::Cel).collect();
        assert!(cel_cases.len() >= 25, "the fixture covers every CEL rule");
        for case in cel_cases {
            let obj = object("invalid", merge(&f.base, &case.spec));
            let errors = errors(&obj, None);
            assert_rejected(&errors, &case.name, &case.field, &case.message);
        }
    }

    #[test]
    fn immutable_fields_cannot_change() {
        let f = fixture();
        for case in &f.transitions {
            let old = object("t", merge(&f.base, &case.old));
            let new = object("t", merge(&merge(&f.base, &case.old), &case.new));
            let errors = errors(&new, Some(&old));
            assert_rejected(&errors, &case.name, &case.field, &case.message);
        }
    }

    #[test]
    fn a_bucket_name_may_be_set_when_it_was_empty() {
        let f = fixture();
        let old = object("t", merge(&f.base, &serde_json::json!({"bucket": {"name": ""}})));
        let new = object("t", f.base.clone());
        assert_eq!(errors(&new, Some(&old)), Vec::<String>::new());
    }
}
