//! AWS clients: one shared SDK configuration, a client per region (S3) or partition (IAM,
//! STS), the endpoint override for emulators and S3-compatible stores, an interceptor that
//! counts every operation for `/metrics`, and an HTTP layer that times every request and
//! holds IAM requests to a client-side rate limit.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse, Metadata};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

pub mod actions;

use crate::metrics::{AwsCallLabels, AwsServiceLabels, CallFamily, Metrics};
use crate::naming::Partition;

/// Counts each operation of an AWS SDK client once (after its retries) by service, operation
/// and outcome, into `family` (`aws_calls`; `alibaba_calls` for OSS's S3-compatible API, whose
/// service label `service` then overrides the SDK's).
#[derive(Clone, Debug)]
pub(crate) struct CallCounter {
    family: CallFamily,
    identity: &'static str,
    service: Option<&'static str>,
}

impl CallCounter {
    pub(crate) fn new(family: &CallFamily, identity: &'static str, service: Option<&'static str>) -> Self {
        Self {
            family: family.clone(),
            identity,
            service,
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "bucketwire-call-counter"
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (service, operation) = cfg
            .load::<Metadata>()
            .map(|m| (m.service().to_string(), m.name().to_string()))
            .unwrap_or_else(|| ("unknown".into(), "unknown".into()));
        let outcome = match context.output_or_error() {
            Some(Ok(_)) => "success",
            _ => "error",
        };
        let service = self.service.map(str::to_string).unwrap_or(service);
        self.family
            .get_or_create(&AwsCallLabels {
                identity: self.identity.into(),
                service,
                operation,
                outcome: outcome.into(),
            })
            .inc();
        crate::failpoint::aws_call_returned();
        Ok(())
    }
}

/// The IAM rate limit of one-off commands (`bucketwire validate`); the controller's is a setting.
pub const DEFAULT_IAM_REQUESTS_PER_SECOND: NonZeroU32 = NonZeroU32::new(10).unwrap();

/// A client-side limit on requests per second (GCRA, with a burst of the same size).
struct RateLimit(governor::DefaultDirectRateLimiter);

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RateLimit")
    }
}

/// The SDK's HTTPS client with two additions: every HTTP attempt (retries included) is timed,
/// so `/metrics` shows how long AWS itself took to answer, and, when a rate limit is set,
/// waits for it first (the wait is measured too).
#[derive(Clone, Debug)]
struct InstrumentedHttpClient {
    inner: SharedHttpClient,
    service: &'static str,
    limit: Option<Arc<RateLimit>>,
    metrics: Arc<Metrics>,
}

#[derive(Debug)]
struct InstrumentedConnector {
    inner: SharedHttpConnector,
    client: InstrumentedHttpClient,
}

impl HttpClient for InstrumentedHttpClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(InstrumentedConnector {
            inner: self.inner.http_connector(settings, components),
            client: self.clone(),
        })
    }
}

impl HttpConnector for InstrumentedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let inner = self.inner.clone();
        let client = self.client.clone();
        HttpConnectorFuture::new(async move {
            let labels = AwsServiceLabels {
                service: client.service.into(),
            };
            if let Some(limit) = &client.limit {
                let waiting = Instant::now();
                limit.0.until_ready().await;
                client
                    .metrics
                    .aws_rate_limit_wait
                    .get_or_create(&labels)
                    .inc_by(waiting.elapsed().as_secs_f64());
            }
            let started = Instant::now();
            let response = inner.call(request).await;
            client
                .metrics
                .aws_request_duration
                .get_or_create(&labels)
                .observe(started.elapsed().as_secs_f64());
            response
        })
    }
}

/// Bounds on every AWS request. The SDK sets none for reads: a connection that stays open with
/// no answer (seen under fault injection) would hold a reconcile, and its concurrency slot,
/// forever. An attempt cut short is retried like any other transient failure.
/// The longest one AWS call may take, retries included: the chart's
/// terminationGracePeriodSeconds must be longer (tests/node.rs checks it on a running Pod).
pub const OPERATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

fn timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(5))
        .read_timeout(std::time::Duration::from_secs(30))
        .operation_attempt_timeout(std::time::Duration::from_secs(30))
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}

/// The SDK's default HTTPS client (rustls with aws-lc, proxy from the environment), built
/// here because the instrumented client wraps it.
fn default_https_client() -> SharedHttpClient {
    use aws_smithy_http_client::proxy::ProxyConfig;
    use aws_smithy_http_client::{Builder, ConnectorBuilder, tls};
    Builder::new().build_with_connector_fn(move |settings, components| {
        let mut connector = ConnectorBuilder::default()
            .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

/// AWS access for the whole operator.
pub struct Aws {
    base: SdkConfig,
    endpoint: Option<String>,
    https: SharedHttpClient,
    metrics: Arc<Metrics>,
    /// IAM requests per second per partition (IAM throttles per account, and bursts of
    /// thousands of integrations must not become a throttling storm).
    iam_requests_per_second: NonZeroU32,
    counter: CallCounter,
    workload_counter: CallCounter,
    s3: Mutex<HashMap<String, aws_sdk_s3::Client>>,
    iam: Mutex<HashMap<Partition, aws_sdk_iam::Client>>,
    sts: Mutex<HashMap<Partition, aws_sdk_sts::Client>>,
    eks: Mutex<HashMap<String, aws_sdk_eks::Client>>,
    eks_auth: Mutex<HashMap<String, aws_sdk_eksauth::Client>>,
    kms: Mutex<HashMap<String, aws_sdk_kms::Client>>,
}

impl Aws {
    /// Loads credentials and the default region the standard way (environment, profile,
    /// IRSA web identity, ...). `endpoint` overrides every service's endpoint.
    pub async fn load(
        endpoint: Option<String>,
        iam_requests_per_second: NonZeroU32,
        metrics: Arc<Metrics>,
    ) -> Self {
        let https = default_https_client();
        let base = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(timeouts())
            .http_client(InstrumentedHttpClient {
                inner: https.clone(),
                service: "sts",
                limit: None,
                metrics: metrics.clone(),
            })
            .load()
            .await;
        Self {
            base,
            endpoint,
            https,
            metrics: metrics.clone(),
            iam_requests_per_second,
            counter: CallCounter::new(&metrics.aws_calls, "operator", None),
            workload_counter: CallCounter::new(&metrics.aws_calls, "workload", None),
            s3: Mutex::default(),
            iam: Mutex::default(),
            sts: Mutex::default(),
            eks: Mutex::default(),
            eks_auth: Mutex::default(),
            kms: Mutex::default(),
        }
    }

    /// The HTTP client of one service's SDK client.
    fn http_client(&self, service: &'static str, limit: Option<Arc<RateLimit>>) -> InstrumentedHttpClient {
        InstrumentedHttpClient {
            inner: self.https.clone(),
            service,
            limit,
            metrics: self.metrics.clone(),
        }
    }

    /// The operator's own region (where its EKS cluster is).
    pub fn default_region(&self) -> Option<String> {
        self.base.region().map(|r| r.to_string())
    }

    /// S3 in the bucket's region; path-style when an endpoint override is set.
    pub fn s3(&self, region: &str) -> aws_sdk_s3::Client {
        let mut clients = self.s3.lock().unwrap_or_else(|e| e.into_inner());
        clients
            .entry(region.to_string())
            .or_insert_with(|| {
                let mut b = aws_sdk_s3::config::Builder::from(&self.base)
                    .region(Region::new(region.to_string()))
                    .http_client(self.http_client("s3", None))
                    .interceptor(self.counter.clone());
                if let Some(url) = &self.endpoint {
                    b = b.endpoint_url(url).force_path_style(true);
                }
                aws_sdk_s3::Client::from_conf(b.build())
            })
            .clone()
    }

    /// IAM of a partition (IAM is global within it).
    pub fn iam(&self, partition: Partition) -> aws_sdk_iam::Client {
        let mut clients = self.iam.lock().unwrap_or_else(|e| e.into_inner());
        clients
            .entry(partition)
            .or_insert_with(|| {
                let limit = governor::Quota::per_second(self.iam_requests_per_second);
                let limit = Arc::new(RateLimit(governor::RateLimiter::direct(limit)));
                let mut b = aws_sdk_iam::config::Builder::from(&self.base)
                    .region(Region::new(partition.iam_region()))
                    .http_client(self.http_client("iam", Some(limit)))
                    .interceptor(self.counter.clone());
                if let Some(url) = &self.endpoint {
                    b = b.endpoint_url(url);
                }
                aws_sdk_iam::Client::from_conf(b.build())
            })
            .clone()
    }

    pub fn sts(&self, partition: Partition) -> aws_sdk_sts::Client {
        let mut clients = self.sts.lock().unwrap_or_else(|e| e.into_inner());
        clients
            .entry(partition)
            .or_insert_with(|| {
                let mut b = aws_sdk_sts::config::Builder::from(&self.base)
                    .region(Region::new(partition.iam_region()))
                    .interceptor(self.counter.clone());
                if let Some(url) = &self.endpoint {
                    b = b.endpoint_url(url);
                }
                aws_sdk_sts::Client::from_conf(b.build())
            })
            .clone()
    }

    pub fn eks(&self, region: &str) -> aws_sdk_eks::Client {
        let mut clients = self.eks.lock().unwrap_or_else(|e| e.into_inner());
        clients
            .entry(region.to_string())
            .or_insert_with(|| {
                let mut b = aws_sdk_eks::config::Builder::from(&self.base)
                    .region(Region::new(region.to_string()))
                    .http_client(self.http_client("eks", None))
                    .interceptor(self.counter.clone());
                if let Some(url) = &self.endpoint {
                    b = b.endpoint_url(url);
                }
                aws_sdk_eks::Client::from_conf(b.build())
            })
            .clone()
    }

    /// EKS Auth in the cluster's region, signed with the operator's credentials: validation of
    /// a Pod Identity integration calls AssumeRoleForPodIdentity as the node's agent does.
    pub fn eks_auth(&self, region: &str) -> aws_sdk_eksauth::Client {
        let mut clients = self.eks_auth.lock().unwrap_or_else(|e| e.into_inner());
        clients
            .entry(region.to_string())
            .or_insert_with(|| {
                let mut b = aws_sdk_eksauth::config::Builder::from(&self.base)
                    .region(Region::new(region.to_string()))
                    .http_client(self.http_client("eks-auth", None))
                    .interceptor(self.counter.clone());
                if let Some(url) = &self.endpoint {
                    b = b.endpoint_url(url);
                }
                aws_sdk_eksauth::Client::from_conf(b.build())
            })
            .clone()
    }
}

impl Aws {
    /// KMS in `region` (aliases in the operator's allow-list are resolved to keys there).
    pub fn kms(&self, region: &str) -> aws_sdk_kms::Client {
        let mut clients = self.kms.lock().unwrap_or_else(|e| e.into_inner());
        clients
            .entry(region.to_string())
            .or_insert_with(|| {
                let mut b = aws_sdk_kms::config::Builder::from(&self.base)
                    .region(Region::new(region.to_string()))
                    .http_client(self.http_client("kms", None))
                    .interceptor(self.counter.clone());
                if let Some(url) = &self.endpoint {
                    b = b.endpoint_url(url);
                }
                aws_sdk_kms::Client::from_conf(b.build())
            })
            .clone()
    }
}

impl Aws {
    /// STS in `region`, for AssumeRoleWithWebIdentity: that call is unsigned (the web identity
    /// token is the credential), so the operator's own credentials play no part.
    pub fn workload_sts(&self, region: &str) -> aws_sdk_sts::Client {
        let mut b = aws_sdk_sts::config::Builder::from(&self.base)
            .region(Region::new(region.to_string()))
            .interceptor(self.workload_counter.clone());
        if let Some(url) = &self.endpoint {
            b = b.endpoint_url(url);
        }
        aws_sdk_sts::Client::from_conf(b.build())
    }

    /// S3 in `region` acting with the workload's temporary credentials.
    pub fn workload_s3(
        &self,
        region: &str,
        credentials: aws_sdk_s3::config::Credentials,
    ) -> aws_sdk_s3::Client {
        let mut b = aws_sdk_s3::config::Builder::from(&self.base)
            .region(Region::new(region.to_string()))
            .http_client(self.http_client("s3", None))
            .credentials_provider(credentials)
            .interceptor(self.workload_counter.clone());
        if let Some(url) = &self.endpoint {
            b = b.endpoint_url(url).force_path_style(true);
        }
        aws_sdk_s3::Client::from_conf(b.build())
    }
}

/// What an AWS error says, in the terms our decisions need.
#[derive(Clone, Debug)]
pub struct AwsFailure {
    pub code: Option<String>,
    pub status: Option<u16>,
    pub message: String,
}

impl AwsFailure {
    pub fn from_sdk<E: ProvideErrorMetadata + std::error::Error + 'static>(
        err: &SdkError<E, HttpResponse>,
    ) -> Self {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let (code, message) = match err.as_service_error() {
            Some(e) => (
                e.code().map(str::to_string),
                e.message().unwrap_or_default().to_string(),
            ),
            None => (
                None,
                aws_smithy_types::error::display::DisplayErrorContext(err).to_string(),
            ),
        };
        Self {
            code,
            status,
            message,
        }
    }

    /// AWS's own words, without the error code when the code is only "access denied" again.
    pub fn detail(&self) -> String {
        match self.code.as_deref() {
            Some("AccessDenied" | "AccessDeniedException") if !self.message.is_empty() => {
                self.message.clone()
            }
            _ => self.to_string(),
        }
    }

    pub fn is_code(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    /// Access denied, also when the emulator wraps a 403 so that the SDK sees no error code.
    pub fn is_access_denied(&self) -> bool {
        matches!(
            self.code.as_deref(),
            Some("AccessDenied" | "AccessDeniedException")
        ) || self.status == Some(403)
    }

    pub fn is_throttling(&self) -> bool {
        matches!(
            self.code.as_deref(),
            Some(
                "Throttling"
                    | "ThrottlingException"
                    | "SlowDown"
                    | "RequestLimitExceeded"
                    | "TooManyRequestsException"
            )
        ) || self.status == Some(429)
    }
}

impl std::fmt::Display for AwsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.code, self.status) {
            (Some(code), _) if self.message.is_empty() => write!(f, "{code}"),
            (Some(code), _) => write!(f, "{code}: {}", self.message),
            (None, Some(status)) => write!(f, "HTTP {status}: {}", self.message),
            (None, None) => write!(f, "{}", self.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// The SDK clients speak HTTPS through the operator's one TLS stack: an S3 client built on
    /// `default_https_client` opens a TLS connection (a ClientHello naming the host) to an
    /// `https://` endpoint. The test bed's AWS is plain HTTP, so this is where HTTPS is shown.
    #[tokio::test]
    async fn sdk_clients_speak_tls_through_the_operators_connector() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let hello = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("a connection");
            let mut bytes = vec![0u8; 2048];
            let n = stream.read(&mut bytes).await.expect("read");
            bytes.truncate(n);
            bytes
        });
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-2"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "AKID", "secret", None, None, "test",
            ))
            .http_client(default_https_client())
            .endpoint_url(format!("https://localhost:{port}"))
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_timeout(std::time::Duration::from_secs(5))
                    .build(),
            )
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .build();
        // No TLS server answers: the call fails, after the handshake began.
        let call = aws_sdk_s3::Client::from_conf(conf).list_buckets().send().await;
        assert!(call.is_err());
        let hello = tokio::time::timeout(std::time::Duration::from_secs(5), hello)
            .await
            .expect("the client connected")
            .expect("the listener read");
        // A TLS handshake record (0x16), a ClientHello (handshake type 1), with SNI `localhost`.
        assert!(hello.len() > 5, "{hello:?}");
        assert_eq!(
            (hello[0], hello[1], hello[5]),
            (0x16, 0x03, 0x01),
            "not a TLS ClientHello"
        );
        assert!(
            hello.windows(9).any(|w| w == b"localhost"),
            "no SNI for localhost"
        );
    }

    /// One TLS stack in the tree: the AWS crates' default `rustls` feature would bring a second
    /// one (rustls 0.21 with ring, on hyper 0.14) beside rustls 0.23 with aws-lc-rs.
    #[test]
    fn the_lock_file_holds_one_tls_stack() {
        let lock = include_str!("../Cargo.lock");
        let versions = |name: &str| {
            lock.split("[[package]]")
                .filter(|p| p.contains(&format!("\nname = \"{name}\"\n")))
                .count()
        };
        for name in [
            "rustls",
            "hyper-rustls",
            "tokio-rustls",
            "rustls-webpki",
            "hyper",
            "h2",
        ] {
            assert_eq!(versions(name), 1, "{name} is in Cargo.lock more than once");
        }
        assert_eq!(versions("sct"), 0, "rustls 0.21's certificate-transparency crate");
    }
}
