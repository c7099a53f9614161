//! Guest stdout and stderr, turned into one log line per line written (and,
//! with telemetry on, into an OTLP log record and the audit-event counter).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

use crate::telemetry::InstanceTelemetry;

/// Longest line kept whole; longer output is split so a guest cannot make the
/// host buffer without bound.
const MAX_LINE: usize = 16 * 1024;

/// Which guest stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

type Sink = dyn Fn(&str, Stream, &str) + Send + Sync;

/// Where guest lines go (the runner's log by default; tests capture them).
#[derive(Clone)]
pub struct GuestLog(Arc<Sink>);

impl GuestLog {
    pub fn new(sink: impl Fn(&str, Stream, &str) + Send + Sync + 'static) -> GuestLog {
        GuestLog(Arc::new(sink))
    }

    /// Writes each line as a `tracing` event prefixed with the component id.
    pub fn tracing() -> GuestLog {
        GuestLog::new(|component, stream, line| {
            tracing::info!(
                target: "latch::guest",
                component_id = component,
                stream = stream.as_str(),
                "[{component}] {line}"
            );
        })
    }

    fn emit(&self, component: &str, stream: Stream, line: &[u8], telemetry: &InstanceTelemetry) {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches('\r');
        (self.0)(component, stream, line);
        telemetry.guest_line(stream, line);
    }
}

impl std::fmt::Debug for GuestLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GuestLog")
    }
}

/// A WASI output stream that splits what the guest writes into lines.
#[derive(Clone)]
pub struct LineWriter {
    inner: Arc<LineBuffer>,
}

struct LineBuffer {
    component: Arc<str>,
    stream: Stream,
    log: GuestLog,
    telemetry: InstanceTelemetry,
    pending: Mutex<Vec<u8>>,
}

impl LineWriter {
    pub fn new(component: Arc<str>, stream: Stream, log: GuestLog) -> LineWriter {
        Self::with_telemetry(component, stream, log, InstanceTelemetry::default())
    }

    /// A writer whose lines also reach the request's telemetry.
    pub fn with_telemetry(
        component: Arc<str>,
        stream: Stream,
        log: GuestLog,
        telemetry: InstanceTelemetry,
    ) -> LineWriter {
        LineWriter {
            inner: Arc::new(LineBuffer {
                component,
                stream,
                log,
                telemetry,
                pending: Mutex::new(Vec::new()),
            }),
        }
    }

    fn write_bytes(&self, bytes: &[u8]) {
        let inner = &self.inner;
        let Ok(mut pending) = inner.pending.lock() else {
            return;
        };
        pending.extend_from_slice(bytes);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            inner.log.emit(
                &inner.component,
                inner.stream,
                &pending[..end],
                &inner.telemetry,
            );
            pending.drain(..=end);
        }
        while pending.len() > MAX_LINE {
            inner.log.emit(
                &inner.component,
                inner.stream,
                &pending[..MAX_LINE],
                &inner.telemetry,
            );
            pending.drain(..MAX_LINE);
        }
    }
}

impl Drop for LineBuffer {
    // What is left without a final newline is still a line.
    fn drop(&mut self) {
        if let Ok(pending) = self.pending.get_mut()
            && !pending.is_empty()
        {
            self.log
                .emit(&self.component, self.stream, pending, &self.telemetry);
        }
    }
}

impl IsTerminal for LineWriter {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LineWriter {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(MAX_LINE)
    }
}

#[async_trait::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn output_is_split_into_lines_and_flushed_on_drop() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let seen = lines.clone();
        let log = GuestLog::new(move |c, s, l| {
            seen.lock().unwrap().push(format!("{c}/{}/{l}", s.as_str()));
        });
        let writer = LineWriter::new(Arc::from("comp"), Stream::Stdout, log);
        writer.write_bytes(b"one\ntw");
        writer.write_bytes(b"o\r\nthree");
        drop(writer);
        assert_eq!(
            *lines.lock().unwrap(),
            vec!["comp/stdout/one", "comp/stdout/two", "comp/stdout/three"]
        );
    }
}
