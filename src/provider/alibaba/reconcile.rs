//! The pipeline for `provider: alibaba`, on the shared orchestration (`crate::reconcile`:
//! status, conditions, Events, the recording rules, validation's judgement): resolve (pure) ->
//! record the names -> OSS bucket (`steps::bucket::reconcile_store`, the same decisions as S3)
//! -> RAM policy -> RAM role (RRSA: trusting the ACK cluster's OIDC provider for exactly this
//! ServiceAccount; CrossAccount: one allowed account with the external ID) -> ServiceAccount
//! and Milvus values (RRSA) -> validation -> status. Cleanup is the same steps backwards.

use std::collections::BTreeMap;

use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use tracing::info;

use super::bucket::{OssStore, delete_if_empty};
use super::naming::{self as ali_naming, STS_AUDIENCE};
use super::ram::{self, DesiredPolicy, DesiredRole};
use super::signer::AccessKey;
use super::{Alibaba, api_error, documents as ali_documents};
use crate::allow;
use crate::api::{BucketIntegration, BucketStatus, DeletionPolicy, EncryptionType, IdentityMode};
use crate::documents::{self, TAG_UID, statements, string_list};
use crate::error::Error;
use crate::naming::Owner;
use crate::reconcile::{Context, Report, StatusJournal, disabled, judge_validation, publish, record_status};
use crate::settings::Settings;
use crate::steps::bucket::{self, DesiredBucket, Known};
use crate::steps::{kubernetes, milvus_operator};
use crate::validate::{self, Check, Target, WorkloadIdentity};

/// Everything derived from the spec, the settings and what status recorded (pure).
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub region: String,
    pub bucket: String,
    pub bucket_recorded: bool,
    pub bucket_create_started_at: Option<jiff::Timestamp>,
    pub bucket_adopted: bool,
    pub bucket_region_verified: bool,
    pub role_name: String,
    pub policy_name: String,
    pub service_account: String,
    pub values_config_map: String,
    /// RRSA: the ACK cluster whose OIDC provider the role trusts.
    pub ack_cluster: Option<String>,
    pub internal_endpoint: bool,
    /// RRSA through ACK's pod-identity webhook (the ServiceAccount's annotation), not the values.
    pub webhook: bool,
    pub tags: BTreeMap<String, String>,
}

/// `acs:ram::<account>:<kind>/<name>` -> `<name>`.
fn ram_name_of(arn: &str) -> Option<String> {
    let (_, name) = arn.rsplit_once('/')?;
    (!name.is_empty()).then(|| name.to_string())
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
    if !ali_naming::is_region(&spec.region) {
        return Err(Error::InvalidSpec(format!(
            "region {} is not an Alibaba Cloud region id (such as cn-hangzhou)",
            spec.region
        )));
    }
    let owner = Owner {
        cluster: &settings.cluster_name,
        namespace: &namespace,
        name: &name,
    };
    let status = bi.status.as_ref();
    let (bucket, recorded) = crate::reconcile::resolve_bucket_name(bi, settings, || {
        ali_naming::bucket_name(owner, settings.bucket_prefix.as_deref())
    })?;
    let recorded_bucket = status.and_then(|s| s.bucket.as_ref());
    let bucket_recorded = recorded.as_deref() == Some(bucket.as_str());
    let ack_cluster = (spec.identity.mode == IdentityMode::Rrsa).then(|| {
        spec.alibaba
            .as_ref()
            .and_then(|a| a.ack_cluster_id.clone())
            .filter(|c| !c.is_empty())
            .or_else(|| settings.ack_cluster_id.clone().filter(|c| !c.is_empty()))
    });
    let ack_cluster = match ack_cluster {
        Some(None) => {
            return Err(Error::InvalidSpec(
                "identity.mode RRSA needs an ACK cluster: set spec.alibaba.ackClusterId or the operator's --ack-cluster-id".into(),
            ));
        }
        Some(Some(cluster)) => Some(cluster),
        None => None,
    };
    Ok(Resolved {
        region: spec.region.clone(),
        bucket_create_started_at: recorded_bucket
            .filter(|_| bucket_recorded)
            .and_then(|b| b.create_started_at.as_ref())
            .map(|t| t.0),
        bucket_adopted: recorded_bucket.and_then(|b| b.adopted).unwrap_or(false),
        bucket_region_verified: status.is_some_and(|s| {
            bucket_recorded
                && s.bucket.as_ref().and_then(|b| b.region.as_deref()) == Some(spec.region.as_str())
                && s.conditions
                    .iter()
                    .any(|c| c.type_ == "BucketReady" && c.status == "True")
        }),
        bucket_recorded,
        bucket,
        role_name: status
            .and_then(|s| s.role_arn.as_deref())
            .and_then(ram_name_of)
            .unwrap_or_else(|| ali_naming::role_name(owner)),
        policy_name: status
            .and_then(|s| s.policy_arn.as_deref())
            .and_then(ram_name_of)
            .unwrap_or_else(|| ali_naming::policy_name(owner)),
        service_account: spec
            .service_account
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| name.clone()),
        values_config_map: spec
            .milvus
            .values_config_map
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("{name}-milvus-values")),
        ack_cluster,
        internal_endpoint: spec.alibaba.as_ref().is_some_and(|a| a.internal_endpoint),
        webhook: spec
            .alibaba
            .as_ref()
            .is_some_and(|a| a.rrsa_injection == crate::api::RrsaInjection::Webhook),
        tags: documents::ownership_tags(&settings.cluster_name, &namespace, &name, &uid, &spec.bucket.tags),
        namespace,
        name,
        uid,
    })
}

/// Pure: an ACK cluster an integration names must be the operator's or in its allow-list.
pub fn check_ack_cluster(bi: &BucketIntegration, settings: &Settings) -> Result<(), Error> {
    let Some(named) = bi
        .spec
        .alibaba
        .as_ref()
        .and_then(|a| a.ack_cluster_id.as_deref())
        .filter(|c| !c.is_empty())
    else {
        return Ok(());
    };
    let allowed = settings.ack_cluster_id.as_deref() == Some(named)
        || Settings::allowed(&settings.allowed_ack_clusters).any(|c| c == named);
    if allowed {
        Ok(())
    } else {
        Err(Error::TrustNotAllowed {
            field: "spec.alibaba.ackClusterId",
            value: named.to_string(),
            detail: "it is neither the operator's --ack-cluster-id nor in its --allowed-ack-clusters; a role may only trust the clusters the platform team allows (leave ackClusterId empty to use the operator's)".into(),
        })
    }
}

async fn alibaba(ctx: &Context) -> Result<(&Alibaba, AccessKey), Error> {
    let alibaba = ctx
        .alibaba
        .as_ref()
        .map_err(|e| Error::ProviderNotConfigured(format!("Alibaba Cloud is not configured: {e}")))?;
    Ok((alibaba, alibaba.key().await?))
}

/// The RRSA provider of an ACK cluster (DescribeClusterDetail): its ARN and issuer.
async fn rrsa_provider(
    alibaba: &Alibaba,
    key: &AccessKey,
    region: &str,
    cluster: &str,
) -> Result<(String, String), Error> {
    let resource = format!("acs:cs:{region}:*:cluster/{cluster}");
    let rrsa = alibaba
        .api
        .cluster_rrsa(key, region, cluster)
        .await
        .map_err(|e| api_error("cs:DescribeClusterDetail", &resource, e))?
        .ok_or_else(|| Error::AckCluster {
            cluster: cluster.into(),
            region: region.into(),
            detail: "not found: set spec.alibaba.ackClusterId or the operator's --ack-cluster-id".into(),
        })?;
    if !rrsa.enabled || rrsa.oidc_provider_arn.is_empty() || rrsa.issuer.is_empty() {
        return Err(Error::RrsaNotEnabled {
            cluster: cluster.into(),
            region: region.into(),
            detail: "DescribeClusterDetail reports RRSA disabled".into(),
        });
    }
    if !rrsa.audiences.is_empty() && !rrsa.audiences.iter().any(|a| a == STS_AUDIENCE) {
        return Err(Error::RrsaNotEnabled {
            cluster: cluster.into(),
            region: region.into(),
            detail: format!(
                "its provider's audiences {:?} do not include {STS_AUDIENCE}",
                rrsa.audiences
            ),
        });
    }
    Ok((rrsa.oidc_provider_arn, rrsa.issuer))
}

pub(crate) async fn run_steps(
    bi: &BucketIntegration,
    ctx: &Context,
    report: &mut Report,
) -> Result<(), Error> {
    let r = resolve(bi, &ctx.settings)?;
    // The allow-lists, before anything is recorded or written.
    allow::check_trust(&bi.spec, &ctx.settings)?;
    check_ack_cluster(bi, &ctx.settings)?;
    let spec = &bi.spec;
    let kms_key = match spec.bucket.encryption.kind {
        EncryptionType::SseKms => spec.bucket.encryption.kms_key_arn.clone(),
        EncryptionType::SseS3 => None,
    };
    if let Some(key) = kms_key.as_deref().filter(|_| spec.bucket.create)
        && !Settings::allowed(&ctx.settings.allowed_kms_keys).any(|k| k == key)
    {
        return Err(Error::KmsKeyNotAllowed {
            key: key.into(),
            detail: "Alibaba Cloud KMS keys are allowed by their exact ARN in --allowed-kms-keys".into(),
        });
    }
    let (alibaba, key) = alibaba(ctx).await?;
    let key = &key;
    let account = alibaba.account().await?;
    allow::check_not_operator_account(&bi.spec, &account)?;
    report.notes = vec![];
    let cross_account = spec.identity.mode == IdentityMode::CrossAccount;
    let external_id = report.record_identity(
        bi,
        BucketStatus {
            name: Some(r.bucket.clone()),
            arn: Some(ali_naming::bucket_arn(&account, &r.bucket)),
            region: Some(r.region.clone()),
            endpoint: Some(ali_naming::oss_host(&r.region, r.internal_endpoint)),
            adopted: r.bucket_adopted.then_some(true),
            create_started_at: None,
        },
        &format!("{}/{}", r.namespace, r.service_account),
        &r.values_config_map,
    )?;

    // The names first (bucket, policy, role, external ID), before any cloud write.
    let policy_arn = format!("acs:ram::{account}:policy/{}", r.policy_name);
    let role_arn = ali_naming::role_arn(&account, &r.role_name);
    let recorded = bi.status.as_ref();
    let identity_recorded = r.bucket_recorded
        && recorded.and_then(|s| s.policy_arn.as_deref()) == Some(policy_arn.as_str())
        && recorded.and_then(|s| s.role_arn.as_deref()).is_some()
        && (external_id.is_none()
            || recorded.and_then(|s| s.external_id.as_deref()) == external_id.as_deref());
    if !identity_recorded {
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
    }
    report.status.policy_arn = Some(policy_arn.clone());
    report.status.role_arn = Some(role_arn.clone());

    // 1. OSS bucket
    let desired_bucket = DesiredBucket {
        name: r.bucket.clone(),
        region: r.region.clone(),
        create: spec.bucket.create,
        kms_key_arn: kms_key.clone(),
        versioning: spec.bucket.versioning,
        tags: r.tags.clone(),
        policy: ali_documents::bucket_policy(&account, &r.bucket),
        uid: r.uid.clone(),
    };
    let oss = alibaba.oss(&r.region);
    let store = OssStore {
        oss: &oss,
        key,
        account: &account,
    };
    let journal = StatusJournal::new(bi, ctx);
    let outcome = bucket::reconcile_store(
        &store,
        &desired_bucket,
        Known {
            create_started_at: r.bucket_create_started_at,
            adopted: r.bucket_adopted,
            region_verified: r.bucket_region_verified,
        },
        ctx.settings.may_adopt(&r.bucket),
        &journal,
    )
    .await?;
    journal
        .bucket_done(
            spec.bucket.create,
            r.bucket_create_started_at.is_some(),
            report,
            outcome,
        )
        .await?;

    // 2. RAM policy
    let description = spec
        .description
        .clone()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| {
            format!(
                "Milvus access to oss://{} for {}/{}",
                r.bucket, r.namespace, r.name
            )
        });
    let kms = kms_key.as_deref().filter(|_| spec.bucket.create);
    let document = if cross_account {
        ali_documents::cross_account_policy(&account, &r.bucket, spec.access, kms)
    } else {
        ali_documents::permission_policy(&account, &r.bucket, spec.access, kms)
    };
    let desired_policy = DesiredPolicy {
        name: r.policy_name.clone(),
        document,
        description: description.clone(),
        tags: r.tags.clone(),
        uid: r.uid.clone(),
    };
    let outcome = ram::reconcile_policy(&alibaba.api, key, &account, &desired_policy).await?;
    report.iam_changed |= outcome.changed();
    report.steps.push(("PolicyReady", Ok(outcome), ""));
    crate::failpoint::crash_point("after-policy");

    // 3. RAM role
    let provider = match &r.ack_cluster {
        Some(cluster) => Some(rrsa_provider(alibaba, key, &r.region, cluster).await?),
        None => None,
    };
    let trust = match (&provider, &spec.identity.cross_account, &external_id) {
        (Some((provider_arn, issuer)), _, _) => {
            report.status.oidc_provider_arn = Some(provider_arn.clone());
            ali_documents::rrsa_trust(provider_arn, issuer, &r.namespace, &r.service_account)
        }
        (None, Some(cross), Some(external_id)) => {
            ali_documents::cross_account_trust(&cross.trusted_account_id, external_id)
        }
        _ => {
            return Err(Error::InvalidSpec(
                "identity.crossAccount is required when mode is CrossAccount".into(),
            ));
        }
    };
    let desired_role = DesiredRole {
        name: r.role_name.clone(),
        trust,
        description,
        policy_name: r.policy_name.clone(),
        tags: r.tags.clone(),
        uid: r.uid.clone(),
    };
    let role = ram::reconcile_role(&alibaba.api, key, &account, &desired_role).await?;
    report.iam_changed |= role.outcome.changed();
    report.status.role_arn = Some(role.arn.clone());
    report.steps.push(("RoleReady", Ok(role.outcome), ""));
    crate::failpoint::crash_point("after-role");

    crate::reconcile::release_previous_milvus_object(bi, ctx, report, &r.namespace, &r.name).await?;
    let Some((provider_arn, _issuer)) = provider else {
        // Across accounts: no ServiceAccount, no values; what can be checked from here is.
        report.validated = Some(if spec.validation.enabled {
            let trusted = report.status.trusted_account_id.clone().unwrap_or_default();
            let (summary, outcome) = check_cross_account(
                &role.trust,
                &trusted,
                external_id.as_deref().unwrap_or_default(),
                &role.arn,
                &r.bucket,
            );
            judge_validation(
                bi,
                &summary,
                outcome,
                report.iam_changed,
                ctx.settings.propagation_timeout,
            )
        } else {
            disabled()
        });
        return Ok(());
    };

    // 4. ServiceAccount: through the values, no annotation (Milvus reads the RRSA variables
    //    from them); through ACK's pod-identity webhook, the role-name annotation it reads (and
    //    then not the variables in the values too).
    let outcome = kubernetes::reconcile_service_account(
        &ctx.client,
        &r.namespace,
        &r.service_account,
        spec.service_account.create,
        &r.name,
        ali_naming::WEBHOOK_ROLE_ANNOTATION,
        r.webhook.then_some(r.role_name.as_str()),
    )
    .await?;
    report.steps.push(("ServiceAccountReady", Ok(outcome), ""));
    if r.webhook {
        report.notes.push(format!(
            "ACK's pod-identity webhook injects the RRSA variables only in a namespace labelled {}=on (kubectl label namespace {} {}=on) and only into Pods started after that: restart Milvus",
            ali_naming::WEBHOOK_INJECTION_LABEL,
            r.namespace,
            ali_naming::WEBHOOK_INJECTION_LABEL
        ));
    }

    // 5. Milvus values: OSS through its S3-compatible API, with the RRSA token and variables
    //    unless the webhook injects them.
    let values = ali_documents::milvus_values(
        &r.service_account,
        &r.bucket,
        &spec.bucket.root_path,
        &r.region,
        &ali_naming::oss_host(&r.region, r.internal_endpoint),
        (!r.webhook).then_some((role.arn.as_str(), provider_arn.as_str())),
    );
    let yaml = serde_yaml::to_string(&values).map_err(|e| Error::InvalidSpec(format!("values: {e}")))?;
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

    // 5b. The Milvus Operator's Milvus object, when the integration names one: the same wiring
    //     in its own fields (the RRSA token and variables on every component unless the webhook
    //     injects them).
    let desired = milvus_operator::DesiredStorage {
        bucket: r.bucket.clone(),
        root_path: spec.bucket.root_path.clone(),
        region: r.region.clone(),
        service_account: r.service_account.clone(),
        endpoint: format!("{}:443", ali_naming::oss_host(&r.region, r.internal_endpoint)),
        cloud_provider: "aliyun",
        virtual_host: true,
        pods: (!r.webhook).then(|| milvus_operator::PodWiring {
            env: ali_documents::rrsa_env(&role.arn, &provider_arn),
            volumes: ali_documents::rrsa_volumes(),
            volume_mounts: ali_documents::rrsa_volume_mounts(),
        }),
    };
    crate::reconcile::wire_milvus_object(bi, ctx, report, &r.namespace, &r.name, &desired).await?;

    // 6. Validate, as the Milvus ServiceAccount.
    report.validated = Some(if spec.validation.enabled {
        let target = Target {
            namespace: r.namespace.clone(),
            service_account: r.service_account.clone(),
            role_arn: role.arn.clone(),
            identity: WorkloadIdentity::Rrsa {
                oidc_provider_arn: provider_arn.clone(),
            },
            trust: role.trust.clone(),
            bucket: r.bucket.clone(),
            region: r.region.clone(),
            root_path: spec.bucket.root_path.clone(),
            access: spec.access,
            probe_id: r.uid.clone(),
        };
        let outcome = super::validate::run_rrsa(&ctx.client, alibaba, &target, &provider_arn, &account).await;
        judge_validation(
            bi,
            &outcome.summary(&target),
            outcome,
            report.iam_changed,
            ctx.settings.propagation_timeout,
        )
    } else {
        disabled()
    });
    Ok(())
}

/// Pure: the static checks of a cross-account role (the other account assumes it, so nothing
/// can be tried from here): the trust admits exactly the trusted account's root, only with the
/// external ID, and nothing else.
pub fn check_cross_account(
    trust: &Value,
    trusted_account: &str,
    external_id: &str,
    role_arn: &str,
    bucket: &str,
) -> (String, validate::Report) {
    let mut report = validate::Report::default();
    let root = ali_naming::account_root(trusted_account);
    let allows: Vec<Value> = statements(trust)
        .into_iter()
        .filter(|s| s["Effect"] == "Allow")
        .collect();
    let exact = allows.len() == 1
        && allows.iter().all(|s| {
            string_list(&s["Principal"]["RAM"]) == [root.clone()]
                && string_list(&s["Action"]) == ["sts:AssumeRole"]
                && string_list(&s["Condition"]["StringEquals"]["sts:ExternalId"]) == [external_id.to_string()]
        });
    if !exact {
        let error = Error::AssumeRoleFailed {
            role: role_arn.into(),
            subject: root.clone(),
            detail: format!("the trust policy is not exactly {root} with the external ID: {trust}"),
        };
        return (String::new(), report.fail("trust", error));
    }
    report.checks.push(Check {
        name: "trust",
        passed: true,
        detail: format!("{role_arn} trusts exactly {root} with the external ID"),
    });
    (
        format!(
            "checked statically: {role_arn} trusts exactly {root}, only with the external ID, and its RAM policy grants oss://{bucket}; the other account assumes it (sts:AssumeRole), which cannot be tried from here"
        ),
        report,
    )
}

/// Cleanup of an Alibaba integration: RAM role (policy detached) and RAM policy, each only if
/// tagged as this integration's; bucketwire's ServiceAccount; bucketwire's fields of the Milvus
/// object (the object kept); the bucket only with
/// deletionPolicy Delete, created by this integration, tagged as its own, and empty.
pub async fn cleanup_steps(bi: &BucketIntegration, ctx: &Context) -> Result<(), Error> {
    let namespace = bi.namespace().unwrap_or_default();
    let name = bi.name_any();
    let Some(uid) = bi.uid() else { return Ok(()) };
    let recorded = bi.status.as_ref();
    let owner = Owner {
        cluster: &ctx.settings.cluster_name,
        namespace: &namespace,
        name: &name,
    };
    let (alibaba, key) = alibaba(ctx).await?;
    let key = &key;
    let account = alibaba.account().await?;
    let role_name = recorded
        .and_then(|s| s.role_arn.as_deref())
        .and_then(ram_name_of)
        .unwrap_or_else(|| ali_naming::role_name(owner));
    let policy_name = recorded
        .and_then(|s| s.policy_arn.as_deref())
        .and_then(ram_name_of)
        .unwrap_or_else(|| ali_naming::policy_name(owner));
    let mut done =
        ram::delete_role_and_policy(&alibaba.api, key, &account, &role_name, &policy_name, &uid).await?;
    let service_account = bi
        .spec
        .service_account
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| name.clone());
    done.extend(
        kubernetes::release_service_account(
            &ctx.client,
            &namespace,
            &service_account,
            &name,
            ali_naming::WEBHOOK_ROLE_ANNOTATION,
            Some(&role_name),
        )
        .await?,
    );
    done.extend(crate::reconcile::release_recorded_milvus_object(bi, ctx).await?);
    let recorded_bucket = recorded
        .and_then(|s| s.bucket.as_ref())
        .and_then(|b| b.name.clone());
    let adopted = recorded
        .and_then(|s| s.bucket.as_ref())
        .and_then(|b| b.adopted)
        .unwrap_or(false);
    if let Some(bucket) = recorded_bucket {
        if bi.spec.bucket.deletion_policy == DeletionPolicy::Delete && bi.spec.bucket.create && !adopted {
            let oss = alibaba.oss(&bi.spec.region);
            let store = OssStore {
                oss: &oss,
                key,
                account: &account,
            };
            let s3 = alibaba.s3_compatible(&bi.spec.region, key, "operator");
            done.push(delete_ours_if_empty(&store, &s3, &bucket, &uid).await?);
        } else {
            done.push(format!(
                "kept bucket {bucket} and its data (deletionPolicy Retain)"
            ));
        }
    }
    for message in &done {
        info!("{message}");
    }
    publish(ctx, bi, "Cleanup", EventType::Normal, "Deleted", &done.join("; ")).await;
    ctx.metrics.set_conditions(&format!("{namespace}/{name}"), None);
    Ok(())
}

/// Deletes the bucket only if it carries this integration's uid tag and is empty.
async fn delete_ours_if_empty(
    store: &OssStore<'_>,
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    uid: &str,
) -> Result<String, Error> {
    use crate::steps::bucket::{BucketStore, TagsAnswer};
    match store.get_tags(bucket).await {
        Ok(TagsAnswer::NoSuchBucket) => return Ok(format!("bucket {bucket} was already gone")),
        Ok(TagsAnswer::Tags(tags)) => {
            if tags.as_ref().and_then(|t| t.get(TAG_UID)).map(String::as_str) != Some(uid) {
                return Ok(format!(
                    "kept bucket {bucket}: it is not tagged as this integration's ({TAG_UID})"
                ));
            }
        }
        // Another account's bucket (names are global) is never ours to delete.
        Err(Error::BucketOwnedElsewhere { detail, .. }) => {
            return Ok(format!("kept bucket {bucket}: {detail}"));
        }
        Err(e) => return Err(e),
    }
    delete_if_empty(store, s3, bucket).await
}
