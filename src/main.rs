use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    }
}
