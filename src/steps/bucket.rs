//! Step 1: the bucket. Observe (tags, region, settings), decide (pure), apply only the fixes.

use std::collections::BTreeMap;

use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration, ObjectOwnership,
    OwnershipControls, OwnershipControlsRule, PublicAccessBlockConfiguration, ServerSideEncryption,
    ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule, Tag, Tagging,
    VersioningConfiguration,
};
use serde_json::Value;

use crate::aws::AwsFailure;
use crate::aws::actions::{Call, Operation};
use crate::documents::{
    TAG_ADOPTED, TAG_CLUSTER, TAG_NAME, TAG_NAMESPACE, TAG_UID, documents_equivalent, parse_document,
};
use crate::error::Error;
use crate::naming::{Partition, bucket_arn};
use crate::steps::Outcome;

/// A call on `bucket`, named by its ARN in the partition of the client's region.
fn on_bucket(s3: &aws_sdk_s3::Client, operation: Operation, bucket: &str) -> Call {
    let region = s3.config().region().map(|r| r.to_string()).unwrap_or_default();
    Call::new(operation, bucket_arn(Partition::of_region(&region), bucket))
}

/// What the bucket should look like.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredBucket {
    pub name: String,
    pub region: String,
    pub create: bool,
    pub kms_key_arn: Option<String>,
    pub versioning: bool,
    pub tags: BTreeMap<String, String>,
    pub policy: Value,
    pub uid: String,
}

/// The settings of an existing bucket that the operator manages.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedSettings {
    pub public_access_blocked: bool,
    pub owner_enforced: bool,
    /// (algorithm, KMS key) of the default encryption.
    pub encryption: Option<(String, Option<String>)>,
    /// S3 Bucket Keys on: the KMS encryption context is then the bucket's ARN, which is what
    /// the role's KMS grant is conditioned on for a bucket bucketwire created.
    pub bucket_key: bool,
    pub policy: Option<Value>,
    pub versioning: Option<String>,
}

/// A change that brings an owned bucket back to its desired settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BucketFix {
    PublicAccessBlock,
    OwnershipControls,
    Encryption,
    Policy,
    Versioning,
}

/// Pure: which settings of an owned bucket differ from what we want.
pub fn settings_drift(observed: &ObservedSettings, desired: &DesiredBucket) -> Vec<BucketFix> {
    let mut fixes = vec![];
    if !observed.public_access_blocked {
        fixes.push(BucketFix::PublicAccessBlock);
    }
    if !observed.owner_enforced {
        fixes.push(BucketFix::OwnershipControls);
    }
    let want_encryption = match &desired.kms_key_arn {
        Some(key) => ("aws:kms".to_string(), Some(key.clone())),
        None => ("AES256".to_string(), None),
    };
    let bucket_key_ok = desired.kms_key_arn.is_none() || observed.bucket_key;
    if observed.encryption.as_ref() != Some(&want_encryption) || !bucket_key_ok {
        fixes.push(BucketFix::Encryption);
    }
    if !observed
        .policy
        .as_ref()
        .is_some_and(|p| documents_equivalent(p, &desired.policy))
    {
        fixes.push(BucketFix::Policy);
    }
    let versioning_ok = match (desired.versioning, observed.versioning.as_deref()) {
        (true, Some("Enabled")) => true,
        (true, _) => false,
        (false, Some("Enabled")) => false,
        (false, _) => true, // never enabled, or suspended
    };
    if !versioning_ok {
        fixes.push(BucketFix::Versioning);
    }
    fixes
}

/// Who owns an existing bucket, from its tags.
#[derive(Debug, PartialEq, Eq)]
pub enum Ownership {
    Ours,
    /// No tags at all: possibly ours after a crash between CreateBucket and tagging.
    Untagged,
    /// Tagged, but without our uid tag (someone else's bucket; adoptable when allow-listed).
    Foreign(String),
    /// Tagged for another bucketwire integration: never adopted, whatever the allow-list, so
    /// that no tenant can take over another's bucket.
    OtherIntegration(String),
    /// Tagged for an earlier integration of the same cluster, namespace and name, which no
    /// longer exists (this one now has that name): released by an uninstall (CRD deletion) or
    /// kept by deletionPolicy Retain. The integration applied again takes it back.
    Predecessor,
}

/// Whether `tags` name the same cluster, namespace and integration name as `ours` (and another
/// uid): an object of that name can only be one at a time, so the tagged one is gone.
pub fn is_predecessor(tags: &BTreeMap<String, String>, ours: &BTreeMap<String, String>) -> bool {
    let same = |key: &str| tags.get(key).is_some_and(|v| ours.get(key) == Some(v));
    same(TAG_CLUSTER)
        && same(TAG_NAMESPACE)
        && same(TAG_NAME)
        && tags.contains_key(TAG_UID)
        && tags.get(TAG_UID) != ours.get(TAG_UID)
}

pub fn ownership(tags: Option<&BTreeMap<String, String>>, ours: &BTreeMap<String, String>) -> Ownership {
    let uid = ours.get(TAG_UID).map(String::as_str).unwrap_or_default();
    match tags {
        None => Ownership::Untagged,
        Some(t) if t.is_empty() => Ownership::Untagged,
        Some(t) if is_predecessor(t, ours) => Ownership::Predecessor,
        Some(t) => match t.get(TAG_UID) {
            Some(v) if v == uid => Ownership::Ours,
            Some(other) => Ownership::OtherIntegration(format!(
                "it belongs to another bucketwire integration (tagged {TAG_UID}={other}); an integration never takes over another's bucket"
            )),
            None => Ownership::Foreign("its tags do not include bucketwire.io/uid".into()),
        },
    }
}

/// GetBucketLocation's answer as a region name.
pub fn location_to_region(constraint: Option<&str>) -> String {
    match constraint {
        None | Some("") => "us-east-1".into(),
        Some("EU") => "eu-west-1".into(),
        Some(other) => other.into(),
    }
}

/// What status already tells about the bucket.
#[derive(Clone, Copy, Debug, Default)]
pub struct Known {
    /// When this integration, having seen that no bucket of this name existed, recorded that
    /// it was about to create it. Only then can an untagged bucket of that name be its own
    /// interrupted creation (and only if S3 says it was created after that moment).
    pub create_started_at: Option<jiff::Timestamp>,
    /// Status records that this integration adopted the bucket: it is never managed or deleted.
    pub adopted: bool,
    /// An earlier reconcile found the bucket in the desired region. Regions never change, and
    /// a bucket recreated elsewhere answers GetBucketTagging with a redirect (or NoSuchBucket).
    pub region_verified: bool,
}

/// How far S3's clock (the bucket's CreationDate) may run behind ours: a bucket created up to
/// this long before we recorded the intent to create it still counts as our creation.
const CLOCK_SKEW: jiff::SignedDuration = jiff::SignedDuration::from_secs(60);

/// Writes to status that the bucket step needs done *before* it touches the bucket, so that a
/// crash right after the AWS call can never lose the fact.
pub trait Journal {
    /// Records that this integration is about to create the bucket; returns the moment recorded.
    fn creating(&self) -> impl Future<Output = Result<jiff::Timestamp, Error>> + Send;
    /// Records that this integration uses an existing bucket it did not create.
    fn adopting(&self) -> impl Future<Output = Result<(), Error>> + Send;
}

/// Where a bucket lives: what the bucket step reads and writes, per object store (S3 here,
/// OSS in `provider::alibaba::bucket`). The decisions (ownership, adoption, an interrupted
/// create, region, drift) are made once, in `reconcile_store`, for every store.
pub trait BucketStore {
    /// The bucket's tags, or that it does not exist.
    fn get_tags(&self, bucket: &str) -> impl Future<Output = Result<TagsAnswer, Error>> + Send;
    /// The region the bucket is in.
    fn get_region(&self, bucket: &str) -> impl Future<Output = Result<String, Error>> + Send;
    /// When the store says the bucket was created.
    fn creation_date(
        &self,
        bucket: &str,
    ) -> impl Future<Output = Result<Option<jiff::Timestamp>, Error>> + Send;
    /// Creates the bucket with the desired tags first, then its settings.
    fn create(&self, desired: &DesiredBucket) -> impl Future<Output = Result<(), Error>> + Send;
    /// Writes `ours` over `existing` (the whole tag set is replaced: others' tags are kept).
    fn put_tags(
        &self,
        bucket: &str,
        existing: &BTreeMap<String, String>,
        ours: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<(), Error>> + Send;
    /// Reads the settings of an owned bucket and repairs what drifted; answers what it repaired.
    fn repair_settings(
        &self,
        desired: &DesiredBucket,
    ) -> impl Future<Output = Result<Vec<String>, Error>> + Send;
}

/// S3 as a bucket store.
struct S3<'a>(&'a aws_sdk_s3::Client);

impl BucketStore for S3<'_> {
    async fn get_tags(&self, bucket: &str) -> Result<TagsAnswer, Error> {
        get_tags(self.0, bucket).await
    }
    async fn get_region(&self, bucket: &str) -> Result<String, Error> {
        get_region(self.0, bucket).await
    }
    async fn creation_date(&self, bucket: &str) -> Result<Option<jiff::Timestamp>, Error> {
        creation_date(self.0, bucket).await
    }
    async fn create(&self, desired: &DesiredBucket) -> Result<(), Error> {
        create(self.0, desired).await
    }
    async fn put_tags(
        &self,
        bucket: &str,
        existing: &BTreeMap<String, String>,
        ours: &BTreeMap<String, String>,
    ) -> Result<(), Error> {
        put_tags(self.0, bucket, existing, ours).await
    }
    async fn repair_settings(&self, desired: &DesiredBucket) -> Result<Vec<String>, Error> {
        let observed = observe_settings(self.0, &desired.name).await?;
        let fixes = settings_drift(&observed, desired);
        for fix in &fixes {
            apply_fix(self.0, desired, fix).await?;
        }
        Ok(fixes.iter().map(|f| format!("{f:?}")).collect())
    }
}

/// How much of the bucket a reconcile reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BucketRead {
    /// Its tags (ownership), then every setting, repairing what drifted.
    Full,
    /// A steady resync between full reads (`--bucket-settings-interval`): one read. A created
    /// bucket's public access block, the setting whose drift could expose it to anyone (and
    /// which keeps a public policy or ACL from being added); an adopted bucket's encryption,
    /// whose KMS key the role's policy names. Anything but the expected answer (drift, a
    /// missing bucket, a refusal from a bucket of this name in another account) falls back to
    /// the full read, which repairs or reports it.
    Steady,
}

/// Runs the bucket step. Also returns, for an adopted bucket, the KMS key its default
/// encryption actually uses, and whether it read everything (`BucketRead::Full`).
pub async fn reconcile(
    s3: &aws_sdk_s3::Client,
    desired: &DesiredBucket,
    known: Known,
    may_adopt: bool,
    journal: &impl Journal,
    read: BucketRead,
) -> Result<(Outcome, Option<String>, BucketRead), Error> {
    // Settled: found in its region before, and created by this integration or recorded adopted.
    let settled = known.region_verified && desired.create != known.adopted;
    if read == BucketRead::Steady && settled {
        let bucket = desired.name.as_str();
        if desired.create {
            if matches!(public_access_blocked(s3, bucket).await, Ok(true)) {
                // The full read's words: the condition does not change between the two.
                return Ok((
                    Outcome::up_to_date(format!("bucket {bucket} in {}", desired.region)),
                    None,
                    BucketRead::Steady,
                ));
            }
        } else if let Ok(Some(((algorithm, key), _))) = observe_encryption(s3, bucket).await {
            let key = algorithm.starts_with("aws:kms").then_some(key).flatten();
            return Ok((
                Outcome::adopted(format!("using adopted bucket {bucket} in {}", desired.region)),
                key,
                BucketRead::Steady,
            ));
        }
    }
    let (outcome, key) = reconcile_full(s3, desired, known, may_adopt, journal).await?;
    Ok((outcome, key, BucketRead::Full))
}

async fn reconcile_full(
    s3: &aws_sdk_s3::Client,
    desired: &DesiredBucket,
    known: Known,
    may_adopt: bool,
    journal: &impl Journal,
) -> Result<(Outcome, Option<String>), Error> {
    let outcome = reconcile_store(&S3(s3), desired, known, may_adopt, journal).await?;
    if desired.create {
        return Ok((outcome, None));
    }
    let observed = observe_encryption(s3, &desired.name)
        .await?
        .map(|(encryption, _)| encryption);
    let key = observed
        .filter(|(algorithm, _)| algorithm.starts_with("aws:kms"))
        .and_then(|(_, key)| key);
    Ok((outcome, key))
}

/// The bucket step on any store: create it (recording the intent first), adopt it, take it
/// back from a predecessor, or refuse it; then repair an owned bucket's settings.
pub async fn reconcile_store(
    store: &impl BucketStore,
    desired: &DesiredBucket,
    known: Known,
    may_adopt: bool,
    journal: &impl Journal,
) -> Result<Outcome, Error> {
    let bucket = desired.name.as_str();
    if desired.create && known.adopted {
        // Admission refuses this flip; an older CRD may not: refuse it here too, before any call.
        return Err(Error::InvalidSpec(format!(
            "bucket {bucket} was adopted by this integration (status.bucket.adopted); an adopted bucket is never managed or deleted, so bucket.create must stay false"
        )));
    }
    let tags = match store.get_tags(bucket).await? {
        TagsAnswer::NoSuchBucket => {
            if !desired.create {
                return Err(Error::BucketNotFound {
                    bucket: bucket.into(),
                });
            }
            // Recorded first: after a crash right after CreateBucket, the untagged bucket is
            // recognised as ours only because of this record (and its creation date).
            if known.create_started_at.is_none() {
                journal.creating().await?;
            }
            store.create(desired).await?;
            return Ok(Outcome::created(format!(
                "created bucket {bucket} in {}",
                desired.region
            )));
        }
        TagsAnswer::Tags(tags) => tags,
    };

    if !known.region_verified {
        let region = store.get_region(bucket).await?;
        if region != desired.region {
            return Err(Error::BucketRegionMismatch {
                want: desired.region.clone(),
                got: region,
            });
        }
    }
    let region = &desired.region;

    let mut outcome = Outcome::up_to_date(format!("bucket {bucket} in {region}"));
    let adopted_tag = tags
        .as_ref()
        .is_some_and(|t| t.get(TAG_ADOPTED).map(String::as_str) == Some("true"));
    match ownership(tags.as_ref(), &desired.tags) {
        Ownership::Predecessor if desired.create && adopted_tag => {
            return Err(Error::InvalidSpec(format!(
                "bucket {bucket} was adopted (tagged {TAG_ADOPTED}=true), not created, by an earlier integration of this name; an adopted bucket is never managed or deleted, so bucket.create must be false"
            )));
        }
        Ownership::Predecessor => {
            if !desired.create && !known.adopted {
                journal.adopting().await?;
            }
            // Our tags replace the predecessor's (the adopted mark, and others' tags, stay).
            store
                .put_tags(bucket, &tags.clone().unwrap_or_default(), &desired.tags)
                .await?;
            outcome = Outcome::adopted(format!(
                "took back bucket {bucket} from an earlier integration of the same name"
            ));
        }
        Ownership::Ours if desired.create && adopted_tag => {
            return Err(Error::InvalidSpec(format!(
                "bucket {bucket} was adopted (tagged {TAG_ADOPTED}=true), not created, by this integration; an adopted bucket is never managed or deleted, so bucket.create must stay false"
            )));
        }
        Ownership::Ours => {
            if !desired.create && !known.adopted {
                journal.adopting().await?;
            }
        }
        Ownership::Untagged if desired.create && known.create_started_at.is_some() => {
            let started = known.create_started_at.unwrap_or_default();
            match store.creation_date(bucket).await? {
                Some(created) if created >= started - CLOCK_SKEW => {
                    // Our own creation, interrupted before the tags were written.
                    store.put_tags(bucket, &BTreeMap::new(), &desired.tags).await?;
                    outcome =
                        Outcome::created(format!("finished creating bucket {bucket} (tags were missing)"));
                }
                created => {
                    return Err(Error::BucketOwnedElsewhere {
                        bucket: bucket.into(),
                        detail: adoption_hint(
                            &format!(
                                "it exists without bucketwire tags and was created {}, before this integration began creating it at {started}",
                                created.map_or("at an unknown time".to_string(), |c| format!("at {c}"))
                            ),
                            desired,
                        ),
                    });
                }
            }
        }
        Ownership::Foreign(_) | Ownership::Untagged if !desired.create && may_adopt => {
            // Recorded before the first write, so the adoption can never be forgotten.
            journal.adopting().await?;
            let mut ours = desired.tags.clone();
            ours.insert(TAG_ADOPTED.into(), "true".into());
            store
                .put_tags(bucket, &tags.clone().unwrap_or_default(), &ours)
                .await?;
            return Ok(Outcome::adopted(format!("adopted existing bucket {bucket}")));
        }
        Ownership::Foreign(detail) => {
            return Err(Error::BucketOwnedElsewhere {
                bucket: bucket.into(),
                detail: adoption_hint(&detail, desired),
            });
        }
        Ownership::OtherIntegration(detail) => {
            return Err(Error::BucketOwnedElsewhere {
                bucket: bucket.into(),
                detail,
            });
        }
        Ownership::Untagged => {
            return Err(Error::BucketOwnedElsewhere {
                bucket: bucket.into(),
                detail: adoption_hint("it exists without bucketwire tags", desired),
            });
        }
    }

    if !desired.create {
        // An adopted bucket's settings are its owner's; we only use it.
        return Ok(Outcome::adopted(format!(
            "using adopted bucket {bucket} in {region}"
        )));
    }
    let fixes = store.repair_settings(desired).await?;
    if fixes.is_empty() {
        return Ok(outcome);
    }
    Ok(Outcome::drift_corrected(format!(
        "bucket {bucket}: repaired [{}]",
        fixes.join(", ")
    )))
}

fn adoption_hint(detail: &str, desired: &DesiredBucket) -> String {
    if desired.create {
        format!(
            "{detail}; to use an existing bucket set bucket.create: false (the operator's adoption allow-list must include it)"
        )
    } else {
        format!("{detail}, and the operator's adoption allow-list (--adopt-buckets) does not include it")
    }
}

pub enum TagsAnswer {
    NoSuchBucket,
    /// `None`: the bucket has no tag set.
    Tags(Option<BTreeMap<String, String>>),
}

/// The bucket's CreationDate, as S3 lists it for this account.
async fn creation_date(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<Option<jiff::Timestamp>, Error> {
    let mut pages = s3
        .list_buckets()
        .prefix(bucket)
        .max_buckets(1000)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page =
            page.map_err(|e| Error::aws(Call::new(Operation::ListBuckets, "*"), AwsFailure::from_sdk(&e)))?;
        if let Some(found) = page.buckets().iter().find(|b| b.name() == Some(bucket)) {
            return Ok(found
                .creation_date()
                .and_then(|d| jiff::Timestamp::new(d.secs(), d.subsec_nanos() as i32).ok()));
        }
    }
    Ok(None)
}

async fn get_tags(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<TagsAnswer, Error> {
    match s3.get_bucket_tagging().bucket(bucket).send().await {
        Ok(out) => Ok(TagsAnswer::Tags(Some(
            out.tag_set()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect(),
        ))),
        Err(err) => {
            let failure = AwsFailure::from_sdk(&err);
            if failure.is_code("NoSuchBucket") || failure.status == Some(404) && failure.code.is_none() {
                Ok(TagsAnswer::NoSuchBucket)
            } else if failure.is_code("NoSuchTagSet") {
                Ok(TagsAnswer::Tags(None))
            } else if failure.is_code("PermanentRedirect") || failure.status == Some(301) {
                Err(Error::BucketRegionMismatch {
                    want: "(this region)".into(),
                    got: "another region".into(),
                })
            } else if failure.is_access_denied() {
                let call = on_bucket(s3, Operation::GetBucketTagging, bucket);
                Err(Error::BucketOwnedElsewhere {
                    bucket: bucket.into(),
                    detail: format!(
                        "reading its tags ({call}) was denied ({}); it may belong to another AWS account, or be outside what the operator's IAM policy allows (its bucket prefix)",
                        failure.detail()
                    ),
                })
            } else {
                Err(Error::aws(
                    on_bucket(s3, Operation::GetBucketTagging, bucket),
                    failure,
                ))
            }
        }
    }
}

pub async fn get_region(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<String, Error> {
    let out = s3
        .get_bucket_location()
        .bucket(bucket)
        .send()
        .await
        .map_err(|e| {
            Error::aws(
                on_bucket(s3, Operation::GetBucketLocation, bucket),
                AwsFailure::from_sdk(&e),
            )
        })?;
    Ok(location_to_region(out.location_constraint().map(|c| c.as_str())))
}

async fn create(s3: &aws_sdk_s3::Client, desired: &DesiredBucket) -> Result<(), Error> {
    let bucket = desired.name.as_str();
    let mut request = s3
        .create_bucket()
        .bucket(bucket)
        .object_ownership(ObjectOwnership::BucketOwnerEnforced);
    if desired.region != "us-east-1" {
        request = request.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(desired.region.as_str()))
                .build(),
        );
    }
    if let Err(err) = request.send().await {
        let failure = AwsFailure::from_sdk(&err);
        if failure.is_code("BucketAlreadyExists") {
            return Err(Error::BucketOwnedElsewhere {
                bucket: bucket.into(),
                detail: "the name is taken by another AWS account; bucket names are global, choose another"
                    .into(),
            });
        }
        // BucketAlreadyOwnedByYou: a concurrent or interrupted create; the tags decide next time.
        if !failure.is_code("BucketAlreadyOwnedByYou") {
            return Err(Error::aws(
                on_bucket(s3, Operation::CreateBucket, bucket),
                failure,
            ));
        }
    }
    crate::failpoint::crash_point("after-create-bucket");
    // Tags first: from here on, a crash leaves a bucket we recognise as ours.
    put_tags(s3, bucket, &BTreeMap::new(), &desired.tags).await?;
    for fix in [
        BucketFix::PublicAccessBlock,
        BucketFix::Encryption,
        BucketFix::Policy,
    ] {
        apply_fix(s3, desired, &fix).await?;
    }
    if desired.versioning {
        apply_fix(s3, desired, &BucketFix::Versioning).await?;
    }
    Ok(())
}

async fn put_tags(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    existing: &BTreeMap<String, String>,
    ours: &BTreeMap<String, String>,
) -> Result<(), Error> {
    // PutBucketTagging replaces the whole set: keep the tags others put there.
    let mut all = existing.clone();
    all.extend(ours.iter().map(|(k, v)| (k.clone(), v.clone())));
    let tags: Vec<Tag> = all
        .iter()
        .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
        .collect();
    let tagging = Tagging::builder()
        .set_tag_set(Some(tags))
        .build()
        .map_err(|e| Error::InvalidSpec(format!("bucket tags: {e}")))?;
    s3.put_bucket_tagging()
        .bucket(bucket)
        .tagging(tagging)
        .send()
        .await
        .map_err(|e| {
            Error::aws(
                on_bucket(s3, Operation::PutBucketTagging, bucket),
                AwsFailure::from_sdk(&e),
            )
        })?;
    Ok(())
}

/// Whether all four of the bucket's public access blocks are on.
async fn public_access_blocked(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<bool, Error> {
    Ok(match s3.get_public_access_block().bucket(bucket).send().await {
        Ok(out) => out.public_access_block_configuration().is_some_and(|c| {
            c.block_public_acls() == Some(true)
                && c.ignore_public_acls() == Some(true)
                && c.block_public_policy() == Some(true)
                && c.restrict_public_buckets() == Some(true)
        }),
        Err(e) => not_found_or(
            e,
            "NoSuchPublicAccessBlockConfiguration",
            on_bucket(s3, Operation::GetPublicAccessBlock, bucket),
        )?
        .is_some(),
    })
}

async fn observe_settings(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<ObservedSettings, Error> {
    let pab = public_access_blocked(s3, bucket).await?;
    let owner_enforced = match s3.get_bucket_ownership_controls().bucket(bucket).send().await {
        Ok(out) => out.ownership_controls().is_some_and(|c| {
            c.rules()
                .iter()
                .any(|r| r.object_ownership() == &ObjectOwnership::BucketOwnerEnforced)
        }),
        Err(e) => not_found_or(
            e,
            "OwnershipControlsNotFoundError",
            on_bucket(s3, Operation::GetBucketOwnershipControls, bucket),
        )?
        .is_some(),
    };
    let (encryption, bucket_key) = match observe_encryption(s3, bucket).await? {
        Some((encryption, bucket_key)) => (Some(encryption), bucket_key),
        None => (None, false),
    };
    let policy = match s3.get_bucket_policy().bucket(bucket).send().await {
        Ok(out) => out.policy().and_then(parse_document),
        Err(e) => {
            not_found_or(
                e,
                "NoSuchBucketPolicy",
                on_bucket(s3, Operation::GetBucketPolicy, bucket),
            )?;
            None
        }
    };
    let versioning = s3
        .get_bucket_versioning()
        .bucket(bucket)
        .send()
        .await
        .map_err(|e| {
            Error::aws(
                on_bucket(s3, Operation::GetBucketVersioning, bucket),
                AwsFailure::from_sdk(&e),
            )
        })?
        .status()
        .map(|s| s.as_str().to_string());
    Ok(ObservedSettings {
        public_access_blocked: pab,
        owner_enforced,
        encryption,
        bucket_key,
        policy,
        versioning,
    })
}

/// ((algorithm, KMS key), Bucket Keys on) of the bucket's default encryption, if it has one.
type ObservedEncryption = ((String, Option<String>), bool);

async fn observe_encryption(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
) -> Result<Option<ObservedEncryption>, Error> {
    match s3.get_bucket_encryption().bucket(bucket).send().await {
        Ok(out) => Ok(out
            .server_side_encryption_configuration()
            .and_then(|c| c.rules().first())
            .and_then(|r| {
                let d = r.apply_server_side_encryption_by_default()?;
                let algorithm = (
                    d.sse_algorithm().as_str().to_string(),
                    d.kms_master_key_id().map(str::to_string),
                );
                Some((algorithm, r.bucket_key_enabled() == Some(true)))
            })),
        Err(e) => {
            not_found_or(
                e,
                "ServerSideEncryptionConfigurationNotFoundError",
                on_bucket(s3, Operation::GetBucketEncryption, bucket),
            )?;
            Ok(None)
        }
    }
}

/// `Ok(None)` when the error is the "not configured" code, the classified error otherwise.
/// (`Some` is never returned; the Option keeps call sites uniform.)
fn not_found_or<E>(
    err: aws_sdk_s3::error::SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
    code: &str,
    call: Call,
) -> Result<Option<()>, Error>
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    let failure = AwsFailure::from_sdk(&err);
    if failure.is_code(code) || (failure.status == Some(404) && failure.code.is_none()) {
        Ok(None)
    } else {
        Err(Error::aws(call, failure))
    }
}

async fn apply_fix(s3: &aws_sdk_s3::Client, desired: &DesiredBucket, fix: &BucketFix) -> Result<(), Error> {
    let bucket = desired.name.as_str();
    let invalid = |e: aws_sdk_s3::error::BuildError| Error::InvalidSpec(format!("bucket settings: {e}"));
    match fix {
        BucketFix::PublicAccessBlock => s3
            .put_public_access_block()
            .bucket(bucket)
            .public_access_block_configuration(
                PublicAccessBlockConfiguration::builder()
                    .block_public_acls(true)
                    .ignore_public_acls(true)
                    .block_public_policy(true)
                    .restrict_public_buckets(true)
                    .build(),
            )
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                Error::aws(
                    on_bucket(s3, Operation::PutPublicAccessBlock, bucket),
                    AwsFailure::from_sdk(&e),
                )
            }),
        BucketFix::OwnershipControls => {
            let rule = OwnershipControlsRule::builder()
                .object_ownership(ObjectOwnership::BucketOwnerEnforced)
                .build()
                .map_err(invalid)?;
            let controls = OwnershipControls::builder()
                .rules(rule)
                .build()
                .map_err(invalid)?;
            s3.put_bucket_ownership_controls()
                .bucket(bucket)
                .ownership_controls(controls)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| {
                    Error::aws(
                        on_bucket(s3, Operation::PutBucketOwnershipControls, bucket),
                        AwsFailure::from_sdk(&e),
                    )
                })
        }
        BucketFix::Encryption => {
            let default = match &desired.kms_key_arn {
                Some(key) => ServerSideEncryptionByDefault::builder()
                    .sse_algorithm(ServerSideEncryption::AwsKms)
                    .kms_master_key_id(key),
                None => ServerSideEncryptionByDefault::builder().sse_algorithm(ServerSideEncryption::Aes256),
            }
            .build()
            .map_err(invalid)?;
            let rule = ServerSideEncryptionRule::builder()
                .apply_server_side_encryption_by_default(default)
                .bucket_key_enabled(desired.kms_key_arn.is_some())
                .build();
            let config = ServerSideEncryptionConfiguration::builder()
                .rules(rule)
                .build()
                .map_err(invalid)?;
            s3.put_bucket_encryption()
                .bucket(bucket)
                .server_side_encryption_configuration(config)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| {
                    Error::aws(
                        on_bucket(s3, Operation::PutBucketEncryption, bucket),
                        AwsFailure::from_sdk(&e),
                    )
                })
        }
        BucketFix::Policy => s3
            .put_bucket_policy()
            .bucket(bucket)
            .policy(desired.policy.to_string())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                Error::aws(
                    on_bucket(s3, Operation::PutBucketPolicy, bucket),
                    AwsFailure::from_sdk(&e),
                )
            }),
        BucketFix::Versioning => {
            let status = if desired.versioning {
                BucketVersioningStatus::Enabled
            } else {
                BucketVersioningStatus::Suspended
            };
            s3.put_bucket_versioning()
                .bucket(bucket)
                .versioning_configuration(VersioningConfiguration::builder().status(status).build())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| {
                    Error::aws(
                        on_bucket(s3, Operation::PutBucketVersioning, bucket),
                        AwsFailure::from_sdk(&e),
                    )
                })
        }
    }
}

/// Deletion with deletionPolicy Delete: only an empty bucket that this integration created.
pub async fn delete_if_empty(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    ours: &BTreeMap<String, String>,
) -> Result<Outcome, Error> {
    let tags = match get_tags(s3, bucket).await? {
        TagsAnswer::NoSuchBucket => {
            return Ok(Outcome::up_to_date(format!("bucket {bucket} is already gone")));
        }
        TagsAnswer::Tags(tags) => tags,
    };
    if ownership(tags.as_ref(), ours) != Ownership::Ours {
        return Ok(Outcome::up_to_date(format!(
            "bucket {bucket} is not owned by this integration; kept"
        )));
    }
    if tags.as_ref().and_then(|t| t.get(TAG_ADOPTED)).map(String::as_str) == Some("true") {
        return Ok(Outcome::up_to_date(format!(
            "bucket {bucket} was adopted, not created, by this integration; kept"
        )));
    }
    let listing = s3
        .list_object_versions()
        .bucket(bucket)
        .max_keys(1)
        .send()
        .await
        .map_err(|e| {
            Error::aws(
                on_bucket(s3, Operation::ListObjectVersions, bucket),
                AwsFailure::from_sdk(&e),
            )
        })?;
    if !listing.versions().is_empty() || !listing.delete_markers().is_empty() {
        return Err(Error::DeletionBlocked {
            bucket: bucket.into(),
            detail: "it holds objects".into(),
        });
    }
    abort_probe_uploads(s3, bucket).await?;
    match s3.delete_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(Outcome::created(format!("deleted empty bucket {bucket}"))),
        Err(e) => {
            let failure = AwsFailure::from_sdk(&e);
            if failure.is_code("BucketNotEmpty") {
                Err(Error::DeletionBlocked {
                    bucket: bucket.into(),
                    detail: failure.to_string(),
                })
            } else if failure.is_code("NoSuchBucket") {
                Ok(Outcome::up_to_date(format!("bucket {bucket} is already gone")))
            } else {
                Err(Error::aws(
                    on_bucket(s3, Operation::DeleteBucket, bucket),
                    failure,
                ))
            }
        }
    }
}

/// Pure: whether an incomplete multipart upload is the validation probe's (an interrupted probe
/// leaves its upload behind): `<rootPath>/.bucketwire-validation/<uid>.multipart`.
pub fn is_probe_upload(key: &str) -> bool {
    key.split('/').rev().nth(1) == Some(".bucketwire-validation") && key.ends_with(".multipart")
}

/// Aborts the multipart uploads interrupted validation probes left in an empty bucket about to be
/// deleted; anyone else's upload is left alone. (OSS too, through its S3-compatible API.)
pub async fn abort_probe_uploads(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<(), Error> {
    let uploads = s3
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .map_err(|e| {
            Error::aws(
                on_bucket(s3, Operation::ListMultipartUploads, bucket),
                AwsFailure::from_sdk(&e),
            )
        })?;
    for upload in uploads.uploads() {
        let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) else {
            continue;
        };
        if !is_probe_upload(key) {
            continue;
        }
        s3.abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(id)
            .send()
            .await
            .map_err(|e| {
                let partition = crate::naming::Partition::of_region(
                    &s3.config().region().map(|r| r.to_string()).unwrap_or_default(),
                );
                Error::aws(
                    Call::new(
                        Operation::AbortMultipartUpload,
                        format!("{}/{key}", crate::naming::bucket_arn(partition, bucket)),
                    ),
                    AwsFailure::from_sdk(&e),
                )
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_probes_own_uploads_are_aborted() {
        assert!(is_probe_upload("files/.bucketwire-validation/uid-1.multipart"));
        assert!(is_probe_upload("a/b/.bucketwire-validation/uid-1.multipart"));
        assert!(!is_probe_upload("files/insert_log/1/2/3"));
        assert!(!is_probe_upload("files/.bucketwire-validation/uid-1"));
        assert!(!is_probe_upload("files/data/.bucketwire-validation.multipart"));
    }
    use crate::documents::bucket_policy;
    use crate::naming::Partition;

    fn desired(kms: Option<&str>, versioning: bool) -> DesiredBucket {
        DesiredBucket {
            name: "b".into(),
            region: "us-east-2".into(),
            create: true,
            kms_key_arn: kms.map(str::to_string),
            versioning,
            tags: BTreeMap::new(),
            policy: bucket_policy(Partition::Aws, "b"),
            uid: "uid-1".into(),
        }
    }

    fn compliant() -> ObservedSettings {
        ObservedSettings {
            public_access_blocked: true,
            owner_enforced: true,
            encryption: Some(("AES256".into(), None)),
            bucket_key: false,
            policy: Some(bucket_policy(Partition::Aws, "b")),
            versioning: None,
        }
    }

    #[test]
    fn a_compliant_bucket_needs_no_fix() {
        assert_eq!(settings_drift(&compliant(), &desired(None, false)), vec![]);
    }

    #[test]
    fn each_drifted_setting_is_fixed() {
        let mut observed = compliant();
        observed.public_access_blocked = false;
        observed.policy = None;
        observed.versioning = Some("Enabled".into());
        assert_eq!(
            settings_drift(&observed, &desired(None, false)),
            vec![
                BucketFix::PublicAccessBlock,
                BucketFix::Policy,
                BucketFix::Versioning
            ]
        );
        assert_eq!(
            settings_drift(
                &compliant(),
                &desired(Some("arn:aws:kms:us-east-2:1:key/k"), true)
            ),
            vec![BucketFix::Encryption, BucketFix::Versioning]
        );
    }

    #[test]
    fn a_kms_bucket_without_bucket_keys_is_drift() {
        let key = "arn:aws:kms:us-east-2:1:key/k";
        let mut observed = compliant();
        observed.encryption = Some(("aws:kms".into(), Some(key.into())));
        observed.bucket_key = true;
        assert_eq!(settings_drift(&observed, &desired(Some(key), false)), vec![]);
        observed.bucket_key = false;
        assert_eq!(
            settings_drift(&observed, &desired(Some(key), false)),
            vec![BucketFix::Encryption],
            "the role's KMS grant is conditioned on the bucket-ARN context, which needs Bucket Keys"
        );
    }

    #[test]
    fn suspended_versioning_satisfies_versioning_false() {
        let mut observed = compliant();
        observed.versioning = Some("Suspended".into());
        assert_eq!(settings_drift(&observed, &desired(None, false)), vec![]);
    }

    fn ours() -> BTreeMap<String, String> {
        crate::documents::ownership_tags("c", "ns", "n", "u", &BTreeMap::new())
    }

    #[test]
    fn ownership_is_decided_by_the_uid_tag() {
        let mut tags = BTreeMap::new();
        assert_eq!(ownership(None, &ours()), Ownership::Untagged);
        assert_eq!(ownership(Some(&tags), &ours()), Ownership::Untagged);
        tags.insert("team".into(), "x".into());
        assert!(matches!(ownership(Some(&tags), &ours()), Ownership::Foreign(_)));
        tags.insert(TAG_UID.into(), "other".into());
        assert!(
            matches!(ownership(Some(&tags), &ours()), Ownership::OtherIntegration(d) if d.contains("other")),
            "another integration's bucket is never adoptable"
        );
        tags.insert(TAG_UID.into(), "u".into());
        assert_eq!(ownership(Some(&tags), &ours()), Ownership::Ours);
    }

    #[test]
    fn only_an_earlier_integration_of_the_same_cluster_namespace_and_name_is_a_predecessor() {
        let earlier = crate::documents::ownership_tags("c", "ns", "n", "old-uid", &BTreeMap::new());
        assert_eq!(ownership(Some(&earlier), &ours()), Ownership::Predecessor);
        for (cluster, namespace, name) in [("other", "ns", "n"), ("c", "other", "n"), ("c", "ns", "other")] {
            let tags =
                crate::documents::ownership_tags(cluster, namespace, name, "old-uid", &BTreeMap::new());
            assert!(
                matches!(ownership(Some(&tags), &ours()), Ownership::OtherIntegration(_)),
                "{cluster}/{namespace}/{name} is another integration"
            );
        }
        let mut no_uid = earlier.clone();
        no_uid.remove(TAG_UID);
        assert!(matches!(ownership(Some(&no_uid), &ours()), Ownership::Foreign(_)));
    }

    #[test]
    fn bucket_locations_map_to_regions() {
        assert_eq!(location_to_region(None), "us-east-1");
        assert_eq!(location_to_region(Some("")), "us-east-1");
        assert_eq!(location_to_region(Some("EU")), "eu-west-1");
        assert_eq!(location_to_region(Some("us-west-2")), "us-west-2");
    }
}
