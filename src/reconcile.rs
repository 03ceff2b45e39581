//! One reconcile of a BucketIntegration: resolve (pure) -> apply the steps in order, each
//! observing first and writing only differences -> status. Cleanup is the same steps backwards.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use crate::api::{
    BucketIntegration, BucketIntegrationStatus, BucketStatus, DeletionPolicy, EncryptionType, FIELD_MANAGER,
    IdentityMode, Provider, VALIDATE_ANNOTATION,
};
use crate::aws::actions::{Call, Operation};
use crate::aws::{Aws, AwsFailure};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::naming::{self, Owner, Partition};
use crate::provider::alibaba::{self, Alibaba, Credentials};
use crate::settings::Settings;
use crate::steps::bucket::DesiredBucket;
use crate::steps::iam::{DesiredPolicy, DesiredRole};
use crate::steps::{Outcome, bucket, iam, iam_view, kubernetes, milvus_operator, pod_identity};
use crate::validate;
use crate::{allow, documents};

/// Shared state of the controller.
pub struct Context {
    pub client: Client,
    pub aws: Aws,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub reporter: Reporter,
    /// Account id per partition (STS GetCallerIdentity), asked once per process.
    accounts: Mutex<HashMap<Partition, String>>,
    /// EKS clusters by name (EKS DescribeCluster: ARN, region, OIDC issuer), asked once per process.
    clusters: Mutex<HashMap<String, Cluster>>,
    /// IAM OIDC providers seen to exist.
    providers: Mutex<HashSet<String>>,
    /// Consecutive failed reconciles per integration (namespace/name), for the retry backoff.
    pub failures: Mutex<HashMap<String, u32>>,
    /// IAM's bulk view (GetAccountAuthorizationDetails), shared by every steady resync.
    pub iam_view: iam_view::SharedView,
    /// When each integration last read all its bucket's settings.
    pub bucket_reads: crate::cadence::BucketReads,
    /// Integrations (by `cadence::uid_key`) this process has seen: a steady one seen for the
    /// first time waits for its phase of the restart spread.
    pub seen: Mutex<HashSet<u128>>,
    /// Alibaba Cloud (`provider: alibaba`): its clients and the operator's credentials, or why
    /// there are none.
    pub alibaba: Result<Alibaba, String>,
}

impl Context {
    pub fn new(
        client: Client,
        aws: Aws,
        settings: Settings,
        metrics: Arc<Metrics>,
        reporter: Reporter,
    ) -> Self {
        let alibaba = Alibaba::new(settings.alibaba_endpoint_url.as_deref(), Credentials::from_env())
            .map(|alibaba| alibaba.with_metrics(metrics.clone()));
        Self {
            alibaba,
            recorder: Recorder::new(client.clone(), reporter.clone()),
            reporter,
            client,
            aws,
            settings,
            metrics,
            accounts: Mutex::default(),
            clusters: Mutex::default(),
            providers: Mutex::default(),
            failures: Mutex::default(),
            iam_view: iam_view::SharedView::default(),
            bucket_reads: crate::cadence::BucketReads::default(),
            seen: Mutex::default(),
        }
    }
}

/// Everything derived from the spec, the operator settings and what status recorded.
/// Pure: no I/O, so a bad spec is reported before any AWS call.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub region: String,
    pub partition: Partition,
    pub bucket: String,
    /// Whether status already records this bucket name.
    pub bucket_recorded: bool,
    /// When this integration recorded that it was about to create the bucket (and has not yet
    /// seen it tagged as its own).
    pub bucket_create_started_at: Option<jiff::Timestamp>,
    /// Status records that this integration adopted the bucket.
    pub bucket_adopted: bool,
    /// Whether an earlier reconcile found this bucket, ours, in this region (BucketReady). A
    /// bucket's region never changes, so resyncs need not ask again.
    pub bucket_region_verified: bool,
    pub service_account: String,
    pub values_config_map: String,
    /// IAM names and paths: the ones recorded in status (`roleArn`, `policyArn`) once recorded,
    /// derived from the settings only before that, so a settings change never moves them.
    pub role_name: String,
    pub role_path: String,
    pub policy_name: String,
    pub policy_path: String,
    /// What the current settings would have named differently (kept recorded names, said in Ready).
    pub settings_notes: Vec<String>,
    pub eks_cluster: String,
    pub issuer_override: Option<String>,
    pub tags: BTreeMap<String, String>,
}

fn region_verified(bi: &BucketIntegration, bucket: &str) -> bool {
    bi.status.as_ref().is_some_and(|status| {
        let recorded = status.bucket.as_ref();
        recorded.and_then(|b| b.name.as_deref()) == Some(bucket)
            && recorded.and_then(|b| b.region.as_deref()) == Some(bi.spec.region.as_str())
            && status
                .conditions
                .iter()
                .any(|c| c.type_ == "BucketReady" && c.status == "True")
    })
}

pub fn resolve(bi: &BucketIntegration, settings: &Settings) -> Result<Resolved, Error> {
    let namespace = bi
        .namespace()
        .ok_or_else(|| Error::InvalidSpec("the integration has no namespace".into()))?;
    let name = bi.name_any();
    let uid = bi
        .uid()
        .ok_or_else(|| Error::InvalidSpec("the integration has no uid yet".into()))?;
    let spec = &bi.spec;
    let owner = Owner {
        cluster: &settings.cluster_name,
        namespace: &namespace,
        name: &name,
    };
    let (bucket, recorded) = resolve_bucket_name(bi, settings, || {
        naming::bucket_name(owner, settings.bucket_prefix.as_deref())
    })?;
    let recorded_status = bi.status.as_ref();
    let recorded_bucket = recorded_status.and_then(|s| s.bucket.as_ref());
    let bucket_create_started_at = recorded_bucket
        .filter(|_| recorded.as_deref() == Some(bucket.as_str()))
        .and_then(|b| b.create_started_at.as_ref())
        .map(|t| t.0);
    let bucket_adopted = recorded_bucket.and_then(|b| b.adopted).unwrap_or(false);
    let mut settings_notes = vec![];
    let (role_path, role_name) = match recorded_status
        .and_then(|s| s.role_arn.as_deref())
        .and_then(iam_path_and_name)
    {
        Some((path, name)) => (path, name),
        None => (settings.role_path.clone(), naming::role_name(owner)),
    };
    let (policy_path, policy_name) = match recorded_status
        .and_then(|s| s.policy_arn.as_deref())
        .and_then(iam_path_and_name)
    {
        Some((path, name)) => (path, name),
        None => (settings.role_path.clone(), naming::policy_name(owner)),
    };
    if role_path != settings.role_path || policy_path != settings.role_path {
        settings_notes.push(format!(
            "the role and policy keep their recorded path {role_path} (the operator's --role-path is now {}; IAM cannot move a role, re-create the integration to move it)",
            settings.role_path
        ));
    }
    if role_name != naming::role_name(owner) {
        settings_notes.push(format!(
            "the role keeps its recorded name {role_name} (the current --cluster-name would name it {})",
            naming::role_name(owner)
        ));
    }
    let service_account = spec
        .service_account
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| name.clone());
    let values_config_map = spec
        .milvus
        .values_config_map
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("{name}-milvus-values"));
    let eks_cluster = spec
        .identity
        .eks_cluster_name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| settings.cluster_name.clone());
    let issuer_override = spec
        .identity
        .oidc_issuer
        .clone()
        .filter(|i| !i.is_empty())
        .or_else(|| settings.oidc_issuer.clone().filter(|i| !i.is_empty()));
    let tags = documents::ownership_tags(&settings.cluster_name, &namespace, &name, &uid, &spec.bucket.tags);
    Ok(Resolved {
        partition: Partition::of_region(&spec.region),
        region: spec.region.clone(),
        bucket_recorded: recorded.as_deref() == Some(bucket.as_str()),
        bucket_region_verified: region_verified(bi, &bucket),
        bucket_create_started_at,
        bucket_adopted,
        bucket,
        service_account,
        values_config_map,
        role_name,
        role_path,
        policy_name,
        policy_path,
        settings_notes,
        eks_cluster,
        issuer_override,
        tags,
        namespace,
        name,
        uid,
    })
}

/// `arn:<partition>:iam::<account>:role/<path...>/<name>` -> (`/<path...>/`, `<name>`).
pub fn iam_path_and_name(arn: &str) -> Option<(String, String)> {
    let resource = arn.splitn(6, ':').nth(5)?;
    let (_kind, rest) = resource.split_once('/')?;
    let (path, name) = match rest.rsplit_once('/') {
        Some((path, name)) => (format!("/{path}/"), name),
        None => ("/".to_string(), rest),
    };
    (!name.is_empty()).then(|| (path, name.to_string()))
}

/// What the reconcile learned and did, step by step, for status and Events.
#[derive(Default)]
pub(crate) struct Report {
    pub status: BucketIntegrationStatus,
    pub steps: Vec<(&'static str, Result<Outcome, String>, &'static str)>,
    /// The Validated condition, when validation ran (or is disabled).
    pub validated: Option<Validated>,
    /// Whether the policy or role changed in this reconcile (IAM may need to propagate).
    pub iam_changed: bool,
    /// Recorded names the current settings would have chosen differently (said in Ready).
    pub notes: Vec<String>,
}

impl Report {
    /// What every provider records in status before any cloud write: the bucket; for a
    /// workload mode the ServiceAccount and the values ConfigMap; across accounts the external
    /// ID (given, or generated once and kept) and the trusted account. Answers the external ID.
    pub(crate) fn record_identity(
        &mut self,
        bi: &BucketIntegration,
        bucket: BucketStatus,
        service_account: &str,
        values_config_map: &str,
    ) -> Result<Option<String>, Error> {
        let cross_account = bi.spec.identity.mode == IdentityMode::CrossAccount;
        self.status.bucket = Some(bucket);
        if !cross_account {
            self.status.service_account = Some(service_account.to_string());
            self.status.values_config_map = Some(values_config_map.to_string());
        }
        let external_id = if cross_account {
            Some(external_id(bi)?)
        } else {
            None
        };
        self.status.external_id = external_id.clone();
        self.status.trusted_account_id = bi
            .spec
            .identity
            .cross_account
            .as_ref()
            .filter(|_| cross_account)
            .map(|c| c.trusted_account_id.clone());
        Ok(external_id)
    }
}

/// The Validated condition and what follows from it.
pub(crate) struct Validated {
    status: &'static str,
    reason: String,
    message: String,
    /// Requeue sooner than the resync interval (propagating).
    retry: Option<Duration>,
    /// Validation passed now: `status.lastValidated` moves.
    passed_now: bool,
    /// Failed for a transient reason (throttling, a 5xx, a lost connection): retry with backoff.
    transient: bool,
}

/// The step conditions, in order. Across accounts there is no ServiceAccount and no values;
/// `MilvusReady` only when the integration targets a Milvus object.
fn steps(bi: &BucketIntegration) -> Vec<&'static str> {
    let mut steps = match bi.spec.identity.mode {
        IdentityMode::Irsa | IdentityMode::Rrsa => vec![
            "BucketReady",
            "PolicyReady",
            "RoleReady",
            "ServiceAccountReady",
            "ValuesReady",
        ],
        IdentityMode::PodIdentity => vec![
            "BucketReady",
            "PolicyReady",
            "RoleReady",
            "ServiceAccountReady",
            "PodIdentityAssociationReady",
            "ValuesReady",
        ],
        IdentityMode::CrossAccount => return vec!["BucketReady", "PolicyReady", "RoleReady"],
    };
    if milvus_target(bi).is_some() {
        steps.push("MilvusReady");
    }
    steps
}

/// A Milvus object named before (or no longer named) gives back bucketwire's fields first,
/// then status forgets it.
pub(crate) async fn release_previous_milvus_object(
    bi: &BucketIntegration,
    ctx: &Context,
    report: &mut Report,
    namespace: &str,
    name: &str,
) -> Result<(), Error> {
    let target = milvus_target(bi);
    let Some(previous) = report.status.milvus_object.clone() else {
        return Ok(());
    };
    if target.as_deref() == Some(previous.as_str()) {
        return Ok(());
    }
    let manager = kubernetes::service_account_manager(name);
    if let Some(message) = milvus_operator::release(&ctx.client, namespace, &previous, &manager).await? {
        info!("{message}");
        publish(ctx, bi, "MilvusReady", EventType::Normal, "Released", &message).await;
    }
    report.status.milvus_object = None;
    record_status(
        bi,
        ctx,
        json!({"milvusObject": null}),
        "forget the released Milvus object",
    )
    .await
}

/// The Milvus Operator's Milvus object, when the integration names one: its storage fields, by
/// server-side apply as this integration (no force). The object is recorded before the first
/// write, so a crash never leaves fields nobody releases.
pub(crate) async fn wire_milvus_object(
    bi: &BucketIntegration,
    ctx: &Context,
    report: &mut Report,
    namespace: &str,
    name: &str,
    desired: &milvus_operator::DesiredStorage,
) -> Result<(), Error> {
    let Some(target) = milvus_target(bi) else {
        return Ok(());
    };
    if report.status.milvus_object.as_deref() != Some(target.as_str()) {
        record_status(
            bi,
            ctx,
            json!({"milvusObject": target}),
            "record the Milvus object",
        )
        .await?;
        report.status.milvus_object = Some(target.clone());
    }
    let manager = kubernetes::service_account_manager(name);
    let outcome = milvus_operator::reconcile(&ctx.client, namespace, &target, &manager, desired).await?;
    report.steps.push(("MilvusReady", Ok(outcome), ""));
    Ok(())
}

/// Cleanup: the storage fields bucketwire applied to the Milvus object status records are
/// released; the object and the user's fields stay.
pub(crate) async fn release_recorded_milvus_object(
    bi: &BucketIntegration,
    ctx: &Context,
) -> Result<Option<String>, Error> {
    let Some(milvus) = bi.status.as_ref().and_then(|s| s.milvus_object.clone()) else {
        return Ok(None);
    };
    let namespace = bi.namespace().unwrap_or_default();
    let manager = kubernetes::service_account_manager(&bi.name_any());
    milvus_operator::release(&ctx.client, &namespace, &milvus, &manager).await
}

/// Whether the integration is in steady state: Ready for its current generation, with no
/// validation asked for. Only such a resync may trust IAM's bulk view (a changed spec, a failed
/// step or an on-demand validation reads everything it writes after).
pub fn steady(bi: &BucketIntegration) -> bool {
    let Some(status) = bi.status.as_ref() else {
        return false;
    };
    status.observed_generation.is_some()
        && status.observed_generation == bi.metadata.generation
        && status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
        && !bi.annotations().contains_key(VALIDATE_ANNOTATION)
}

/// How old IAM's bulk view may be: a quarter of the resync interval, so drift made right after
/// one read is seen within 1.25 intervals, for four bulk reads per interval (a page per 250 roles
/// and policies each).
pub fn iam_view_max_age(settings: &Settings) -> Duration {
    settings.resync_interval / 4
}

/// The Milvus object the integration wires, if any.
fn milvus_target(bi: &BucketIntegration) -> Option<String> {
    bi.spec
        .milvus
        .milvus_ref
        .as_ref()
        .map(|r| r.name.clone())
        .filter(|n| !n.is_empty())
        .filter(|_| bi.spec.identity.mode != IdentityMode::CrossAccount)
}

/// What status already records about the integration's identity in AWS (bucket, adoption,
/// role, policy, provider, external ID). Every status write starts from it, so a reconcile that
/// fails before reaching a step never erases what an earlier one recorded.
fn recorded_identity(bi: &BucketIntegration) -> BucketIntegrationStatus {
    let Some(status) = bi.status.as_ref() else {
        return BucketIntegrationStatus::default();
    };
    BucketIntegrationStatus {
        bucket: status.bucket.clone().map(|b| BucketStatus {
            // Owned by the journal's merge patches, never re-sent by the status apply.
            create_started_at: None,
            ..b
        }),
        policy_arn: status.policy_arn.clone(),
        role_arn: status.role_arn.clone(),
        oidc_provider_arn: status.oidc_provider_arn.clone(),
        pod_identity_association_arn: status.pod_identity_association_arn.clone(),
        permissions_boundary_arn: status.permissions_boundary_arn.clone(),
        trusted_account_id: status.trusted_account_id.clone(),
        external_id: status.external_id.clone(),
        service_account: status.service_account.clone(),
        values_config_map: status.values_config_map.clone(),
        milvus_object: status.milvus_object.clone(),
        ..BucketIntegrationStatus::default()
    }
}

/// Runs the pipeline and always writes status. Returns the first error, if any, or how soon
/// to look again when that should be sooner than the resync (validation propagating).
pub async fn apply(bi: &BucketIntegration, ctx: &Context) -> Result<Option<Duration>, Error> {
    let mut report = Report {
        status: recorded_identity(bi),
        ..Report::default()
    };
    report.status.integration_id = bi.uid();
    let result = run_steps(bi, ctx, &mut report).await;
    if let Err(err) = &result {
        let step = steps(bi).get(report.steps.len()).copied().unwrap_or("Ready");
        report.steps.push((step, Err(err.to_string()), err.reason()));
    }
    let retry = report.validated.as_ref().and_then(|v| v.retry);
    let interrupted = report
        .validated
        .as_ref()
        .filter(|v| v.transient)
        .map(|v| v.message.clone());
    write_status(bi, ctx, report).await?;
    if bi.annotations().contains_key(VALIDATE_ANNOTATION) {
        clear_validate_annotation(bi, ctx).await?;
    }
    result?;
    match interrupted {
        Some(message) => Err(Error::ValidationInterrupted(message)),
        None => Ok(retry),
    }
}

/// Removes `bucketwire.io/validate` once the validation it asked for has run.
async fn clear_validate_annotation(bi: &BucketIntegration, ctx: &Context) -> Result<(), Error> {
    let api: Api<BucketIntegration> =
        Api::namespaced(ctx.client.clone(), &bi.namespace().unwrap_or_default());
    let patch = json!({"metadata": {"annotations": {VALIDATE_ANNOTATION: null}}});
    api.patch(&bi.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(Error::kube("clear the validate annotation"))?;
    Ok(())
}

async fn run_steps(bi: &BucketIntegration, ctx: &Context, report: &mut Report) -> Result<(), Error> {
    if bi.spec.provider == Provider::Alibaba {
        return alibaba::reconcile::run_steps(bi, ctx, report).await;
    }
    let r = resolve(bi, &ctx.settings)?;
    // The operator's allow-lists (allow.rs), before anything is recorded or written: the trust
    // anchors the spec names (pure), never the operator's own account (a cached STS read), and
    // only an allowed KMS key (alias entries resolved with KMS DescribeKey, a read).
    allow::check_trust(&bi.spec, &ctx.settings)?;
    allow::check_not_operator_account(&bi.spec, &caller_account(ctx, r.partition).await?)?;
    if let Some(key) = allow::spec_kms_key(&bi.spec) {
        allow::check_kms_key(
            &ctx.aws.kms(&r.region),
            key,
            &r.region,
            &ctx.settings.allowed_kms_keys,
        )
        .await?;
    }
    report.notes = r.settings_notes.clone();
    let spec = &bi.spec;
    let cross_account = spec.identity.mode == IdentityMode::CrossAccount;
    // Identity first: the bucket name (so an interrupted create is recognisable), the role
    // and policy ARNs (so a settings change never renames them) and, across accounts, the
    // external ID (so a generated one is never lost) are recorded before any AWS write.
    let external_id = report.record_identity(
        bi,
        BucketStatus {
            name: Some(r.bucket.clone()),
            arn: Some(naming::bucket_arn(r.partition, &r.bucket)),
            region: Some(r.region.clone()),
            endpoint: Some(naming::s3_host(&r.region)),
            adopted: r.bucket_adopted.then_some(true),
            create_started_at: None,
        },
        &format!("{}/{}", r.namespace, r.service_account),
        &r.values_config_map,
    )?;

    let account = caller_account(ctx, r.partition).await?;
    let policy_arn = format!(
        "arn:{}:iam::{account}:policy{}{}",
        r.partition.id(),
        r.policy_path,
        r.policy_name
    );
    let derived_role_arn = format!(
        "arn:{}:iam::{account}:role{}{}",
        r.partition.id(),
        r.role_path,
        r.role_name
    );
    let recorded = bi.status.as_ref();
    let identity_recorded = r.bucket_recorded
        && recorded.and_then(|s| s.policy_arn.as_deref()) == Some(policy_arn.as_str())
        && recorded.and_then(|s| s.role_arn.as_deref()).is_some()
        && (external_id.is_none()
            || recorded.and_then(|s| s.external_id.as_deref()) == external_id.as_deref());
    if !identity_recorded {
        let role_arn = recorded
            .and_then(|s| s.role_arn.clone())
            .unwrap_or_else(|| derived_role_arn.clone());
        record_status(
            bi,
            ctx,
            json!({
                "integrationId": r.uid,
                "bucket": {"name": r.bucket},
                "policyArn": policy_arn,
                "roleArn": role_arn,
                "externalId": external_id,
            }),
            "record the integration's names in status",
        )
        .await?;
        report.status.role_arn = Some(role_arn);
    }
    report.status.policy_arn = Some(policy_arn.clone());
    let spec_kms_key = match spec.bucket.encryption.kind {
        EncryptionType::SseKms => spec.bucket.encryption.kms_key_arn.clone(),
        EncryptionType::SseS3 => None,
    };

    // 1. Bucket
    let desired_bucket = DesiredBucket {
        name: r.bucket.clone(),
        region: r.region.clone(),
        create: spec.bucket.create,
        kms_key_arn: spec_kms_key.clone(),
        versioning: spec.bucket.versioning,
        tags: r.tags.clone(),
        policy: documents::bucket_policy(r.partition, &r.bucket),
        uid: r.uid.clone(),
    };
    let s3 = ctx.aws.s3(&r.region);
    let journal = StatusJournal::new(bi, ctx);
    // A steady resync reads one bucket setting, all of them once per bucket-settings interval.
    let read = if steady(bi)
        && !ctx.bucket_reads.full_due(
            &r.uid,
            ctx.settings.bucket_settings_interval,
            ctx.settings.resync_interval,
        ) {
        bucket::BucketRead::Steady
    } else {
        bucket::BucketRead::Full
    };
    let (bucket_outcome, adopted_kms_key, read) = bucket::reconcile(
        &s3,
        &desired_bucket,
        bucket::Known {
            create_started_at: r.bucket_create_started_at,
            adopted: r.bucket_adopted,
            region_verified: r.bucket_region_verified,
        },
        ctx.settings.may_adopt(&r.bucket),
        &journal,
        read,
    )
    .await?;
    if read == bucket::BucketRead::Full {
        ctx.bucket_reads.record_full(&r.uid);
    }
    journal
        .bucket_done(
            spec.bucket.create,
            r.bucket_create_started_at.is_some(),
            report,
            bucket_outcome,
        )
        .await?;
    // An adopted bucket's key is whatever it actually uses; ours is the spec's.
    let kms_key = if spec.bucket.create {
        spec_kms_key
    } else {
        adopted_kms_key.map(|id| naming::kms_key_arn(r.partition, &r.region, &account, &id))
    };

    // 2. Policy
    let iam_client = ctx.aws.iam(r.partition);
    let description = spec
        .description
        .clone()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| {
            format!(
                "Milvus access to s3://{} for {}/{}",
                r.bucket, r.namespace, r.name
            )
        });
    let kms = kms_key.as_deref().map(|key_arn| documents::BucketKms {
        key_arn,
        region: &r.region,
        context: if spec.bucket.create {
            documents::KmsContext::BucketKey
        } else {
            documents::KmsContext::BucketOrObjects
        },
    });
    let document = if cross_account {
        documents::cross_account_policy(r.partition, &r.bucket, spec.access, kms)
    } else {
        documents::permission_policy(r.partition, &r.bucket, spec.access, kms)
    };
    let desired_policy = DesiredPolicy {
        arn: policy_arn.clone(),
        name: r.policy_name.clone(),
        path: r.policy_path.clone(),
        description: description.clone(),
        document,
        tags: r.tags.clone(),
        uid: r.uid.clone(),
    };
    // A steady resync first looks at IAM's bulk view: what it shows unchanged costs no call.
    let view = match (steady(bi), ctx.settings.iam_bulk_reads) {
        (true, true) => {
            ctx.iam_view
                .get(
                    &iam_client,
                    &ctx.settings.role_path,
                    iam_view_max_age(&ctx.settings),
                )
                .await
        }
        _ => None,
    };
    let outcome = match &view {
        Some(view) if view.policy_unchanged(&desired_policy) => {
            Outcome::up_to_date(format!("policy {} matches (IAM's bulk view)", desired_policy.arn))
        }
        _ => iam::reconcile_policy(&iam_client, &desired_policy).await?,
    };
    report.iam_changed |= outcome.changed();
    report.steps.push(("PolicyReady", Ok(outcome), ""));
    crate::failpoint::crash_point("after-policy");

    // 3. Role: trusting the cluster's OIDC provider (IRSA) or EKS Pod Identity for exactly
    //    this ServiceAccount, or exactly one account presenting the external ID.
    let trust_anchor = match spec.identity.mode {
        IdentityMode::CrossAccount => None,
        // Admission refuses it with provider aws (the CEL rule on identity.mode).
        IdentityMode::Rrsa => {
            return Err(Error::InvalidSpec(
                "identity.mode RRSA is Alibaba Cloud's: with provider aws use IRSA, PodIdentity or CrossAccount".into(),
            ));
        }
        IdentityMode::Irsa => {
            let issuer = oidc_issuer(ctx, &r).await?;
            let provider_arn = naming::oidc_provider_arn(r.partition, &account, &issuer);
            ensure_provider(ctx, &iam_client, &provider_arn, &issuer).await?;
            report.status.oidc_provider_arn = Some(provider_arn.clone());
            Some(TrustAnchor::Irsa {
                trust: documents::trust_policy(&provider_arn, &issuer, &r.namespace, &r.service_account),
                provider_arn,
            })
        }
        IdentityMode::PodIdentity => {
            report.status.oidc_provider_arn = None;
            let cluster = eks_cluster(ctx, &r).await?;
            Some(TrustAnchor::PodIdentity {
                trust: documents::pod_identity_trust(&cluster.arn, &r.namespace, &r.service_account),
                cluster,
            })
        }
    };
    let trust = match (&trust_anchor, &spec.identity.cross_account, &external_id) {
        (Some(TrustAnchor::Irsa { trust, .. } | TrustAnchor::PodIdentity { trust, .. }), _, _) => {
            trust.clone()
        }
        (None, Some(cross), Some(external_id)) => {
            documents::cross_account_trust(r.partition, &cross.trusted_account_id, external_id)
        }
        (None, _, _) => {
            return Err(Error::InvalidSpec(
                "identity.crossAccount is required when mode is CrossAccount".into(),
            ));
        }
    };
    let desired_role = DesiredRole {
        name: r.role_name.clone(),
        arn: derived_role_arn.clone(),
        path: r.role_path.clone(),
        description,
        trust,
        permissions_boundary: ctx.settings.permissions_boundary.clone(),
        boundary_set_by_us: bi
            .status
            .as_ref()
            .and_then(|s| s.permissions_boundary_arn.clone()),
        policy_arn: policy_arn.clone(),
        tags: r.tags.clone(),
        uid: r.uid.clone(),
    };
    let iam::RoleReport {
        outcome,
        arn: role_arn,
        boundary_set_by_us,
    } = match view.as_ref().and_then(|v| v.role_unchanged(&desired_role)) {
        // The view matched the desired ARN exactly.
        Some(seen) => iam::RoleReport {
            outcome: Outcome::up_to_date(format!("role {} matches (IAM's bulk view)", desired_role.arn)),
            arn: desired_role.arn.clone(),
            boundary_set_by_us: iam::boundary_kept(seen.boundary.as_deref(), &desired_role),
        },
        None => iam::reconcile_role(&iam_client, &desired_role).await?,
    };
    report.status.permissions_boundary_arn = boundary_set_by_us;
    report.iam_changed |= outcome.changed();
    report.status.role_arn = Some(role_arn.clone());
    report.steps.push(("RoleReady", Ok(outcome), ""));
    crate::failpoint::crash_point("after-role");

    // Not Pod Identity (any more): the association bucketwire made for it goes.
    if !matches!(trust_anchor, Some(TrustAnchor::PodIdentity { .. }))
        && let Some(recorded) = report.status.pod_identity_association_arn.clone()
    {
        let done = remove_association(ctx, &r, &recorded).await?;
        report.status.pod_identity_association_arn = None;
        record_status(
            bi,
            ctx,
            json!({"podIdentityAssociationArn": null}),
            "forget the deleted pod identity association",
        )
        .await?;
        if !done.is_empty() {
            let message = format!("{} (identity.mode is no longer PodIdentity)", done.join("; "));
            info!("{message}");
            publish(
                ctx,
                bi,
                "PodIdentityAssociation",
                EventType::Normal,
                "Deleted",
                &message,
            )
            .await;
        }
    }

    release_previous_milvus_object(bi, ctx, report, &r.namespace, &r.name).await?;
    let Some(trust_anchor) = trust_anchor else {
        // Across accounts there is no ServiceAccount and no Helm values: the other account uses
        // the role. What can be validated from here is checked from here.
        let kept = (!write_probe_due(bi, report, &ctx.settings))
            .then(|| kept_validation(bi))
            .flatten();
        report.validated = Some(if let (true, Some(kept)) = (spec.validation.enabled, kept) {
            // Steady: the region is recorded, and the steps just confirmed role and policy.
            kept
        } else if spec.validation.enabled {
            let target = validate::CrossAccountTarget {
                role_name: r.role_name.clone(),
                role_arn,
                policy_arn,
                trust: desired_role.trust.clone(),
                permissions: desired_policy.document.clone(),
                trusted_account_id: report.status.trusted_account_id.clone().unwrap_or_default(),
                bucket: r.bucket.clone(),
                region: r.region.clone(),
            };
            // The policy and role steps above have just read both documents and repaired any
            // drift: validation checks the bucket and does not read them again.
            let outcome = validate::run_cross_account(None, &s3, &target).await;
            judge_validation(
                bi,
                &target.summary(),
                outcome,
                report.iam_changed,
                ctx.settings.propagation_timeout,
            )
        } else {
            disabled()
        });
        return Ok(());
    };

    // 4. ServiceAccount: the role annotation for IRSA; none for Pod Identity (with both, the
    //    SDKs use IRSA), so bucketwire's own goes when an integration switches.
    let annotation = match &trust_anchor {
        TrustAnchor::Irsa { .. } => Some(role_arn.as_str()),
        TrustAnchor::PodIdentity { .. } => None,
    };
    let outcome = kubernetes::reconcile_service_account(
        &ctx.client,
        &r.namespace,
        &r.service_account,
        spec.service_account.create,
        &r.name,
        crate::documents::ROLE_ARN_ANNOTATION,
        annotation,
    )
    .await?;
    report.steps.push(("ServiceAccountReady", Ok(outcome), ""));

    // 4b. Pod Identity: the association binding the ServiceAccount to the role.
    let workload_identity = match &trust_anchor {
        TrustAnchor::Irsa { provider_arn, .. } => validate::WorkloadIdentity::Irsa {
            provider_arn: provider_arn.clone(),
        },
        TrustAnchor::PodIdentity { cluster, .. } => {
            let desired = pod_identity::DesiredAssociation {
                cluster: cluster.name.clone(),
                cluster_arn: cluster.arn.clone(),
                namespace: r.namespace.clone(),
                service_account: r.service_account.clone(),
                role_arn: role_arn.clone(),
                tags: r.tags.clone(),
                uid: r.uid.clone(),
            };
            let recorded = report.status.pod_identity_association_arn.clone();
            let pod_identity::AssociationReport { outcome, arn } =
                pod_identity::reconcile(&ctx.aws.eks(&cluster.region), &desired, recorded.as_deref()).await?;
            if recorded.as_deref() != Some(arn.as_str()) {
                record_status(
                    bi,
                    ctx,
                    json!({"podIdentityAssociationArn": arn}),
                    "record the pod identity association",
                )
                .await?;
            }
            report.status.pod_identity_association_arn = Some(arn.clone());
            report
                .steps
                .push(("PodIdentityAssociationReady", Ok(outcome), ""));
            crate::failpoint::crash_point("after-association");
            validate::WorkloadIdentity::PodIdentity {
                cluster: cluster.name.clone(),
                cluster_arn: cluster.arn.clone(),
                region: cluster.region.clone(),
                association_arn: arn,
                association_checked: true,
            }
        }
    };

    // 5. Milvus values
    let values = documents::milvus_values(&r.service_account, &r.bucket, &spec.bucket.root_path, &r.region);
    let yaml = documents::render_values(&values).map_err(|e| Error::InvalidSpec(format!("values: {e}")))?;
    let owner = bi
        .controller_owner_ref(&())
        .ok_or_else(|| Error::InvalidSpec("the integration has no uid yet".into()))?;
    let outcome = kubernetes::reconcile_values(
        &ctx.client,
        &r.namespace,
        &r.values_config_map,
        owner,
        &r.name,
        &yaml,
    )
    .await?;
    report.steps.push(("ValuesReady", Ok(outcome), ""));

    // 5b. The Milvus Operator's Milvus object, when the integration names one.
    let desired = milvus_operator::DesiredStorage::aws(
        &r.bucket,
        &spec.bucket.root_path,
        &r.region,
        &r.service_account,
    );
    wire_milvus_object(bi, ctx, report, &r.namespace, &r.name, &desired).await?;

    // 6. Validate, as the Milvus ServiceAccount.
    report.validated = Some(if spec.validation.enabled {
        let target = validate::Target {
            namespace: r.namespace.clone(),
            service_account: r.service_account.clone(),
            role_arn: role_arn.clone(),
            identity: workload_identity,
            trust: desired_role.trust.clone(),
            bucket: r.bucket.clone(),
            region: r.region.clone(),
            root_path: spec.bucket.root_path.clone(),
            access: spec.access,
            probe_id: r.uid.clone(),
        };
        // A steady resync checks read-only; a failed check runs the full probe, which says why.
        let kept = if write_probe_due(bi, report, &ctx.settings) {
            None
        } else {
            let check = validate::run_read_only(&ctx.client, &ctx.aws, &target).await;
            if !check.succeeded() {
                info!(namespace = %r.namespace, name = %r.name, summary = %check.summary(&target),
                    "the read-only check failed; running the full probe");
            }
            check.succeeded().then(|| kept_validation(bi)).flatten()
        };
        match kept {
            Some(kept) => kept,
            None => {
                let outcome = validate::run(&ctx.client, &ctx.aws, &target).await;
                judge_validation(
                    bi,
                    &outcome.summary(&target),
                    outcome,
                    report.iam_changed,
                    ctx.settings.propagation_timeout,
                )
            }
        }
    } else {
        disabled()
    });
    Ok(())
}

/// What the role trusts, when a workload in this cluster assumes it.
enum TrustAnchor {
    Irsa {
        provider_arn: String,
        trust: serde_json::Value,
    },
    PodIdentity {
        cluster: Cluster,
        trust: serde_json::Value,
    },
}

/// Deletes the pod identity associations of this integration (the recorded one, and any for its
/// ServiceAccount carrying its uid).
async fn remove_association(ctx: &Context, r: &Resolved, recorded: &str) -> Result<Vec<String>, Error> {
    let Some(found) = pod_identity::parse_arn(recorded) else {
        return Ok(vec![]);
    };
    let desired = pod_identity::DesiredAssociation {
        cluster_arn: pod_identity::cluster_arn_of(recorded),
        cluster: found.cluster,
        namespace: r.namespace.clone(),
        service_account: r.service_account.clone(),
        role_arn: String::new(),
        tags: BTreeMap::new(),
        uid: r.uid.clone(),
    };
    pod_identity::delete_ours(&ctx.aws.eks(&found.region), &desired, Some(recorded)).await
}

/// Whether this reconcile runs the full validation probe (which writes a probe object as the
/// workload), rather than the read-only check: always unless the resync is steady, changed
/// nothing and finds Validated True; and on a steady one when `--write-probe-interval` is set
/// and the last passed probe (`status.lastValidated`) is older than it.
pub(crate) fn write_probe_due(bi: &BucketIntegration, report: &Report, settings: &Settings) -> bool {
    let changed = report.iam_changed
        || report
            .steps
            .iter()
            // ("Adopted" is also what every resync of an adopted bucket says.)
            .any(|(_, outcome, _)| {
                outcome
                    .as_ref()
                    .map_or(true, |o| matches!(o.reason, "Created" | "DriftCorrected"))
            });
    let status = bi.status.as_ref();
    let validated = status.is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Validated" && c.status == "True")
    });
    let stale = settings.write_probe_interval.is_some_and(|interval| {
        status
            .and_then(|s| s.last_validated.as_ref())
            .is_none_or(|Time(last)| {
                jiff::Timestamp::now().duration_since(*last)
                    >= jiff::SignedDuration::try_from(interval).unwrap_or(jiff::SignedDuration::MAX)
            })
    });
    !steady(bi) || changed || !validated || stale
}

/// The Validated condition a steady resync keeps when its read-only check passed (or, across
/// accounts, when the steps confirmed what validation checks): the last one, unchanged, so
/// `lastValidated` still says when the full probe last passed.
pub(crate) fn kept_validation(bi: &BucketIntegration) -> Option<Validated> {
    let condition = bi
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Validated" && c.status == "True")?;
    Some(Validated {
        status: "True",
        reason: condition.reason.clone(),
        message: condition.message.clone(),
        retry: None,
        passed_now: false,
        transient: false,
    })
}

pub(crate) fn disabled() -> Validated {
    Validated {
        status: "Unknown",
        reason: "Disabled".into(),
        message: "validation.enabled is false".into(),
        retry: None,
        passed_now: false,
        transient: false,
    }
}

/// The external ID of a cross-account integration: the spec's, else the one recorded in
/// status, else a new random one (recorded before the role is created).
pub(crate) fn external_id(bi: &BucketIntegration) -> Result<String, Error> {
    let given = bi
        .spec
        .identity
        .cross_account
        .as_ref()
        .and_then(|c| c.external_id.clone())
        .filter(|e| !e.is_empty());
    let recorded = bi.status.as_ref().and_then(|s| s.external_id.clone());
    match given.or(recorded) {
        Some(id) => Ok(id),
        None => documents::generate_external_id()
            .map_err(|e| Error::InvalidSpec(format!("cannot generate an external ID: {e}"))),
    }
}

/// Turns a validation report into the Validated condition. A denial may be IAM propagating a
/// change: it is reported as Propagating and retried with backoff until the propagation timeout
/// has passed since the failures began (or since IAM last changed), then with its precise reason.
pub(crate) fn judge_validation(
    bi: &BucketIntegration,
    summary: &str,
    report: validate::Report,
    iam_changed: bool,
    timeout: Duration,
) -> Validated {
    let Some(failure) = &report.failure else {
        return Validated {
            status: "True",
            // Pod Identity where EKS Auth refused the operator: the association and the trust
            // policy were checked, not the workload's access (the message says so).
            reason: if report.statically.is_some() {
                "ValidatedStatically".into()
            } else {
                "Validated".into()
            },
            message: summary.to_string(),
            retry: None,
            passed_now: true,
            transient: false,
        };
    };
    let previous = bi
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Validated"));
    let now = jiff::Timestamp::now();
    let started = match previous {
        Some(c) if c.reason == "Propagating" && !iam_changed => c.last_transition_time.0,
        Some(c) if c.status == "False" && !iam_changed => {
            // Already reported precisely, and nothing changed since: stay precise.
            return precise(failure);
        }
        _ => now,
    };
    let elapsed = Duration::try_from(now.duration_since(started)).unwrap_or_default();
    if validate::may_be_propagating(&report) && elapsed < timeout {
        return Validated {
            status: "False",
            reason: "Propagating".into(),
            message: format!(
                "{} (retrying for up to {}s while IAM propagates)",
                failure,
                timeout.as_secs()
            ),
            retry: Some(validate::propagation_retry(elapsed)),
            passed_now: false,
            transient: false,
        };
    }
    precise(failure)
}

fn precise(failure: &Error) -> Validated {
    Validated {
        status: "False",
        reason: failure.reason().into(),
        message: failure.to_string(),
        retry: None,
        passed_now: false,
        transient: !failure.is_terminal(),
    }
}

/// Merges `status` into the integration's status (a JSON merge patch: fields it does not name
/// are kept, so what an earlier reconcile recorded is never lost by this write).
pub(crate) async fn record_status(
    bi: &BucketIntegration,
    ctx: &Context,
    status: serde_json::Value,
    operation: &'static str,
) -> Result<(), Error> {
    let api: Api<BucketIntegration> =
        Api::namespaced(ctx.client.clone(), &bi.namespace().unwrap_or_default());
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    api.patch_status(&bi.name_any(), &params, &Patch::Merge(&json!({"status": status})))
        .await
        .map_err(Error::kube(operation))?;
    Ok(())
}

/// The integration's bucket name, for every provider: the one recorded in status, else the
/// spec's, else `derive()`; never a second bucket, and only within the operator's
/// `--bucket-prefix`. Answers the name and the recorded one.
pub(crate) fn resolve_bucket_name(
    bi: &BucketIntegration,
    settings: &Settings,
    derive: impl FnOnce() -> String,
) -> Result<(String, Option<String>), Error> {
    let recorded = bi
        .status
        .as_ref()
        .and_then(|s| s.bucket.as_ref())
        .and_then(|b| b.name.clone());
    let given = bi.spec.bucket.name.clone().filter(|n| !n.is_empty());
    let bucket = match (&given, &recorded) {
        (Some(g), Some(r)) if g != r => {
            return Err(Error::InvalidSpec(format!(
                "spec.bucket.name {g} differs from the bucket recorded in status ({r}); the bucket of an integration cannot change"
            )));
        }
        (Some(g), _) => g.clone(),
        (None, Some(r)) => r.clone(),
        (None, None) => derive(),
    };
    if let Some(prefix) = settings.bucket_prefix.as_deref().filter(|p| !p.is_empty())
        && !bucket.starts_with(prefix)
    {
        if recorded.as_deref() == Some(bucket.as_str()) {
            // Never a second bucket: the recorded one stays this integration's bucket, and the
            // operator stops touching it until the setting and the record agree again.
            return Err(Error::SettingConflict(format!(
                "bucket {bucket} is recorded in status, but the operator's --bucket-prefix is now {prefix}; bucketwire does not move an integration to a new bucket. Add the old prefix back to the operator's setting, or delete this integration (its bucket is kept unless deletionPolicy is Delete)"
            )));
        }
        return Err(Error::InvalidSpec(format!(
            "bucket name {bucket} does not start with {prefix}, the prefix this operator is allowed to use"
        )));
    }
    Ok((bucket, recorded))
}

/// The bucket step's records, written to this integration's status before the AWS call.
pub(crate) struct StatusJournal<'a> {
    pub bi: &'a BucketIntegration,
    pub ctx: &'a Context,
    pub wrote_intent: std::sync::atomic::AtomicBool,
}

impl<'a> StatusJournal<'a> {
    pub(crate) fn new(bi: &'a BucketIntegration, ctx: &'a Context) -> Self {
        Self {
            bi,
            ctx,
            wrote_intent: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// After the bucket step succeeded, for every provider: success with `create: true` means
    /// the bucket carries this integration's tags, so a create intent (recorded before, or in
    /// this reconcile) has done its job; an adopted bucket is said to be one.
    pub(crate) async fn bucket_done(
        &self,
        create: bool,
        intent_recorded_before: bool,
        report: &mut Report,
        outcome: Outcome,
    ) -> Result<(), Error> {
        if create && (intent_recorded_before || self.wrote_intent.load(std::sync::atomic::Ordering::Relaxed))
        {
            record_status(
                self.bi,
                self.ctx,
                json!({"bucket": {"createStartedAt": null}}),
                "clear the bucket's create intent",
            )
            .await?;
        }
        if !create && let Some(b) = report.status.bucket.as_mut() {
            b.adopted = Some(true);
        }
        report.steps.push(("BucketReady", Ok(outcome), ""));
        crate::failpoint::crash_point("after-bucket");
        Ok(())
    }
}

impl bucket::Journal for StatusJournal<'_> {
    async fn creating(&self) -> Result<jiff::Timestamp, Error> {
        let now = jiff::Timestamp::now();
        record_status(
            self.bi,
            self.ctx,
            json!({"bucket": {"createStartedAt": Time(now)}}),
            "record the intent to create the bucket",
        )
        .await?;
        self.wrote_intent
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(now)
    }

    async fn adopting(&self) -> Result<(), Error> {
        record_status(
            self.bi,
            self.ctx,
            json!({"bucket": {"adopted": true}}),
            "record the bucket's adoption",
        )
        .await
    }
}

async fn caller_account(ctx: &Context, partition: Partition) -> Result<String, Error> {
    if let Some(account) = ctx
        .accounts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&partition)
    {
        return Ok(account.clone());
    }
    let out = ctx
        .aws
        .sts(partition)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| {
            Error::aws(
                Call::new(Operation::GetCallerIdentity, "*"),
                AwsFailure::from_sdk(&e),
            )
        })?;
    let account = out.account().unwrap_or_default().to_string();
    ctx.accounts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(partition, account.clone());
    Ok(account)
}

/// An EKS cluster as DescribeCluster describes it.
#[derive(Clone, Debug)]
struct Cluster {
    name: String,
    arn: String,
    region: String,
    issuer: Option<String>,
}

/// The IRSA issuer: the spec's or the operator's override, else the EKS cluster's.
async fn oidc_issuer(ctx: &Context, r: &Resolved) -> Result<String, Error> {
    if let Some(issuer) = &r.issuer_override {
        return Ok(issuer.clone());
    }
    let cluster = eks_cluster(ctx, r).await?;
    cluster.issuer.ok_or_else(|| Error::ClusterNotFound {
        cluster: cluster.name,
        region: cluster.region,
    })
}

/// The integration's EKS cluster (in the operator's region), asked once per process.
async fn eks_cluster(ctx: &Context, r: &Resolved) -> Result<Cluster, Error> {
    if let Some(cluster) = ctx
        .clusters
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&r.eks_cluster)
    {
        return Ok(cluster.clone());
    }
    let region = ctx.aws.default_region().unwrap_or_else(|| r.region.clone());
    let partition = Partition::of_region(&region);
    let answer = ctx
        .aws
        .eks(&region)
        .describe_cluster()
        .name(&r.eks_cluster)
        .send()
        .await;
    let described = match answer {
        Ok(out) => out.cluster,
        Err(e) => {
            let failure = AwsFailure::from_sdk(&e);
            if failure.is_code("ResourceNotFoundException") || failure.status == Some(404) {
                return Err(Error::ClusterNotFound {
                    cluster: r.eks_cluster.clone(),
                    region,
                });
            }
            let cluster_arn = match ctx
                .accounts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&partition)
            {
                Some(account) => format!(
                    "arn:{}:eks:{region}:{account}:cluster/{}",
                    partition.id(),
                    r.eks_cluster
                ),
                None => format!("EKS cluster {} in {region}", r.eks_cluster),
            };
            return Err(Error::aws(
                Call::new(Operation::DescribeCluster, cluster_arn),
                failure,
            ));
        }
    };
    let Some(described) = described else {
        return Err(Error::ClusterNotFound {
            cluster: r.eks_cluster.clone(),
            region,
        });
    };
    let arn = match described.arn() {
        Some(arn) => arn.to_string(),
        None => format!(
            "arn:{}:eks:{region}:{}:cluster/{}",
            partition.id(),
            caller_account(ctx, partition).await?,
            r.eks_cluster
        ),
    };
    let cluster = Cluster {
        name: r.eks_cluster.clone(),
        arn,
        issuer: described
            .identity()
            .and_then(|i| i.oidc())
            .and_then(|o| o.issuer())
            .map(str::to_string),
        region,
    };
    ctx.clusters
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(r.eks_cluster.clone(), cluster.clone());
    Ok(cluster)
}

async fn ensure_provider(
    ctx: &Context,
    iam: &aws_sdk_iam::Client,
    arn: &str,
    issuer: &str,
) -> Result<(), Error> {
    if ctx
        .providers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(arn)
    {
        return Ok(());
    }
    match iam
        .get_open_id_connect_provider()
        .open_id_connect_provider_arn(arn)
        .send()
        .await
    {
        Ok(_) => {
            ctx.providers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(arn.to_string());
            Ok(())
        }
        Err(e) => {
            let failure = AwsFailure::from_sdk(&e);
            if failure.is_code("NoSuchEntity") {
                Err(Error::OidcProviderNotFound {
                    arn: arn.into(),
                    issuer: issuer.into(),
                })
            } else {
                Err(Error::aws(
                    Call::new(Operation::GetOpenIDConnectProvider, arn),
                    failure,
                ))
            }
        }
    }
}

/// Writes status by server-side apply, keeping lastTransitionTime of unchanged conditions,
/// and emits an Event for every change and failure.
async fn write_status(bi: &BucketIntegration, ctx: &Context, report: Report) -> Result<(), Error> {
    let generation = bi.metadata.generation;
    let previous = bi
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let now = Time(jiff::Timestamp::now());
    let mut conditions = vec![];
    let mut all_ready = true;
    let mut first_failure: Option<(String, String)> = None;
    for step in steps(bi) {
        let found = report.steps.iter().find(|(name, _, _)| *name == step);
        let (status, reason, message) = match found {
            Some((_, Ok(outcome), _)) => ("True", outcome.reason.to_string(), outcome.message.clone()),
            Some((_, Err(message), reason)) => {
                first_failure.get_or_insert((reason.to_string(), message.clone()));
                ("False", reason.to_string(), message.clone())
            }
            None => (
                "Unknown",
                "Waiting".to_string(),
                "waiting for the steps before it".to_string(),
            ),
        };
        all_ready &= status == "True";
        conditions.push(condition(
            step, status, &reason, &message, generation, &previous, &now,
        ));
    }
    let validated = report.validated.as_ref();
    let (v_status, v_reason, v_message) = match validated {
        Some(v) => (v.status, v.reason.clone(), v.message.clone()),
        None => (
            "Unknown",
            "Waiting".to_string(),
            "validation runs once every step is in place".to_string(),
        ),
    };
    conditions.push(condition(
        "Validated",
        v_status,
        &v_reason,
        &v_message,
        generation,
        &previous,
        &now,
    ));
    // Ready requires Validated, unless validation is disabled.
    let validation_failure = validated
        .filter(|v| v.status == "False")
        .map(|v| (v.reason.clone(), v.message.clone()));
    let disabled = validated.is_some_and(|v| v.reason == "Disabled");
    let validated_ok = validated.is_some_and(|v| v.status == "True") || disabled;
    let (ready_status, ready_reason, ready_message) =
        match (first_failure.or(validation_failure), all_ready && validated_ok) {
            (Some((reason, message)), _) => ("False", reason, message),
            (None, true) => (
                "True",
                "Ready".to_string(),
                std::iter::once(ready_message(bi.spec.identity.mode, !disabled))
                    .chain(report.notes.iter().cloned())
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            (None, false) => ("Unknown", "Waiting".to_string(), "reconciling".to_string()),
        };
    conditions.insert(
        0,
        condition(
            "Ready",
            ready_status,
            &ready_reason,
            &ready_message,
            generation,
            &previous,
            &now,
        ),
    );

    let validated_event = report
        .validated
        .as_ref()
        .filter(|v| v.status == "False")
        .map(|v| (v.reason.clone(), v.message.clone()));
    ctx.metrics.set_conditions(
        &format!("{}/{}", bi.namespace().unwrap_or_default(), bi.name_any()),
        Some(
            conditions
                .iter()
                .map(|c| (c.type_.clone(), c.status.clone()))
                .collect(),
        ),
    );
    let mut status = report.status;
    status.observed_generation = generation;
    status.conditions = conditions;
    status.last_validated = if report.validated.as_ref().is_some_and(|v| v.passed_now) {
        Some(now.clone())
    } else {
        bi.status.as_ref().and_then(|s| s.last_validated.clone())
    };
    let patch = json!({
        "apiVersion": "bucketwire.io/v1alpha1",
        "kind": "BucketIntegration",
        "status": status,
    });
    let api: Api<BucketIntegration> =
        Api::namespaced(ctx.client.clone(), &bi.namespace().unwrap_or_default());
    api.patch_status(
        &bi.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(Error::kube("write status"))?;

    if let Some((reason, message)) = validated_event {
        warn!(step = "Validated", reason, "{message}");
        publish(ctx, bi, "Validated", EventType::Warning, &reason, &message).await;
    }
    for (step, result, reason) in &report.steps {
        match result {
            Ok(outcome) if outcome.changed() => {
                info!(step, reason = outcome.reason, "{}", outcome.message);
                publish(ctx, bi, step, EventType::Normal, outcome.reason, &outcome.message).await;
            }
            Ok(_) => {}
            Err(message) => {
                warn!(step, reason, "{message}");
                publish(ctx, bi, step, EventType::Warning, reason, message).await;
            }
        }
    }
    Ok(())
}

/// Pure: what `Ready=True` says: what is in place for the mode, and whether it was validated
/// (it is not when `validation.enabled` is false).
fn ready_message(mode: IdentityMode, validated: bool) -> String {
    let in_place = match mode {
        IdentityMode::Irsa => "bucket, policy, role, ServiceAccount and values are in place",
        IdentityMode::PodIdentity => {
            "bucket, policy, role, ServiceAccount, pod identity association and values are in place (Milvus 2.6 or later)"
        }
        IdentityMode::Rrsa => "bucket, RAM policy, RAM role, ServiceAccount and values are in place (RRSA)",
        IdentityMode::CrossAccount => "bucket, policy and role are in place",
    };
    if validated {
        format!("{in_place} and validated")
    } else {
        format!("{in_place}; not validated (validation.enabled is false)")
    }
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    previous: &[Condition],
    now: &Time,
) -> Condition {
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time,
    }
}

/// Records an Event. `action` names the step (Events with the same action and reason are
/// aggregated into one series by the recorder).
pub async fn publish(
    ctx: &Context,
    bi: &BucketIntegration,
    action: &str,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: action.into(),
        secondary: None,
    };
    // Warnings go through the shared recorder, which folds repeats into one Event series (it
    // remembers each Event for minutes). Normal Events (created, adopted, repaired) do not
    // repeat, so they go through a recorder of their own: remembering thousands of them would
    // cost the operator ~6 KiB per integration for nothing.
    let result = match type_ {
        EventType::Warning => ctx.recorder.publish(&event, &bi.object_ref(&())).await,
        EventType::Normal => {
            Recorder::new(ctx.client.clone(), ctx.reporter.clone())
                .publish(&event, &bi.object_ref(&()))
                .await
        }
    };
    if let Err(err) = result {
        warn!(%err, "could not record an Event");
    }
}

/// Cleanup on deletion (see `cleanup_steps`). When it cannot finish, a Warning Event and the
/// Ready condition say why: an Event alone may not be possible (a terminating namespace refuses
/// new Events).
pub async fn cleanup(bi: &BucketIntegration, ctx: &Context) -> Result<(), Error> {
    if let Some(uid) = bi.uid() {
        ctx.bucket_reads.forget(&uid);
        ctx.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&crate::cadence::uid_key(&uid));
    }
    if crd_being_deleted(ctx).await {
        // An uninstall, not a user's decision to clean up: every Milvus keeps its bucket, role,
        // policy and ServiceAccount annotation; the integration is only released.
        let message = "the BucketIntegration CRD is being deleted: released without deleting anything in AWS (bucket, role, policy and ServiceAccount annotation kept)";
        info!(
            namespace = bi.namespace().unwrap_or_default(),
            name = bi.name_any(),
            "{message}"
        );
        publish(ctx, bi, "Cleanup", EventType::Normal, "Released", message).await;
        ctx.metrics.set_conditions(
            &format!("{}/{}", bi.namespace().unwrap_or_default(), bi.name_any()),
            None,
        );
        return Ok(());
    }
    let result = match bi.spec.provider {
        Provider::Aws => cleanup_steps(bi, ctx).await,
        Provider::Alibaba => alibaba::reconcile::cleanup_steps(bi, ctx).await,
    };
    if let Err(err) = &result {
        // Whatever step failed (the role, the policy, the ServiceAccount, the bucket): an Event
        // naming it, when the namespace still takes Events, and Ready in any case.
        publish(
            ctx,
            bi,
            "Cleanup",
            EventType::Warning,
            err.reason(),
            &err.to_string(),
        )
        .await;
        let previous = bi
            .status
            .as_ref()
            .map(|s| s.conditions.clone())
            .unwrap_or_default();
        let now = Time(jiff::Timestamp::now());
        let ready = condition(
            "Ready",
            "False",
            err.reason(),
            &err.to_string(),
            bi.metadata.generation,
            &previous,
            &now,
        );
        let conditions: Vec<Condition> = previous
            .iter()
            .filter(|c| c.type_ != "Ready")
            .cloned()
            .chain(std::iter::once(ready))
            .collect();
        let api: Api<BucketIntegration> =
            Api::namespaced(ctx.client.clone(), &bi.namespace().unwrap_or_default());
        // A merge patch of the whole list: the other conditions stay as they were.
        let patch = json!({"status": {"conditions": conditions}});
        if let Err(e) = api
            .patch_status(&bi.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            warn!(%e, "could not report the cleanup failure in status");
        }
    }
    result
}

/// Whether the BucketIntegration CRD itself has a deletion timestamp. When the operator may not
/// read it (an install without that RBAC rule), the answer is no: deleting an integration
/// cleans up, as it always did.
async fn crd_being_deleted(ctx: &Context) -> bool {
    let crds: Api<CustomResourceDefinition> = Api::all(ctx.client.clone());
    match crds
        .get_opt(&format!("bucketintegrations.{}", crate::api::GROUP))
        .await
    {
        Ok(Some(crd)) => crd.metadata.deletion_timestamp.is_some(),
        Ok(None) => true,
        Err(err) => {
            warn!(%err, "cannot read the BucketIntegration CRD; treating this deletion as a user's");
            false
        }
    }
}

/// Role and policy (detached first), our ServiceAccount annotation (or the ServiceAccount if
/// we created it), and the bucket only if deletionPolicy is Delete, we created it, and it is
/// empty. The ConfigMap goes with its owner.
async fn cleanup_steps(bi: &BucketIntegration, ctx: &Context) -> Result<(), Error> {
    let namespace = bi.namespace().unwrap_or_default();
    let name = bi.name_any();
    let Some(uid) = bi.uid() else { return Ok(()) };
    let owner = Owner {
        cluster: &ctx.settings.cluster_name,
        namespace: &namespace,
        name: &name,
    };
    let partition = Partition::of_region(&bi.spec.region);
    let recorded = bi.status.as_ref();
    let mut done = vec![];

    // The names status recorded; derived from today's settings only if nothing was recorded.
    let policy_arn = match recorded.and_then(|s| s.policy_arn.clone()) {
        Some(arn) => arn,
        None => {
            let account = caller_account(ctx, partition).await?;
            format!(
                "arn:{}:iam::{account}:policy{}{}",
                partition.id(),
                ctx.settings.role_path,
                naming::policy_name(owner)
            )
        }
    };
    let (role_name, role_arn) = match recorded.and_then(|s| s.role_arn.clone()) {
        Some(arn) => (
            iam_path_and_name(&arn)
                .map(|(_, name)| name)
                .unwrap_or_else(|| naming::role_name(owner)),
            arn,
        ),
        None => {
            // The role lives in the policy's account, under the path roles get today.
            let name = naming::role_name(owner);
            let account = policy_arn.split(':').nth(4).unwrap_or_default();
            let arn = format!(
                "arn:{}:iam::{account}:role{}{name}",
                partition.id(),
                ctx.settings.role_path
            );
            (name, arn)
        }
    };
    let service_account = bi
        .spec
        .service_account
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| name.clone());

    // The pod identity association first: it names the role. Found by the recorded ARN, or (an
    // interrupted create) by the ServiceAccount and this integration's uid.
    let recorded_association = recorded.and_then(|s| s.pod_identity_association_arn.clone());
    if recorded_association.is_some() || bi.spec.identity.mode == IdentityMode::PodIdentity {
        let cluster = recorded_association
            .as_deref()
            .and_then(pod_identity::parse_arn)
            .map(|a| (a.cluster, a.region))
            .unwrap_or_else(|| {
                let cluster = bi
                    .spec
                    .identity
                    .eks_cluster_name
                    .clone()
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| ctx.settings.cluster_name.clone());
                let region = ctx.aws.default_region().unwrap_or_else(|| bi.spec.region.clone());
                (cluster, region)
            });
        let account = role_arn.split(':').nth(4).unwrap_or_default();
        let desired = pod_identity::DesiredAssociation {
            cluster_arn: format!(
                "arn:{}:eks:{}:{account}:cluster/{}",
                Partition::of_region(&cluster.1).id(),
                cluster.1,
                cluster.0
            ),
            cluster: cluster.0,
            namespace: namespace.clone(),
            service_account: service_account.clone(),
            role_arn: String::new(),
            tags: BTreeMap::new(),
            uid: uid.clone(),
        };
        done.extend(
            pod_identity::delete_ours(
                &ctx.aws.eks(&cluster.1),
                &desired,
                recorded_association.as_deref(),
            )
            .await?,
        );
    }

    done.extend(
        iam::delete_role_and_policy(&ctx.aws.iam(partition), &role_name, &role_arn, &policy_arn, &uid)
            .await?,
    );

    let role_arn = recorded.and_then(|s| s.role_arn.as_deref());
    done.extend(
        kubernetes::release_service_account(
            &ctx.client,
            &namespace,
            &service_account,
            &name,
            crate::documents::ROLE_ARN_ANNOTATION,
            role_arn,
        )
        .await?,
    );

    // The Milvus object's storage fields bucketwire applied: released, the object kept.
    done.extend(release_recorded_milvus_object(bi, ctx).await?);

    let recorded_bucket = bi
        .status
        .as_ref()
        .and_then(|s| s.bucket.as_ref())
        .and_then(|b| b.name.clone());
    let adopted = recorded
        .and_then(|s| s.bucket.as_ref())
        .and_then(|b| b.adopted)
        .unwrap_or(false);
    if bi.spec.bucket.deletion_policy == DeletionPolicy::Delete && bi.spec.bucket.create && !adopted {
        if let Some(bucket) = recorded_bucket {
            let ours = documents::ownership_tags(
                &ctx.settings.cluster_name,
                &namespace,
                &name,
                &uid,
                &bi.spec.bucket.tags,
            );
            // A failure is reported by `cleanup`, in Ready and as an Event.
            done.push(
                bucket::delete_if_empty(&ctx.aws.s3(&bi.spec.region), &bucket, &ours)
                    .await?
                    .message,
            );
        }
    } else if let Some(bucket) = recorded_bucket {
        done.push(format!(
            "kept bucket {bucket} and its data (deletionPolicy Retain)"
        ));
    }
    for message in &done {
        info!("{message}");
    }
    publish(ctx, bi, "Cleanup", EventType::Normal, "Deleted", &done.join("; ")).await;
    ctx.metrics.set_conditions(&format!("{namespace}/{name}"), None);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::BucketIntegrationSpec;

    fn integration(spec: serde_json::Value, status: Option<serde_json::Value>) -> BucketIntegration {
        let mut bi = BucketIntegration::new(
            "milvus-prod",
            serde_json::from_value::<BucketIntegrationSpec>(spec).expect("spec"),
        );
        bi.metadata.namespace = Some("milvus".into());
        bi.metadata.uid = Some("uid-1".into());
        bi.status = status.map(|s| serde_json::from_value(s).expect("status"));
        bi
    }

    #[test]
    fn ready_says_validated_only_when_validation_ran() {
        assert_eq!(
            ready_message(IdentityMode::Irsa, true),
            "bucket, policy, role, ServiceAccount and values are in place and validated"
        );
        let off = ready_message(IdentityMode::Irsa, false);
        assert!(!off.contains(" and validated"), "{off}");
        assert!(
            off.ends_with("not validated (validation.enabled is false)"),
            "{off}"
        );
        let across = ready_message(IdentityMode::CrossAccount, false);
        assert_eq!(
            across,
            "bucket, policy and role are in place; not validated (validation.enabled is false)"
        );
        assert!(!ready_message(IdentityMode::CrossAccount, true).contains("ServiceAccount"));
    }

    #[test]
    fn defaults_resolve_to_derived_names() {
        let settings = crate::settings::tests::settings();
        let r = resolve(&integration(json!({"region": "us-east-2"}), None), &settings).expect("resolves");
        let owner = Owner {
            cluster: "test",
            namespace: "milvus",
            name: "milvus-prod",
        };
        assert_eq!(r.bucket, naming::bucket_name(owner, None));
        assert!(!r.bucket_recorded);
        assert_eq!(r.service_account, "milvus-prod");
        assert_eq!(r.values_config_map, "milvus-prod-milvus-values");
        assert_eq!(r.eks_cluster, "test");
        assert_eq!(r.tags[documents::TAG_UID], "uid-1");
    }

    #[test]
    fn a_recorded_bucket_name_wins_over_derivation() {
        let settings = crate::settings::tests::settings();
        let bi = integration(
            json!({"region": "us-east-2"}),
            Some(json!({"bucket": {"name": "recorded-bucket"}})),
        );
        let r = resolve(&bi, &settings).expect("resolves");
        assert_eq!(r.bucket, "recorded-bucket");
        assert!(r.bucket_recorded);
    }

    #[test]
    fn a_bucket_outside_the_allowed_prefix_is_an_invalid_spec() {
        let mut settings = crate::settings::tests::settings();
        settings.bucket_prefix = Some("acme-".into());
        let bi = integration(
            json!({"region": "us-east-2", "bucket": {"name": "other-bucket"}}),
            None,
        );
        assert!(matches!(resolve(&bi, &settings), Err(Error::InvalidSpec(m)) if m.contains("acme-")));
        let derived =
            resolve(&integration(json!({"region": "us-east-2"}), None), &settings).expect("resolves");
        assert!(derived.bucket.starts_with("acme-"));
    }

    #[test]
    fn iam_arns_split_into_path_and_name() {
        assert_eq!(
            iam_path_and_name("arn:aws:iam::123456789012:role/bucketwire/tenants/r1"),
            Some(("/bucketwire/tenants/".into(), "r1".into()))
        );
        assert_eq!(
            iam_path_and_name("arn:aws-cn:iam::123456789012:policy/p1"),
            Some(("/".into(), "p1".into()))
        );
        assert_eq!(iam_path_and_name("arn:aws:iam::123456789012:role/"), None);
        assert_eq!(iam_path_and_name("not-an-arn"), None);
    }

    #[test]
    fn recorded_names_win_over_changed_settings() {
        let mut settings = crate::settings::tests::settings();
        settings.cluster_name = "renamed".into();
        settings.role_path = "/moved/".into();
        let bi = integration(
            json!({"region": "us-east-2"}),
            Some(json!({
                "bucket": {"name": "bw-recorded"},
                "roleArn": "arn:aws:iam::123456789012:role/bucketwire/role-recorded",
                "policyArn": "arn:aws:iam::123456789012:policy/bucketwire/policy-recorded",
            })),
        );
        let r = resolve(&bi, &settings).expect("resolves");
        assert_eq!(
            (r.role_path.as_str(), r.role_name.as_str()),
            ("/bucketwire/", "role-recorded")
        );
        assert_eq!(
            (r.policy_path.as_str(), r.policy_name.as_str()),
            ("/bucketwire/", "policy-recorded")
        );
        assert_eq!(r.bucket, "bw-recorded");
        assert!(
            r.settings_notes.iter().any(|n| n.contains("/moved/")),
            "{:?}",
            r.settings_notes
        );
    }

    #[test]
    fn a_recorded_bucket_outside_a_new_prefix_is_a_setting_conflict() {
        let mut settings = crate::settings::tests::settings();
        settings.bucket_prefix = Some("acme-".into());
        let bi = integration(
            json!({"region": "us-east-2"}),
            Some(json!({"bucket": {"name": "bw-recorded"}})),
        );
        assert!(matches!(resolve(&bi, &settings), Err(Error::SettingConflict(m)) if m.contains("acme-")));
    }

    #[test]
    fn a_spec_bucket_that_differs_from_status_is_an_invalid_spec() {
        let settings = crate::settings::tests::settings();
        let bi = integration(
            json!({"region": "us-east-2", "bucket": {"name": "new-bucket"}}),
            Some(json!({"bucket": {"name": "old-bucket"}})),
        );
        assert!(matches!(resolve(&bi, &settings), Err(Error::InvalidSpec(_))));
    }
}
