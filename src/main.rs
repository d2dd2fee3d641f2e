//! The `fctrace` command line: parses flags and runs the daemon.

use anyhow::Context;
use clap::{Parser, Subcommand};
use fctrace::config::{LogFormat, ServeArgs, Settings};

// mimalloc: per-thread free lists suit the request tasks that allocate a batch's spans
// on one thread and drop them on another (glibc's malloc spent ~15 % of the daemon's CPU
// under load, see BENCHMARKS.md) and it returns freed memory to the system sooner.
// Built without transparent huge pages (`no_thp`): mimalloc otherwise asks for them on
// its arena, and each 2 MiB page touched by a few small allocations was resident whole
// (12 of an idle daemon's 38 MiB; BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

// Parsed once at start; the size of its variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Serve(ServeArgs),
    /// Drive a running fctrace with realistic load and report what it sustains.
    Bench(fctrace::bench::BenchArgs),
    /// Write spans of the benchmark's shape straight into a stopped daemon's store (to
    /// measure queries, start-up and memory on a large store).
    Load(fctrace::bench::load::LoadArgs),
    /// Count what a stopped daemon's data directory holds: traces, distinct spans and
    /// span chunks, read from the store itself (printed as JSON).
    Check(CheckArgs),
}

#[derive(clap::Args)]
struct CheckArgs {
    /// The daemon's data directory (the one holding `db/`); the daemon must be stopped.
    #[arg(long)]
    data_dir: std::path::PathBuf,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(args)) => args,
        Some(Command::Bench(args)) => return bench(args),
        Some(Command::Check(args)) => return check(args),
        Some(Command::Load(args)) => return load(args),
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

fn bench(args: fctrace::bench::BenchArgs) -> anyhow::Result<()> {
    let json = args.json;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start async runtime")?;
    let report = runtime
        .block_on(fctrace::bench::run(args))
        .map_err(|e| anyhow::anyhow!(e))?;
    fctrace::bench::print(&report);
    if json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

fn check(args: CheckArgs) -> anyhow::Result<()> {
    let db = args.data_dir.join("db");
    anyhow::ensure!(db.is_dir(), "{} holds no store", db.display());
    // Retention without end: compactions this open may run must not drop anything the
    // count is meant to see.
    let opts = fctrace::store::StoreOptions {
        retention: std::time::Duration::MAX,
        ..Default::default()
    };
    let store = fctrace::store::Store::open(&db, &opts).with_context(|| {
        format!(
            "open the store in {} (is the daemon stopped?)",
            db.display()
        )
    })?;
    let census = store.census()?;
    println!("{}", serde_json::to_string(&census)?);
    Ok(())
}

fn load(args: fctrace::bench::load::LoadArgs) -> anyhow::Result<()> {
    let r = fctrace::bench::load::load(&args).map_err(|e| anyhow::anyhow!(e))?;
    println!(
        "{} spans written in {:.1} s ({:.0} spans/s), {:.0} bytes a span on disk",
        r.spans, r.seconds, r.spans_per_second, r.disk_bytes_per_span
    );
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    }
    Ok(())
}
