//! A local stand-in for SQLite Cloud's Weblite HTTP API.
//!
//! It exists to test Latch's SQLite Cloud client against every response
//! dialect and failure the real gateway may produce, and to let a developer
//! try that backend on a laptop. It is not offered as a database.
//!
//! ```text
//! sqlitecloud-standin --listen 127.0.0.1:0 --data-dir DIR --api-key KEY \
//!     [--rows objects|arrays] [--write-shape object|row|null|missing|empty] [--errors old|new]
//! ```
//! prints `listening on http://127.0.0.1:PORT` once bound, logs to stderr
//! (`RUST_LOG`), and exits 0 on SIGINT/SIGTERM.
//!
//! Weblite endpoints (Bearer API key, or the connection string as bearer):
//! `POST /v2/weblite/sql` `{sql, database, bind?, row?}`,
//! `GET /v2/weblite/sql?sql=&database=[&row=array]`, `GET /v2/health` (no auth),
//! `GET /v2/weblite/databases`, `POST /v2/weblite/<db>` (empty body: create),
//! `DELETE /v2/weblite/<db>`.
//!
//! Control API (loopback peers only, no auth):
//! `POST /__standin/faults` (a fault or a list), `GET`/`DELETE /__standin/faults`,
//! `GET /__standin/stats`, `POST /__standin/stats/reset`,
//! `GET`/`POST /__standin/config` `{rows?, write_shape?, errors?, latency_ms?,
//! commit_gap_ms?}`.
//! A fault: `{"kind": "status"|"paused"|"malformed"|"cut"|"latency", "status"?,
//! "latency_ms"?, "skip": 0, "times": 1, "when"?: "before"|"after", "body"?}`
//! applies to SQL requests skip+1 ..= skip+times counted from when it was added.

mod config;
mod engine;
mod faults;
mod render;
mod server;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use tokio::net::TcpListener;

use crate::config::{Dialect, ErrorFormat, RowShape, WriteShape};
use crate::server::State;

/// How long open connections may finish after SIGINT/SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

#[derive(Debug, Parser)]
#[command(
    version,
    about = "A local stand-in for SQLite Cloud's Weblite HTTP API (for tests)"
)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Directory holding one `<database>.sqlite` file per database.
    #[arg(long)]
    data_dir: PathBuf,
    /// The API key clients must send as `Authorization: Bearer <key>`.
    #[arg(long, env = "STANDIN_API_KEY", hide_env_values = true)]
    api_key: String,
    /// How SELECT rows are written.
    #[arg(long, value_enum, default_value = "objects")]
    rows: RowShape,
    /// How results of statements without result columns are written.
    #[arg(long, value_enum, default_value = "object")]
    write_shape: WriteShape,
    /// Error body format.
    #[arg(long, value_enum, default_value = "old")]
    errors: ErrorFormat,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    if args.api_key.is_empty() {
        anyhow::bail!("--api-key must not be empty");
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let address = listener.local_addr().context("reading the bound address")?;
    if !address.ip().is_loopback() {
        tracing::warn!(%address, "listening beyond loopback: the control API still answers loopback peers only");
    }
    let state = Arc::new(State::new(
        args.data_dir,
        args.api_key,
        Dialect {
            rows: args.rows,
            write_shape: args.write_shape,
            errors: args.errors,
            latency_ms: 0,
            commit_gap_ms: 0,
        },
    ));

    // Tests wait for exactly this line.
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on http://{address}").context("writing to stdout")?;
        stdout.flush().context("flushing stdout")?;
    }
    tracing::info!(%address, "stand-in ready");

    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        // Usually out of file descriptors: back off instead of spinning.
                        tracing::warn!(%err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                server::spawn_connection(&graceful, stream, peer, Arc::clone(&state));
            }
            signal = &mut shutdown => {
                signal?;
                break;
            }
        }
    }
    drop(listener);
    tracing::info!("shutting down");
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the grace period; closing them");
    }
    Ok(())
}

async fn shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    Ok(())
}
