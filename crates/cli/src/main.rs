//! `latch`: runs a Spin application's HTTP components on wasmtime.

mod admin;
mod build;
mod check;
mod database;
mod migrate;
mod up;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "latch",
    version,
    about = "Run a Spin application's HTTP components without Spin"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the manifest's HTTP trigger.
    Up(up::UpArgs),
    /// Run each component's build command, as `spin build` does.
    Build(build::BuildArgs),
    /// Validate the manifest and every built component against the runner and the wit/ world.
    Check(check::CheckArgs),
    /// Apply the ordered SQL files of migrations/ to a database (embedded or SQLite Cloud).
    Migrate(migrate::MigrateArgs),
    /// Grant or revoke the `admin` role of an account (embedded or SQLite Cloud).
    Admin(admin::AdminArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Up(args) => up::run(args),
        Command::Build(args) => build::run(&args),
        Command::Check(args) => check::run(&args),
        Command::Migrate(args) => migrate::run(&args),
        Command::Admin(args) => admin::run(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,wasmtime=warn,cranelift=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
