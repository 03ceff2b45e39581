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
/// RRSA's: what ACK's pod-identity webhook injects, and what Milvus's chain reads too.
pub const ROLE_ARN_ENV: &str = "ALIBABA_CLOUD_ROLE_ARN";
pub const OIDC_PROVIDER_ARN_ENV: &str = "ALIBABA_CLOUD_OIDC_PROVIDER_ARN";
pub const OIDC_TOKEN_FILE_ENV: &str = "ALIBABA_CLOUD_OIDC_TOKEN_FILE";

/// The session name of validation's AssumeRoleWithOIDC (counted as the workload's call).
pub const WORKLOAD_SESSION: &str = "bucketwire-validation";

/// Counts every Alibaba Cloud call for `/metrics` (`bucketwire_alibaba_calls_total`, when the
/// operator gave a registry) and tells the crash tests' failpoint that a cloud call returned.
#[derive(Clone, Debug, Default)]
pub struct Calls(Option<crate::metrics::CallFamily>);

impl Calls {
    pub fn record(&self, identity: &'static str, service: &str, operation: &str, ok: bool) {
        if let Some(family) = &self.0 {
            family
                .get_or_create(&crate::metrics::AwsCallLabels {
                    identity: identity.into(),
                    service: service.into(),
                    operation: operation.into(),
                    outcome: if ok { "success" } else { "error" }.into(),
                })
                .inc();
        }
        crate::failpoint::aws_call_returned();
    }
}

/// STS credentials from AssumeRoleWithOIDC last 900 s (`services::assume_role_with_oidc`);
/// the operator exchanges its token again when they are this old.
const RRSA_REFRESH_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

/// Where the operator's own Alibaba Cloud credentials come from, in the order of Alibaba's
/// default credential chain: an AccessKey in the environment, then RRSA.
#[derive(Debug)]
pub enum Credentials {
    None,
    Key(AccessKey),
    Rrsa(RrsaCredentials),
}

impl Credentials {
    /// From `ALIBABA_CLOUD_ACCESS_KEY_ID`/`_SECRET` (and `_SECURITY_TOKEN`), else from
    /// `ALIBABA_CLOUD_ROLE_ARN`, `ALIBABA_CLOUD_OIDC_PROVIDER_ARN` and
    /// `ALIBABA_CLOUD_OIDC_TOKEN_FILE` (RRSA: no long-lived key).
    pub fn from_env() -> Self {
        let var = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
        if let (Some(id), Some(secret)) = (var(ACCESS_KEY_ID_ENV), var(ACCESS_KEY_SECRET_ENV)) {
            return Self::Key(AccessKey {
                id,
                secret,
                security_token: var(SECURITY_TOKEN_ENV),
            });
        }
        match (
            var(ROLE_ARN_ENV),
            var(OIDC_PROVIDER_ARN_ENV),
            var(OIDC_TOKEN_FILE_ENV),
        ) {
            (Some(role_arn), Some(provider_arn), Some(token_file)) => Self::Rrsa(RrsaCredentials {
                role_arn,
                provider_arn,
                token_file: token_file.into(),
                cached: tokio::sync::Mutex::default(),
            }),
            _ => Self::None,
        }
    }
}

/// The operator's own RRSA: its projected ServiceAccount token (re-read at every exchange: the
/// kubelet rotates it) exchanged for STS credentials, cached until `RRSA_REFRESH_AFTER`.
pub struct RrsaCredentials {
    role_arn: String,
    provider_arn: String,
    token_file: std::path::PathBuf,
    cached: tokio::sync::Mutex<Option<(AccessKey, std::time::Instant)>>,
}

impl std::fmt::Debug for RrsaCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RrsaCredentials")
            .field("role_arn", &self.role_arn)
            .field("provider_arn", &self.provider_arn)
            .field("token_file", &self.token_file)
            .finish_non_exhaustive()
    }
}

impl RrsaCredentials {
    async fn key(&self, api: &OpenApi) -> Result<AccessKey, Error> {
        let mut cached = self.cached.lock().await;
        if let Some((key, at)) = cached.as_ref()
            && at.elapsed() < RRSA_REFRESH_AFTER
        {
            return Ok(key.clone());
        }
        let token = tokio::fs::read_to_string(&self.token_file).await.map_err(|e| {
            Error::ProviderNotConfigured(format!(
                "the operator's RRSA token {} cannot be read: {e}",
                self.token_file.display()
            ))
        })?;
        let key = api
            .assume_role_with_oidc(
                &self.role_arn,
                &self.provider_arn,
                token.trim(),
                "bucketwire-operator",
            )
            .await
            .map_err(|e| api_error("sts:AssumeRoleWithOIDC", &self.role_arn, e))?;
        *cached = Some((key.clone(), std::time::Instant::now()));
        Ok(key)
    }
}

/// Alibaba Cloud access for the whole operator: its credentials, the OpenAPI client, one OSS
/// client per region and the operator's account (STS GetCallerIdentity, asked once).
pub struct Alibaba {
    endpoints: Endpoints,
    pub api: OpenApi,
    credentials: Credentials,
    oss: Mutex<HashMap<String, Arc<Oss>>>,
    account: Mutex<Option<String>>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl std::fmt::Debug for Alibaba {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alibaba")
            .field("endpoints", &self.endpoints)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl Alibaba {
    /// From the operator's settings and environment; no I/O. Without credentials every
    /// Alibaba integration reports ProviderNotConfigured (AWS integrations are unaffected).
    pub fn new(endpoint_override: Option<&str>, credentials: Credentials) -> Result<Self, String> {
        let endpoints = match endpoint_override.filter(|u| !u.is_empty()) {
            Some(url) => Endpoints::from_override(url)?,
            None => Endpoints::default(),
        };
        Ok(Self {
            api: OpenApi::new(endpoints.clone()),
            endpoints,
            credentials,
            oss: Mutex::default(),
            account: Mutex::default(),
            metrics: None,
        })
    }

    /// Counts every call on `/metrics` (`bucketwire_alibaba_calls_total`).
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.api.calls = Calls(Some(metrics.alibaba_calls.clone()));
        self.metrics = Some(metrics);
        self
    }

    fn calls(&self) -> Calls {
        Calls(self.metrics.as_ref().map(|m| m.alibaba_calls.clone()))
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// The operator's own credentials: the AccessKey it was given, or RRSA's STS credentials
    /// (exchanged again shortly before they expire).
    pub async fn key(&self) -> Result<AccessKey, Error> {
        match &self.credentials {
            Credentials::None => Err(Error::ProviderNotConfigured(format!(
                "this operator has no Alibaba Cloud credentials: run it with RRSA ({ROLE_ARN_ENV}, {OIDC_PROVIDER_ARN_ENV}, {OIDC_TOKEN_FILE_ENV}) or set {ACCESS_KEY_ID_ENV} and {ACCESS_KEY_SECRET_ENV}, for a RAM identity carrying deploy/alibaba/operator-policy.json"
            ))),
            Credentials::Key(key) => Ok(key.clone()),
            Credentials::Rrsa(rrsa) => rrsa.key(&self.api).await,
        }
    }

    pub fn oss(&self, region: &str) -> Arc<Oss> {
        let mut cache = self.oss.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(region.to_string())
            .or_insert_with(|| Arc::new(Oss::counted(self.endpoints.clone(), region, self.calls())))
            .clone()
    }

    /// The operator's account id (STS GetCallerIdentity, asked once per process).
    pub async fn account(&self) -> Result<String, Error> {
        if let Some(account) = self.account.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(account);
        }
        let key = self.key().await?;
        let identity = self
            .api
            .get_caller_identity(&key)
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
    /// `identity` labels its calls on `/metrics` (`operator` or `workload`), as service `oss-s3`.
    pub fn s3_compatible(&self, region: &str, key: &AccessKey, identity: &'static str) -> aws_sdk_s3::Client {
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
            .http_client(http);
        let config = match &self.metrics {
            Some(metrics) => config.interceptor(crate::aws::CallCounter::new(
                &metrics.alibaba_calls,
                identity,
                Some("oss-s3"),
            )),
            None => config,
        };
        aws_sdk_s3::Client::from_conf(config.build())
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
