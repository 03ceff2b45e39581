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
        integration: String,
    },
    /// Prove an integration's wiring by acting as its ServiceAccount; exit code 0 or 1.
    Validate {
        /// NAMESPACE/NAME of the BucketIntegration.
        integration: String,
        /// Endpoint for every AWS service (emulators).
        #[arg(long, env = "BUCKETWIRE_AWS_ENDPOINT_URL")]
        aws_endpoint_url: Option<String>,
    },
}

/// Worker threads of `bucketwire run`.
const RUN_WORKER_THREADS: usize = 2;

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
        Command::Describe { integration } => match tokio::runtime::Runtime::new() {
            Ok(runtime) => runtime.block_on(describe(&integration)),
            Err(err) => {
                eprintln!("bucketwire: cannot start the runtime: {err}");
                ExitCode::FAILURE
            }
        },
        Command::Validate {
            integration,
            aws_endpoint_url,
        } => {
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(err) => {
                    eprintln!("bucketwire: cannot start the runtime: {err}");
                    return ExitCode::FAILURE;
                }
            };
            runtime.block_on(validate(&integration, aws_endpoint_url))
        }
        Command::Run(settings) => {
            init_logging(settings.log_format);
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

async fn validate(integration: &str, endpoint: Option<String>) -> ExitCode {
    let Some((namespace, name)) = integration.split_once('/') else {
        eprintln!("bucketwire: give the integration as NAMESPACE/NAME");
        return ExitCode::from(2);
    };
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(err) => {
            eprintln!("bucketwire: cannot reach Kubernetes: {err}");
            return ExitCode::FAILURE;
        }
    };
    let aws = bucketwire::aws::Aws::load(
        endpoint,
        bucketwire::aws::DEFAULT_IAM_REQUESTS_PER_SECOND,
        bucketwire::metrics::Metrics::new(),
    )
    .await;
    let (target, report) =
        match bucketwire::validate::validate_from_status(&client, &aws, namespace, name).await {
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

async fn describe(integration: &str) -> ExitCode {
    use bucketwire::api::{BucketIntegration, IdentityMode};
    use kube::api::Api;

    let Some((namespace, name)) = integration.split_once('/') else {
        eprintln!("bucketwire: give the integration as NAMESPACE/NAME");
        return ExitCode::from(2);
    };
    let bi = match kube::Client::try_default().await {
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
            IdentityMode::CrossAccount => "CrossAccount",
        }
    );
    println!("Bucket:           {}", show(bucket.name.clone()));
    println!("Region:           {}", bi.spec.region);
    println!("Role ARN:         {}", show(status.role_arn.clone()));
    if bi.spec.identity.mode == IdentityMode::CrossAccount {
        println!("External ID:      {}", show(status.external_id.clone()));
        println!("Trusted account:  {}", show(status.trusted_account_id.clone()));
    } else {
        println!("ServiceAccount:   {}", show(status.service_account.clone()));
        println!("Values ConfigMap: {}", show(status.values_config_map.clone()));
    }
    println!("Policy ARN:       {}", show(status.policy_arn.clone()));
    for c in &status.conditions {
        println!("  {:<20} {:<8} {:<16} {}", c.type_, c.status, c.reason, c.message);
    }
    ExitCode::SUCCESS
}
