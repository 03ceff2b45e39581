//! Step 1 on Alibaba Cloud: the OSS bucket, through the same decisions as S3's
//! (`steps::bucket::reconcile_store`: ownership by tags, adoption, an interrupted create,
//! region, drift). What differs is the store: a private ACL, Block Public Access, default
//! encryption (OSS-managed or a KMS key), the bucket policy refusing plain HTTP, versioning and
//! tags, through OSS's own API; and a bucket of another account is never ours, whatever its
//! tags say (OSS bucket names are global).

use std::collections::BTreeMap;

use super::oss::{BucketInfo, Oss, OssError, Sse};
use super::signer::AccessKey;
use super::{naming, oss_error};
use crate::documents::documents_equivalent;
use crate::error::Error;
use crate::steps::bucket::{BucketStore, DesiredBucket, TagsAnswer};

/// OSS as a bucket store, as the operator's account sees it.
pub struct OssStore<'a> {
    pub oss: &'a Oss,
    pub key: &'a AccessKey,
    /// The operator's account: only its buckets can be ours.
    pub account: &'a str,
}

/// The KMS key id of a key ARN (`acs:kms:<region>:<account>:key/<id>` -> `<id>`).
pub fn key_id(key: &str) -> &str {
    key.rsplit_once("key/").map_or(key, |(_, id)| id)
}

/// Pure: what an owned bucket's settings lack, from GetBucketInfo and its policy.
pub fn settings_drift(
    info: &BucketInfo,
    policy: Option<&serde_json::Value>,
    desired: &DesiredBucket,
) -> Vec<&'static str> {
    let mut fixes = vec![];
    if info.acl != "private" {
        fixes.push("Acl");
    }
    if info.block_public_access != Some(true) {
        fixes.push("BlockPublicAccess");
    }
    let encryption_ok = match &desired.kms_key_arn {
        Some(key) => info.sse_algorithm == "KMS" && info.kms_key_id == key_id(key),
        None => info.sse_algorithm == "AES256",
    };
    if !encryption_ok {
        fixes.push("Encryption");
    }
    if !policy.is_some_and(|p| documents_equivalent(p, &desired.policy)) {
        fixes.push("Policy");
    }
    let versioning_ok = match (desired.versioning, info.versioning.as_str()) {
        (true, "Enabled") => true,
        (true, _) => false,
        (false, "Enabled") => false,
        (false, _) => true,
    };
    if !versioning_ok {
        fixes.push("Versioning");
    }
    fixes
}

impl OssStore<'_> {
    fn resource(&self, bucket: &str) -> String {
        naming::bucket_arn(self.account, bucket)
    }

    fn failed(&self, action: &str, bucket: &str) -> impl FnOnce(OssError) -> Error {
        let resource = self.resource(bucket);
        let action = action.to_string();
        move |e| oss_error(&action, &resource, e)
    }

    async fn info(&self, bucket: &str) -> Result<Option<BucketInfo>, Error> {
        match self.oss.bucket_info(self.key, bucket).await {
            Ok(info) => Ok(info),
            Err(e) if e.is_access_denied() => Err(Error::BucketOwnedElsewhere {
                bucket: bucket.into(),
                detail: format!(
                    "reading it (oss:GetBucketInfo) was denied ({e}); it may belong to another Alibaba Cloud account, or be outside what the operator's RAM policy allows (its bucket prefix)"
                ),
            }),
            Err(e) => Err(self.failed("oss:GetBucketInfo", bucket)(e)),
        }
    }

    async fn fix(&self, desired: &DesiredBucket, fix: &str) -> Result<(), Error> {
        let bucket = desired.name.as_str();
        match fix {
            "Acl" => self
                .oss
                .put_acl(self.key, bucket, "private")
                .await
                .map_err(self.failed("oss:PutBucketAcl", bucket)),
            "BlockPublicAccess" => self
                .oss
                .put_block_public_access(self.key, bucket, true)
                .await
                .map_err(self.failed("oss:PutBucketPublicAccessBlock", bucket)),
            "Encryption" => {
                let sse = match &desired.kms_key_arn {
                    Some(key) => Sse::Kms {
                        key_id: key_id(key).to_string(),
                    },
                    None => Sse::Oss,
                };
                self.oss
                    .put_encryption(self.key, bucket, &sse)
                    .await
                    .map_err(self.failed("oss:PutBucketEncryption", bucket))
            }
            "Policy" => self
                .oss
                .put_policy(self.key, bucket, &desired.policy)
                .await
                .map_err(self.failed("oss:PutBucketPolicy", bucket)),
            _ => self
                .oss
                .put_versioning(self.key, bucket, desired.versioning)
                .await
                .map_err(self.failed("oss:PutBucketVersioning", bucket)),
        }
    }
}

impl BucketStore for OssStore<'_> {
    async fn get_tags(&self, bucket: &str) -> Result<TagsAnswer, Error> {
        let Some(info) = self.info(bucket).await? else {
            return Ok(TagsAnswer::NoSuchBucket);
        };
        if info.owner_id != self.account {
            return Err(Error::BucketOwnedElsewhere {
                bucket: bucket.into(),
                detail: format!(
                    "it belongs to Alibaba Cloud account {}, not the operator's ({})",
                    info.owner_id, self.account
                ),
            });
        }
        let tags = self
            .oss
            .tags(self.key, bucket)
            .await
            .map_err(self.failed("oss:GetBucketTagging", bucket))?;
        Ok(TagsAnswer::Tags((!tags.is_empty()).then_some(tags)))
    }

    async fn get_region(&self, bucket: &str) -> Result<String, Error> {
        let info = self.info(bucket).await?.ok_or_else(|| Error::BucketNotFound {
            bucket: bucket.into(),
        })?;
        Ok(info.region().to_string())
    }

    async fn creation_date(&self, bucket: &str) -> Result<Option<jiff::Timestamp>, Error> {
        Ok(self.info(bucket).await?.and_then(|i| i.creation_date))
    }

    async fn create(&self, desired: &DesiredBucket) -> Result<(), Error> {
        let bucket = desired.name.as_str();
        match self.oss.create_bucket(self.key, bucket).await {
            Ok(()) => {}
            Err(e) if e.code() == Some("BucketAlreadyExists") => {
                return Err(Error::BucketOwnedElsewhere {
                    bucket: bucket.into(),
                    detail: "the name is taken by another Alibaba Cloud account; bucket names are global, choose another".into(),
                });
            }
            Err(e) => return Err(self.failed("oss:PutBucket", bucket)(e)),
        }
        crate::failpoint::crash_point("after-create-bucket");
        // Tags first: from here on, a crash leaves a bucket we recognise as ours.
        self.put_tags(bucket, &BTreeMap::new(), &desired.tags).await?;
        for fix in ["BlockPublicAccess", "Encryption", "Policy"] {
            self.fix(desired, fix).await?;
        }
        if desired.versioning {
            self.fix(desired, "Versioning").await?;
        }
        Ok(())
    }

    async fn put_tags(
        &self,
        bucket: &str,
        existing: &BTreeMap<String, String>,
        ours: &BTreeMap<String, String>,
    ) -> Result<(), Error> {
        let mut all = existing.clone();
        all.extend(ours.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.oss
            .put_tags(self.key, bucket, &all)
            .await
            .map_err(self.failed("oss:PutBucketTagging", bucket))
    }

    async fn repair_settings(&self, desired: &DesiredBucket) -> Result<Vec<String>, Error> {
        let bucket = desired.name.as_str();
        let info = self.info(bucket).await?.ok_or_else(|| Error::BucketNotFound {
            bucket: bucket.into(),
        })?;
        let policy = self
            .oss
            .policy(self.key, bucket)
            .await
            .map_err(self.failed("oss:GetBucketPolicy", bucket))?;
        let fixes = settings_drift(&info, policy.as_ref(), desired);
        for fix in &fixes {
            self.fix(desired, fix).await?;
        }
        Ok(fixes.iter().map(|f| f.to_string()).collect())
    }
}

/// Deletes the bucket if it is empty (no object, version or delete marker); a non-empty one
/// is never emptied: DeletionBlocked. The multipart uploads interrupted validation probes left
/// are aborted first (through `s3`, OSS's S3-compatible API as the operator): OSS, like S3,
/// refuses to delete a bucket that still has one.
pub async fn delete_if_empty(
    store: &OssStore<'_>,
    s3: &aws_sdk_s3::Client,
    bucket: &str,
) -> Result<String, Error> {
    if store.info(bucket).await?.is_none() {
        return Ok(format!("bucket {bucket} was already gone"));
    }
    let empty = store
        .oss
        .is_empty(store.key, bucket)
        .await
        .map_err(store.failed("oss:ListObjectVersions", bucket))?;
    if !empty {
        return Err(Error::DeletionBlocked {
            bucket: bucket.into(),
            detail: "it holds objects or object versions".into(),
        });
    }
    crate::steps::bucket::abort_probe_uploads(s3, bucket)
        .await
        .map_err(|e| super::validate::in_oss_terms(e, store.account, bucket))?;
    match store.oss.delete_bucket(store.key, bucket).await {
        Ok(()) => Ok(format!("deleted empty bucket {bucket}")),
        // Something was written (or an upload begun) since the listing: not ours to remove.
        Err(e) if e.code() == Some("BucketNotEmpty") => Err(Error::DeletionBlocked {
            bucket: bucket.into(),
            detail: e.to_string(),
        }),
        Err(e) => Err(store.failed("oss:DeleteBucket", bucket)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn desired(kms: Option<&str>, versioning: bool) -> DesiredBucket {
        DesiredBucket {
            name: "b".into(),
            region: "cn-hangzhou".into(),
            create: true,
            kms_key_arn: kms.map(str::to_string),
            versioning,
            tags: BTreeMap::new(),
            policy: json!({"Version": "1", "Statement": []}),
            uid: "u".into(),
        }
    }

    fn good() -> BucketInfo {
        BucketInfo {
            acl: "private".into(),
            block_public_access: Some(true),
            sse_algorithm: "AES256".into(),
            ..BucketInfo::default()
        }
    }

    #[test]
    fn a_bucket_as_created_has_no_drift() {
        let policy = json!({"Statement": [], "Version": "1"});
        assert!(settings_drift(&good(), Some(&policy), &desired(None, false)).is_empty());
    }

    #[test]
    fn each_setting_that_drifted_is_named() {
        let policy = json!({"Version": "1", "Statement": []});
        let mut info = good();
        info.acl = "public-read".into();
        info.block_public_access = Some(false);
        info.versioning = "Enabled".into();
        assert_eq!(
            settings_drift(&info, None, &desired(None, false)),
            ["Acl", "BlockPublicAccess", "Policy", "Versioning"]
        );
        let kms = "acs:kms:cn-hangzhou:1:key/key-1";
        assert_eq!(
            settings_drift(&good(), Some(&policy), &desired(Some(kms), true)),
            ["Encryption", "Versioning"]
        );
        let mut with_key = good();
        with_key.sse_algorithm = "KMS".into();
        with_key.kms_key_id = "key-1".into();
        with_key.versioning = "Enabled".into();
        assert!(settings_drift(&with_key, Some(&policy), &desired(Some(kms), true)).is_empty());
        assert_eq!(key_id(kms), "key-1");
    }
}
