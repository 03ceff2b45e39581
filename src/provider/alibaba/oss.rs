//! OSS's own API for the bucket and its settings: virtual-host requests
//! (`<bucket>.oss-<region>.aliyuncs.com`, OSS refuses path style) signed with OSS signature V4
//! by reqsign-aliyun-oss, XML bodies, answers read with roxmltree. Milvus's data path goes
//! through OSS's S3-compatible API instead (the validation probe uses aws-sdk-s3 there).
//! Reads answer `None` for "not there"; nothing here retries or sleeps.

use std::collections::BTreeMap;

use aws_smithy_http_client::Connector;
use aws_smithy_runtime_api::client::http::HttpConnector;
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;
use reqsign_aliyun_oss::{Credential, RequestSigner, SigningVersion};
use reqsign_core::SignRequest;
use serde_json::Value;

use super::naming::oss_host;
use super::openapi::{Endpoints, connector};
use super::signer::AccessKey;

/// An OSS request that failed: OSS's XML error (status, code, message), or no answer.
#[derive(Debug, thiserror::Error)]
pub enum OssError {
    #[error("OSS {operation} on {bucket}: {code} (HTTP {status}): {message}")]
    Refused {
        operation: &'static str,
        bucket: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("OSS {operation} on {bucket}: {detail}")]
    Transport {
        operation: &'static str,
        bucket: String,
        detail: String,
    },
}

impl OssError {
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Refused { code, .. } => Some(code),
            Self::Transport { .. } => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Refused { status, .. } => Some(*status),
            Self::Transport { .. } => None,
        }
    }

    pub fn is_access_denied(&self) -> bool {
        self.status() == Some(403) && self.code() != Some("SignatureDoesNotMatch")
    }

    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Refused { status, .. } => *status >= 500,
        }
    }
}

/// What GetBucketInfo says about a bucket.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BucketInfo {
    /// `oss-cn-hangzhou`: the region id with OSS's `oss-` prefix.
    pub location: String,
    pub owner_id: String,
    pub acl: String,
    /// `AES256`, `KMS` or `SM4`; empty without default encryption.
    pub sse_algorithm: String,
    pub kms_key_id: String,
    /// `Enabled`, `Suspended`, or empty when versioning was never turned on.
    pub versioning: String,
    pub block_public_access: Option<bool>,
    /// `CreationDate`, e.g. `2026-12-05T12:00:00.000Z`.
    pub creation_date: Option<jiff::Timestamp>,
}

impl BucketInfo {
    /// The region id of `location` (`oss-cn-hangzhou` -> `cn-hangzhou`).
    pub fn region(&self) -> &str {
        self.location.strip_prefix("oss-").unwrap_or(&self.location)
    }
}

/// The bucket's default encryption, as bucketwire sets it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sse {
    /// OSS-managed keys (AES256).
    Oss,
    /// A KMS key of the bucket's region.
    Kms { key_id: String },
}

/// A client for one region's OSS.
pub struct Oss {
    endpoints: Endpoints,
    connector: Connector,
    region: String,
    calls: super::Calls,
}

impl std::fmt::Debug for Oss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oss").field("region", &self.region).finish()
    }
}

/// Escapes text for an XML element.
fn xml_text(input: &str) -> String {
    input
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// The text of the first element named `name` (anywhere in the document).
fn text_of(doc: &roxmltree::Document<'_>, name: &str) -> String {
    doc.descendants()
        .find(|n| n.has_tag_name(name))
        .and_then(|n| n.text())
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// `<Tagging><TagSet><Tag><Key/><Value/></Tag>...`, as PutBucketTags takes it.
pub fn tagging_xml(tags: &BTreeMap<String, String>) -> String {
    let tags: String = tags
        .iter()
        .map(|(k, v)| {
            format!(
                "<Tag><Key>{}</Key><Value>{}</Value></Tag>",
                xml_text(k),
                xml_text(v)
            )
        })
        .collect();
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Tagging><TagSet>{tags}</TagSet></Tagging>")
}

pub fn parse_tagging(xml: &str) -> BTreeMap<String, String> {
    let Ok(doc) = roxmltree::Document::parse(xml) else {
        return BTreeMap::new();
    };
    doc.descendants()
        .filter(|n| n.has_tag_name("Tag"))
        .filter_map(|tag| {
            let child = |name| {
                tag.children()
                    .find(|c| c.has_tag_name(name))
                    .map(|c| c.text().unwrap_or_default().to_string())
            };
            Some((child("Key")?, child("Value").unwrap_or_default()))
        })
        .collect()
}

pub fn encryption_xml(sse: &Sse) -> String {
    let inner = match sse {
        Sse::Oss => "<SSEAlgorithm>AES256</SSEAlgorithm>".to_string(),
        Sse::Kms { key_id } => format!(
            "<SSEAlgorithm>KMS</SSEAlgorithm><KMSMasterKeyID>{}</KMSMasterKeyID>",
            xml_text(key_id)
        ),
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ServerSideEncryptionRule><ApplyServerSideEncryptionByDefault>{inner}</ApplyServerSideEncryptionByDefault></ServerSideEncryptionRule>"
    )
}

pub fn parse_bucket_info(xml: &str) -> BucketInfo {
    let Ok(doc) = roxmltree::Document::parse(xml) else {
        return BucketInfo::default();
    };
    let owner_id = doc
        .descendants()
        .find(|n| n.has_tag_name("Owner"))
        .and_then(|owner| owner.children().find(|c| c.has_tag_name("ID")))
        .and_then(|id| id.text())
        .unwrap_or_default()
        .to_string();
    let block = text_of(&doc, "BlockPublicAccess");
    BucketInfo {
        location: text_of(&doc, "Location"),
        owner_id,
        acl: text_of(&doc, "Grant"),
        sse_algorithm: text_of(&doc, "SSEAlgorithm"),
        kms_key_id: text_of(&doc, "KMSMasterKeyID"),
        versioning: text_of(&doc, "Versioning"),
        block_public_access: (!block.is_empty()).then(|| block == "true"),
        creation_date: text_of(&doc, "CreationDate").parse().ok(),
    }
}

fn error_of(operation: &'static str, bucket: &str, status: u16, body: &[u8]) -> OssError {
    let text = String::from_utf8_lossy(body);
    let (code, message) = match roxmltree::Document::parse(&text) {
        Ok(doc) => (text_of(&doc, "Code"), text_of(&doc, "Message")),
        Err(_) => (String::new(), text.chars().take(200).collect()),
    };
    OssError::Refused {
        operation,
        bucket: bucket.to_string(),
        status,
        code: if code.is_empty() {
            format!("HTTP{status}")
        } else {
            code
        },
        message,
    }
}

/// One OSS operation: its name (for errors), HTTP method and subresource query.
struct Call<'a> {
    operation: &'static str,
    method: &'static str,
    subresource: &'a str,
}

impl<'a> Call<'a> {
    fn new(operation: &'static str, method: &'static str, subresource: &'a str) -> Self {
        Self {
            operation,
            method,
            subresource,
        }
    }
}

impl Oss {
    pub fn new(endpoints: Endpoints, region: &str) -> Self {
        Self::counted(endpoints, region, super::Calls::default())
    }

    pub(crate) fn counted(endpoints: Endpoints, region: &str, calls: super::Calls) -> Self {
        Self {
            connector: connector(&endpoints),
            endpoints,
            region: region.to_string(),
            calls,
        }
    }

    /// Sends one signed request to `bucket`'s virtual host; answers (status, body). Counted
    /// (`bucketwire_alibaba_calls_total`, service `oss`) once it has an answer or failed.
    async fn send(
        &self,
        call: Call<'_>,
        key: &AccessKey,
        bucket: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<(u16, Vec<u8>), OssError> {
        let operation = call.operation;
        let answer = self.send_uncounted(call, key, bucket, headers, body).await;
        self.calls.record("operator", "oss", operation, answer.is_ok());
        answer
    }

    async fn send_uncounted(
        &self,
        call: Call<'_>,
        key: &AccessKey,
        bucket: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<(u16, Vec<u8>), OssError> {
        let Call {
            operation,
            method,
            subresource,
        } = call;
        let transport = |detail: String| OssError::Transport {
            operation,
            bucket: bucket.to_string(),
            detail,
        };
        let host = format!("{bucket}.{}", oss_host(&self.region, false));
        let query = if subresource.is_empty() {
            String::new()
        } else {
            format!("?{subresource}")
        };
        let url = format!("{}/{query}", self.endpoints.base_url(&host));
        let mut builder = http::Request::builder()
            .method(method)
            .uri(&url)
            .header("host", self.endpoints.authority(&host));
        for (name, value) in headers {
            builder = builder.header(*name, value.as_str());
        }
        if !body.is_empty() {
            builder = builder.header("content-length", body.len().to_string());
        }
        let (mut parts, ()) = builder
            .body(())
            .map_err(|e| transport(format!("building the request: {e}")))?
            .into_parts();
        let credential = Credential {
            access_key_id: key.id.clone(),
            access_key_secret: key.secret.clone(),
            security_token: key.security_token.clone(),
            expires_in: None,
        };
        RequestSigner::new(bucket)
            .with_region(&self.region)
            .with_signing_version(SigningVersion::V4)
            .sign_request(&reqsign_core::Context::new(), &mut parts, Some(&credential), None)
            .await
            .map_err(|e| transport(format!("signing: {e}")))?;
        let request = http::Request::from_parts(parts, SdkBody::from(body));
        let request =
            HttpRequest::try_from(request).map_err(|e| transport(format!("building the request: {e}")))?;
        let response = self
            .connector
            .call(request)
            .await
            .map_err(|e| transport(format!("no answer: {e}")))?;
        let status = response.status().as_u16();
        let body = ByteStream::new(response.into_body())
            .collect()
            .await
            .map_err(|e| transport(format!("reading the answer: {e}")))?
            .into_bytes()
            .to_vec();
        if (200..300).contains(&status) {
            Ok((status, body))
        } else {
            Err(error_of(operation, bucket, status, &body))
        }
    }

    /// `None` for NoSuchBucket.
    pub async fn bucket_info(&self, key: &AccessKey, bucket: &str) -> Result<Option<BucketInfo>, OssError> {
        match self
            .send(
                Call::new("GetBucketInfo", "GET", "bucketInfo"),
                key,
                bucket,
                &[],
                vec![],
            )
            .await
        {
            Ok((_, body)) => Ok(Some(parse_bucket_info(&String::from_utf8_lossy(&body)))),
            Err(e) if e.code() == Some("NoSuchBucket") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A private bucket (ACL `private`), Standard storage.
    pub async fn create_bucket(&self, key: &AccessKey, bucket: &str) -> Result<(), OssError> {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><CreateBucketConfiguration><StorageClass>Standard</StorageClass></CreateBucketConfiguration>";
        self.send(
            Call::new("PutBucket", "PUT", ""),
            key,
            bucket,
            &[
                ("x-oss-acl", "private".into()),
                ("content-type", "application/xml".into()),
            ],
            body.as_bytes().to_vec(),
        )
        .await
        .map(drop)
    }

    /// Sets the bucket's ACL (PutBucketAcl): bucketwire only ever sets `private`.
    pub async fn put_acl(&self, key: &AccessKey, bucket: &str, acl: &str) -> Result<(), OssError> {
        self.send(
            Call::new("PutBucketAcl", "PUT", "acl"),
            key,
            bucket,
            &[("x-oss-acl", acl.into())],
            vec![],
        )
        .await
        .map(drop)
    }

    pub async fn tags(&self, key: &AccessKey, bucket: &str) -> Result<BTreeMap<String, String>, OssError> {
        let (_, body) = self
            .send(
                Call::new("GetBucketTags", "GET", "tagging"),
                key,
                bucket,
                &[],
                vec![],
            )
            .await?;
        Ok(parse_tagging(&String::from_utf8_lossy(&body)))
    }

    pub async fn put_tags(
        &self,
        key: &AccessKey,
        bucket: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), OssError> {
        self.put_xml("PutBucketTags", key, bucket, "tagging", tagging_xml(tags))
            .await
    }

    /// Turns Block Public Access on or off: bucketwire only ever turns it on.
    pub async fn put_block_public_access(
        &self,
        key: &AccessKey,
        bucket: &str,
        on: bool,
    ) -> Result<(), OssError> {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><PublicAccessBlockConfiguration><BlockPublicAccess>{on}</BlockPublicAccess></PublicAccessBlockConfiguration>"
        );
        self.put_xml(
            "PutBucketPublicAccessBlock",
            key,
            bucket,
            "publicAccessBlock",
            body,
        )
        .await
    }

    /// `Some(true)` when Block Public Access is on; `None` when never configured.
    pub async fn block_public_access(&self, key: &AccessKey, bucket: &str) -> Result<Option<bool>, OssError> {
        match self
            .send(
                Call::new("GetBucketPublicAccessBlock", "GET", "publicAccessBlock"),
                key,
                bucket,
                &[],
                vec![],
            )
            .await
        {
            Ok((_, body)) => {
                let text = String::from_utf8_lossy(&body).to_string();
                Ok(roxmltree::Document::parse(&text)
                    .ok()
                    .map(|doc| text_of(&doc, "BlockPublicAccess") == "true"))
            }
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn put_encryption(&self, key: &AccessKey, bucket: &str, sse: &Sse) -> Result<(), OssError> {
        self.put_xml(
            "PutBucketEncryption",
            key,
            bucket,
            "encryption",
            encryption_xml(sse),
        )
        .await
    }

    pub async fn put_versioning(&self, key: &AccessKey, bucket: &str, enabled: bool) -> Result<(), OssError> {
        let status = if enabled { "Enabled" } else { "Suspended" };
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><VersioningConfiguration><Status>{status}</Status></VersioningConfiguration>"
        );
        self.put_xml("PutBucketVersioning", key, bucket, "versioning", body)
            .await
    }

    /// The bucket policy; `None` when it has none.
    pub async fn policy(&self, key: &AccessKey, bucket: &str) -> Result<Option<Value>, OssError> {
        match self
            .send(
                Call::new("GetBucketPolicy", "GET", "policy"),
                key,
                bucket,
                &[],
                vec![],
            )
            .await
        {
            Ok((_, body)) => Ok(serde_json::from_slice(&body).ok()),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn put_policy(&self, key: &AccessKey, bucket: &str, policy: &Value) -> Result<(), OssError> {
        self.send(
            Call::new("PutBucketPolicy", "PUT", "policy"),
            key,
            bucket,
            &[("content-type", "application/json".into())],
            policy.to_string().into_bytes(),
        )
        .await
        .map(drop)
    }

    /// Whether the bucket holds nothing: no object, no version, no delete marker.
    pub async fn is_empty(&self, key: &AccessKey, bucket: &str) -> Result<bool, OssError> {
        let (_, body) = self
            .send(
                Call::new("ListObjectVersions", "GET", "versions&max-keys=1"),
                key,
                bucket,
                &[],
                vec![],
            )
            .await?;
        let text = String::from_utf8_lossy(&body).to_string();
        let doc = roxmltree::Document::parse(&text).map_err(|e| OssError::Transport {
            operation: "ListObjectVersions",
            bucket: bucket.to_string(),
            detail: format!("an answer that is not XML: {e}"),
        })?;
        Ok(!doc
            .descendants()
            .any(|n| n.has_tag_name("Version") || n.has_tag_name("DeleteMarker")))
    }

    /// Deletes an empty bucket (OSS refuses a non-empty one: BucketNotEmpty).
    pub async fn delete_bucket(&self, key: &AccessKey, bucket: &str) -> Result<(), OssError> {
        match self
            .send(Call::new("DeleteBucket", "DELETE", ""), key, bucket, &[], vec![])
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("NoSuchBucket") => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn put_xml(
        &self,
        operation: &'static str,
        key: &AccessKey,
        bucket: &str,
        subresource: &str,
        body: String,
    ) -> Result<(), OssError> {
        self.send(
            Call::new(operation, "PUT", subresource),
            key,
            bucket,
            &[("content-type", "application/xml".into())],
            body.into_bytes(),
        )
        .await
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_survive_the_round_trip_through_xml_with_escaping() {
        let tags = BTreeMap::from([
            ("bucketwire.io/name".to_string(), "a<b>&'c\"".to_string()),
            ("team".to_string(), String::new()),
        ]);
        assert_eq!(parse_tagging(&tagging_xml(&tags)), tags);
    }

    #[test]
    fn bucket_info_is_read_from_get_bucket_info() {
        let info = parse_bucket_info(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<BucketInfo><Bucket><Name>b</Name><Location>oss-cn-hangzhou</Location>
<Owner><DisplayName>1</DisplayName><ID>1234567890123456</ID></Owner>
<AccessControlList><Grant>private</Grant></AccessControlList>
<ServerSideEncryptionRule><SSEAlgorithm>KMS</SSEAlgorithm><KMSMasterKeyID>key-1</KMSMasterKeyID></ServerSideEncryptionRule>
<Versioning>Enabled</Versioning><BlockPublicAccess>true</BlockPublicAccess>
<CreationDate>2026-12-05T12:00:00.000Z</CreationDate></Bucket></BucketInfo>"#,
        );
        assert_eq!(
            info.creation_date,
            Some("2026-12-05T12:00:00Z".parse().expect("time"))
        );
        assert_eq!(info.region(), "cn-hangzhou");
        assert_eq!(info.owner_id, "1234567890123456");
        assert_eq!(info.acl, "private");
        assert_eq!(
            (info.sse_algorithm.as_str(), info.kms_key_id.as_str()),
            ("KMS", "key-1")
        );
        assert_eq!(info.versioning, "Enabled");
        assert_eq!(info.block_public_access, Some(true));
        assert_eq!(parse_bucket_info("not xml"), BucketInfo::default());
    }

    #[test]
    fn encryption_names_the_key_only_with_kms() {
        assert!(encryption_xml(&Sse::Oss).contains("<SSEAlgorithm>AES256</SSEAlgorithm>"));
        assert!(!encryption_xml(&Sse::Oss).contains("KMSMasterKeyID"));
        let kms = encryption_xml(&Sse::Kms { key_id: "k&1".into() });
        assert!(kms.contains("<KMSMasterKeyID>k&amp;1</KMSMasterKeyID>"), "{kms}");
    }

    #[test]
    fn errors_carry_osss_code_and_message() {
        let e = error_of(
            "GetBucketInfo",
            "b",
            404,
            b"<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist.</Message></Error>",
        );
        assert_eq!(e.code(), Some("NoSuchBucket"));
        assert!(e.to_string().contains("The specified bucket does not exist."));
        assert!(
            error_of("PutBucket", "b", 403, b"<Error><Code>AccessDenied</Code></Error>").is_access_denied()
        );
        assert!(error_of("PutBucket", "b", 503, b"").is_transient());
    }
}
