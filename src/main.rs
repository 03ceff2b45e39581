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
