//! AWS clients: one shared SDK configuration, a client per region (S3) or partition (IAM,
//! STS), the endpoint override for emulators and S3-compatible stores, and an interceptor
//! that counts every operation for `/metrics`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::{HttpResponse, Metadata};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

use crate::metrics::{AwsCallLabels, Metrics};
use crate::naming::Partition;

/// Counts each AWS operation once (after its retries) by service, operation and outcome.
#[derive(Clone, Debug)]
struct CallCounter {
    metrics: Arc<Metrics>,
    identity: &'static str,
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
        self.metrics
            .aws_calls
            .get_or_create(&AwsCallLabels {
                identity: self.identity.into(),
                service,
                operation,
                outcome: outcome.into(),
            })
            .inc();
        Ok(())
    }
}

/// AWS access for the whole operator.
pub struct Aws {
    base: SdkConfig,
    endpoint: Option<String>,
    counter: CallCounter,
    workload_counter: CallCounter,
    s3: Mutex<HashMap<String, aws_sdk_s3::Client>>,
    iam: Mutex<HashMap<Partition, aws_sdk_iam::Client>>,
    sts: Mutex<HashMap<Partition, aws_sdk_sts::Client>>,
    eks: Mutex<HashMap<String, aws_sdk_eks::Client>>,
}

impl Aws {
    /// Loads credentials and the default region the standard way (environment, profile,
    /// IRSA web identity, ...). `endpoint` overrides every service's endpoint.
    pub async fn load(endpoint: Option<String>, metrics: Arc<Metrics>) -> Self {
        let base = aws_config::defaults(BehaviorVersion::latest()).load().await;
        Self {
            base,
            endpoint,
            counter: CallCounter {
                metrics: metrics.clone(),
                identity: "operator",
            },
            workload_counter: CallCounter {
                metrics,
                identity: "workload",
            },
            s3: Mutex::default(),
            iam: Mutex::default(),
            sts: Mutex::default(),
            eks: Mutex::default(),
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
                let mut b = aws_sdk_iam::config::Builder::from(&self.base)
                    .region(Region::new(partition.iam_region()))
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
                    .interceptor(self.counter.clone());
                if let Some(url) = &self.endpoint {
                    b = b.endpoint_url(url);
                }
                aws_sdk_eks::Client::from_conf(b.build())
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
