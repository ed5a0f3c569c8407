//! The `tenet` binary: parse the command line, start telemetry, run the command.
//!
//! Thin by design: wiring lives in `wiring`, each subcommand in `command`.

mod cli;
mod command;
mod listeners;
mod output;
mod settings;
mod telemetry;
mod wiring;

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    telemetry::init(cli.log_format());
    match command::run(cli).await {
        Ok(code) => code,
        Err(err) => {
            // Operator-facing: the full cause chain, on stderr. Errors carry no PHI.
            output::tell(format!("error: {err:#}"));
            std::process::ExitCode::FAILURE
        }
    }
}
