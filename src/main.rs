//! The `fctrace` command line: parses flags and runs the daemon.

use anyhow::Context;
use clap::{Parser, Subcommand};
use fctrace::config::{LogFormat, ServeArgs, Settings};

#[derive(Parser)]
#[command(
    name = "fctrace",
    version,
    about = "Trace collector for self-hosted serverless functions"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Serve(ServeArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(args)) => args,
        None => cli.serve,
    };
    let settings = Settings::resolve(&args).context("invalid configuration")?;
    fctrace::telemetry::init_logs(settings.log_format == LogFormat::Json);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("fctrace")
        .build()
        .context("start async runtime")?;
    runtime.block_on(fctrace::server::serve(settings))?;
    Ok(())
}
