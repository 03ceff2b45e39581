//! Alibaba Cloud: OSS buckets, RAM policies and roles, RRSA (RAM Roles for Service Accounts on
//! ACK) and the cross-account flow.
//!
//! Pure: `naming` (names, ARNs, endpoints), `documents` (RAM and OSS policy documents, Milvus
//! values). I/O: `signer` + `openapi` (the one hand-written request layer, for RAM, STS and
//! ACK), `services` (the typed calls), `oss` (OSS's own API, signed by reqsign), `bucket`,
//! `ram` (the steps), `reconcile` (the pipeline for this provider) and `validate`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub mod bucket;
pub mod documents;
pub mod naming;
pub mod openapi;
pub mod oss;
pub mod ram;
pub mod reconcile;
pub mod services;
pub mod signer;
pub mod validate;

use crate::error::{CloudFailureClass, Error};
use openapi::{ApiError, Endpoints, OpenApi};
use oss::{Oss, OssError};
use signer::AccessKey;

/// The environment variables of Alibaba Cloud's credential chain that the operator reads.
pub const ACCESS_KEY_ID_ENV: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
pub const ACCESS_KEY_SECRET_ENV: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
pub const SECURITY_TOKEN_ENV: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";

/// Alibaba Cloud access for the whole operator: its credentials, the OpenAPI client, one OSS
/// client per region and the operator's account (STS GetCallerIdentity, asked once).
pub struct Alibaba {
    endpoints: Endpoints,
    pub api: OpenApi,
    key: Option<AccessKey>,
    oss: Mutex<HashMap<String, Arc<Oss>>>,
    account: Mutex<Option<String>>,
}

impl std::fmt::Debug for Alibaba {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alibaba")
            .field("endpoints", &self.endpoints)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Alibaba {
    /// From the operator's settings and environment; no I/O. Without credentials every
    /// Alibaba integration reports ProviderNotConfigured (AWS integrations are unaffected).
    pub fn new(endpoint_override: Option<&str>, key: Option<AccessKey>) -> Result<Self, String> {
        let endpoints = match endpoint_override.filter(|u| !u.is_empty()) {
            Some(url) => Endpoints::from_override(url)?,
            None => Endpoints::default(),
        };
        Ok(Self {
            api: OpenApi::new(endpoints.clone()),
            endpoints,
            key,
            oss: Mutex::default(),
            account: Mutex::default(),
        })
    }

    /// The operator's credentials from `ALIBABA_CLOUD_ACCESS_KEY_ID`,
    /// `ALIBABA_CLOUD_ACCESS_KEY_SECRET` and (for STS credentials) `ALIBABA_CLOUD_SECURITY_TOKEN`.
    pub fn key_from_env() -> Option<AccessKey> {
        let var = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
        Some(AccessKey {
            id: var(ACCESS_KEY_ID_ENV)?,
            secret: var(ACCESS_KEY_SECRET_ENV)?,
            security_token: var(SECURITY_TOKEN_ENV),
        })
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    pub fn key(&self) -> Result<&AccessKey, Error> {
        self.key.as_ref().ok_or_else(|| {
            Error::ProviderNotConfigured(format!(
                "this operator has no Alibaba Cloud credentials: set {ACCESS_KEY_ID_ENV} and {ACCESS_KEY_SECRET_ENV} (and {SECURITY_TOKEN_ENV} for STS credentials) on the operator, for a RAM identity carrying deploy/alibaba/operator-policy.json"
            ))
        })
    }

    pub fn oss(&self, region: &str) -> Arc<Oss> {
        let mut cache = self.oss.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(region.to_string())
            .or_insert_with(|| Arc::new(Oss::new(self.endpoints.clone(), region)))
            .clone()
    }

    /// The operator's account id (STS GetCallerIdentity, asked once per process).
    pub async fn account(&self) -> Result<String, Error> {
        if let Some(account) = self.account.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(account);
        }
        let key = self.key()?;
        let identity = self
            .api
            .get_caller_identity(key)
            .await
            .map_err(|e| api_error("sts:GetCallerIdentity", "*", e))?;
        *self.account.lock().unwrap_or_else(|e| e.into_inner()) = Some(identity.account_id.clone());
        Ok(identity.account_id)
    }
}

impl Alibaba {
    /// OSS's S3-compatible API in `region` (what Milvus uses): aws-sdk-s3, virtual-host style
    /// at `oss-<region>.aliyuncs.com` (OSS refuses path style), SigV4 with `key`, checksums
    /// only where an operation requires them (OSS does not take S3's newer checksum headers).
    pub fn s3_compatible(&self, region: &str, key: &AccessKey) -> aws_sdk_s3::Client {
        use aws_sdk_s3::config::{
            BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
        };
        use aws_smithy_http_client::{Builder, tls};
        let tls = Builder::new().tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc));
        let http = match self.endpoints.resolve_to {
            Some(ip) => tls.build_with_resolver(openapi::FixedResolver(ip)),
            None => tls.build_https(),
        };
        let config = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .endpoint_url(self.endpoints.base_url(&naming::oss_host(region, false)))
            .force_path_style(false)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .credentials_provider(Credentials::new(
                key.id.clone(),
                key.secret.clone(),
                key.security_token.clone(),
                None,
                "alibaba-cloud",
            ))
            .http_client(http)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }
}

/// An OpenAPI failure as a reconcile error naming the RAM action and resource.
pub fn api_error(action: &str, resource: &str, e: ApiError) -> Error {
    let class = if e.is_access_denied() {
        CloudFailureClass::AccessDenied
    } else if e.code().is_some_and(|c| c.starts_with("Throttling")) {
        CloudFailureClass::Throttled
    } else if e.is_transient() {
        CloudFailureClass::Transient
    } else {
        CloudFailureClass::Refused
    };
    Error::Alibaba {
        call: format!("{action} on {resource}"),
        detail: e.to_string(),
        class,
    }
}

/// An OSS failure as a reconcile error naming the RAM action and resource.
pub fn oss_error(action: &str, resource: &str, e: OssError) -> Error {
    let class = if e.is_access_denied() {
        CloudFailureClass::AccessDenied
    } else if e.is_transient() {
        CloudFailureClass::Transient
    } else {
        CloudFailureClass::Refused
    };
    Error::Alibaba {
        call: format!("{action} on {resource}"),
        detail: e.to_string(),
        class,
    }
}
