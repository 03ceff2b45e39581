use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use bucketwire::settings::{LogFormat, Settings};

/// bucketwire: wires Milvus to its S3 bucket through IAM, with no static keys.
#[derive(Parser)]
#[command(name = "bucketwire", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the BucketIntegration CustomResourceDefinition as YAML.
    Crd,
    /// Run the operator.
    Run(Box<Settings>),
    /// Show an integration's details, ready to paste into a managed service's console.
    Describe {
        /// NAMESPACE/NAME of the BucketIntegration.
        #[arg(value_parser = parse_integration)]
        integration: Integration,
        /// The kubeconfig context to use (default: the current context).
        #[arg(long)]
        context: Option<String>,
    },
    /// Prove an integration's wiring by acting as its ServiceAccount, with your own Kubernetes
    /// and cloud credentials; exit code 0 (validated), 1 (not validated) or 2 (usage error).
    #[command(long_about = VALIDATE_ABOUT, after_help = VALIDATE_AFTER_HELP)]
    Validate {
        /// NAMESPACE/NAME of the BucketIntegration.
        #[arg(value_parser = parse_integration)]
        integration: Integration,
        /// The kubeconfig context to use (default: the current context).
        #[arg(long)]
        context: Option<String>,
        /// Endpoint for every AWS service (emulators).
        #[arg(long, env = "BUCKETWIRE_AWS_ENDPOINT_URL")]
        aws_endpoint_url: Option<String>,
        /// Endpoint for every Alibaba Cloud service (the test bed's fakes).
        #[arg(long, env = "BUCKETWIRE_ALIBABA_ENDPOINT_URL")]
        alibaba_endpoint_url: Option<String>,
    },
}

const VALIDATE_ABOUT: &str = "\
Prove an integration's wiring from a terminal: the checks the operator's Validated condition
makes, against what the integration's status records and the role as it is in IAM (or RAM)
now (nothing is repaired). An IRSA integration is checked as its ServiceAccount: a
TokenRequest, the token against the role's trust policy, AssumeRoleWithWebIdentity, then
HeadBucket, GetBucketLocation and the object operations Milvus makes as the role (PodIdentity:
EKS Auth AssumeRoleForPodIdentity; RRSA: STS AssumeRoleWithOIDC, then the same probe on OSS). A CrossAccount
integration is checked from outside: the bucket's region and the role's trust and permission
policies.

It runs with YOUR credentials, not the operator's:

Kubernetes (your kubeconfig; --context picks a context):
  get     bucketintegrations.bucketwire.io   in NAMESPACE
  create  serviceaccounts/token              in NAMESPACE (IRSA, PodIdentity, RRSA: a
                                             10-minute token for the integration's
                                             ServiceAccount, audience sts.amazonaws.com,
                                             pods.eks.amazonaws.com or sts.aliyuncs.com;
                                             never printed or stored)

AWS (the SDK's default chain: AWS_PROFILE, AWS_ACCESS_KEY_ID..., SSO, web identity, instance
role; every region comes from the integration), the operator's IAM policy grants all of them:
  IRSA          iam:GetRole on the integration's role; AssumeRoleWithWebIdentity is unsigned
                (the token is the credential) and the object operations run as the role; on a
                versioned bucket, s3:ListBucketVersions and s3:DeleteObjectVersion to remove
                the probe's versions (refused: reported, not a failure)
  CrossAccount  s3:GetBucketLocation, s3:GetEncryptionConfiguration (adopted bucket),
                iam:GetRole, iam:GetPolicy, iam:GetPolicyVersion

Alibaba Cloud (provider: alibaba; Alibaba's default chain: ALIBABA_CLOUD_ACCESS_KEY_ID and
_SECRET, else RRSA's ALIBABA_CLOUD_ROLE_ARN, _OIDC_PROVIDER_ARN, _OIDC_TOKEN_FILE), the
operator's RAM policy grants all of them:
  RRSA          ram:GetRole; a token with audience sts.aliyuncs.com, AssumeRoleWithOIDC (the
                token is the credential) and the probe through OSS as the role
  CrossAccount  oss:GetBucketInfo, ram:GetRole, ram:GetPolicy";

const VALIDATE_AFTER_HELP: &str = "\
Exit codes:
  0  every check passed (Validated: True)
  1  not validated: a check failed (Validated: False, with its reason), or validation could
     not run (Kubernetes or AWS unreachable or refusing your credentials, no such context,
     the integration missing or not yet reconciled)
  2  usage error: an unknown flag, a missing argument, an integration not given as
     NAMESPACE/NAME (nothing is contacted)";

/// A BucketIntegration named on the command line.
#[derive(Clone, Debug)]
struct Integration {
    namespace: String,
    name: String,
}

/// `NAMESPACE/NAME`, both non-empty (a usage error otherwise: exit code 2).
fn parse_integration(text: &str) -> Result<Integration, String> {
    match text.split_once('/') {
        Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(Integration {
                namespace: namespace.to_string(),
                name: name.to_string(),
            })
        }
        _ => Err("give the integration as NAMESPACE/NAME".to_string()),
    }
}

/// A client for `context` of the kubeconfig, or for the default configuration (the current
/// context, or in-cluster) when none is given.
async fn kube_client(context: Option<String>) -> Result<kube::Client, String> {
    let config = match context {
        Some(context) => {
            let options = kube::config::KubeConfigOptions {
                context: Some(context.clone()),
                ..Default::default()
            };
            kube::Config::from_kubeconfig(&options)
                .await
                .map_err(|e| format!("cannot use kubeconfig context {context:?}: {e}"))?
        }
        None => kube::Config::infer().await.map_err(|e| e.to_string())?,
    };
    kube::Client::try_from(config).map_err(|e| e.to_string())
}

/// Worker threads of `bucketwire run`.
const RUN_WORKER_THREADS: usize = 2;

/// glibc gives each thread that contends for the allocator an arena of its own (up to eight per
/// core), and what one arena frees the others do not reuse: in the scale bench those arenas grew
/// while the number of integrations stood still. One arena is enough for threads that mostly
/// wait on the network (issue 18; docs/benchmarks.md has the measurement). Must run
/// before the runtime starts its threads. An arena count given in the environment
/// (`GLIBC_TUNABLES=glibc.malloc.arena_max=N`) is left as it is.
#[allow(unsafe_code)] // the crate's one exception (Cargo.toml's lints)
fn one_malloc_arena() {
    let chosen = std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("malloc.arena_max"));
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if !chosen {
        // SAFETY: an FFI call with two integers and no pointers; mallopt takes the allocator's
        // own lock, and runs here before the runtime's threads exist.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = chosen;
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => match bucketwire::crd::crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("bucketwire: cannot render the CRD: {err}");
                ExitCode::FAILURE
            }
        },
        Command::Describe { integration, context } => match tokio::runtime::Runtime::new() {
            Ok(runtime) => runtime.block_on(describe(&integration, context)),
            Err(err) => {
                eprintln!("bucketwire: cannot start the runtime: {err}");
                ExitCode::FAILURE
            }
        },
        Command::Validate {
            integration,
            context,
            aws_endpoint_url,
            alibaba_endpoint_url,
        } => {
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(err) => {
                    eprintln!("bucketwire: cannot start the runtime: {err}");
                    return ExitCode::FAILURE;
                }
            };
            runtime.block_on(validate(
                &integration,
                context,
                aws_endpoint_url,
                alibaba_endpoint_url,
            ))
        }
        Command::Run(settings) => {
            init_logging(settings.log_format);
            one_malloc_arena();
            // The operator waits on the network almost all the time: two worker threads are
            // plenty, and (unlike one per core, tokio's default) keep memory flat on big nodes.
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(RUN_WORKER_THREADS)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(err) => {
                    eprintln!("bucketwire: cannot start the runtime: {err}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(bucketwire::controller::run(*settings)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    tracing::error!("{err}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,bucketwire=info"));
    // Colours only on a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn validate(
    integration: &Integration,
    context: Option<String>,
    aws_endpoint: Option<String>,
    alibaba_endpoint: Option<String>,
) -> ExitCode {
    use bucketwire::provider::alibaba::{Alibaba, Credentials};
    let Integration { namespace, name } = integration;
    let client = match kube_client(context).await {
        Ok(c) => c,
        Err(err) => {
            eprintln!("bucketwire: cannot reach Kubernetes: {err}");
            return ExitCode::FAILURE;
        }
    };
    let validated = match bucketwire::validate::read_integration(&client, namespace, name).await {
        Err(message) => Err(message),
        Ok(bi) if bi.spec.provider == bucketwire::api::Provider::Alibaba => {
            match Alibaba::new(alibaba_endpoint.as_deref(), Credentials::from_env()) {
                Ok(alibaba) => {
                    bucketwire::provider::alibaba::validate::validate_from_status(&client, &alibaba, &bi)
                        .await
                }
                Err(err) => Err(format!("--alibaba-endpoint-url: {err}")),
            }
        }
        Ok(bi) => {
            let aws = bucketwire::aws::Aws::load(
                aws_endpoint,
                bucketwire::aws::DEFAULT_IAM_REQUESTS_PER_SECOND,
                bucketwire::metrics::Metrics::new(),
            )
            .await;
            bucketwire::validate::validate_from_status(&client, &aws, &bi).await
        }
    };
    let (target, report) = match validated {
        Ok(r) => r,
        Err(message) => {
            eprintln!("bucketwire: {message}");
            return ExitCode::FAILURE;
        }
    };
    println!("Validating {namespace}/{name} as {}", target.subject());
    for check in &report.checks {
        println!(
            "  {:<4} {:<12} {}",
            if check.passed { "ok" } else { "FAIL" },
            check.name,
            check.detail
        );
    }
    match &report.failure {
        None => {
            println!("Validated: True ({})", target.summary(&report));
            ExitCode::SUCCESS
        }
        Some(err) => {
            println!("Validated: False, {}: {err}", err.reason());
            ExitCode::FAILURE
        }
    }
}

async fn describe(integration: &Integration, context: Option<String>) -> ExitCode {
    use bucketwire::api::{BucketIntegration, IdentityMode};
    use kube::api::Api;

    let Integration { namespace, name } = integration;
    let bi = match kube_client(context).await {
        Ok(client) => {
            Api::<BucketIntegration>::namespaced(client, namespace)
                .get(name)
                .await
        }
        Err(err) => {
            eprintln!("bucketwire: cannot reach Kubernetes: {err}");
            return ExitCode::FAILURE;
        }
    };
    let bi = match bi {
        Ok(bi) => bi,
        Err(err) => {
            eprintln!("bucketwire: cannot read BucketIntegration {namespace}/{name}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let status = bi.status.clone().unwrap_or_default();
    let show = |v: Option<String>| v.unwrap_or_else(|| "(not yet)".into());
    let bucket = status.bucket.clone().unwrap_or_default();
    println!("Integration:      {namespace}/{name}");
    println!("Integration ID:   {}", show(status.integration_id.clone()));
    println!(
        "Mode:             {}",
        match bi.spec.identity.mode {
            IdentityMode::Irsa => "IRSA",
            IdentityMode::PodIdentity => "PodIdentity (EKS Pod Identity)",
            IdentityMode::Rrsa => "RRSA (RAM Roles for Service Accounts, ACK)",
            IdentityMode::CrossAccount => "CrossAccount",
        }
    );
    println!(
        "Cloud:            {}",
        match bi.spec.provider {
            bucketwire::api::Provider::Aws => "AWS (S3, IAM)",
            bucketwire::api::Provider::Alibaba => "Alibaba Cloud (OSS, RAM)",
        }
    );
    if bi.spec.identity.mode == IdentityMode::PodIdentity {
        println!("Milvus version:   2.6 or later (earlier Milvus cannot read Pod Identity credentials)");
        println!(
            "Association:      {}",
            show(status.pod_identity_association_arn.clone())
        );
    }
    println!("Bucket:           {}", show(bucket.name.clone()));
    println!("Region:           {}", bi.spec.region);
    println!("Role ARN:         {}", show(status.role_arn.clone()));
    if bi.spec.identity.mode == IdentityMode::CrossAccount {
        println!("External ID:      {}", show(status.external_id.clone()));
        println!("Trusted account:  {}", show(status.trusted_account_id.clone()));
    } else {
        println!("ServiceAccount:   {}", show(status.service_account.clone()));
        println!("Values ConfigMap: {}", show(status.values_config_map.clone()));
        if let Some(target) = &bi.spec.milvus.milvus_ref {
            println!(
                "Milvus object:    {namespace}/{} (milvus.io/v1beta1; wired: {})",
                target.name,
                show(status.milvus_object.clone())
            );
        }
    }
    println!("Policy ARN:       {}", show(status.policy_arn.clone()));
    for c in &status.conditions {
        println!("  {:<20} {:<8} {:<16} {}", c.type_, c.status, c.reason, c.message);
    }
    ExitCode::SUCCESS
}
