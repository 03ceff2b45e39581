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
    /// Prove an integration's wiring by acting as its ServiceAccount; exit code 0 or 1.
    Validate {
        /// NAMESPACE/NAME of the BucketIntegration.
        integration: String,
        /// Endpoint for every AWS service (emulators).
        #[arg(long, env = "BUCKETWIRE_AWS_ENDPOINT_URL")]
        aws_endpoint_url: Option<String>,
    },
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
            let runtime = match tokio::runtime::Runtime::new() {
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
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
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
    let aws = bucketwire::aws::Aws::load(endpoint, bucketwire::metrics::Metrics::new()).await;
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
            println!("Validated: True ({})", report.summary(&target));
            ExitCode::SUCCESS
        }
        Some(err) => {
            println!("Validated: False, {}: {err}", err.reason());
            ExitCode::FAILURE
        }
    }
}
