//! The response dialects the stand-in can speak, switchable at run time.

use serde::{Deserialize, Serialize};

/// How SELECT rows are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RowShape {
    /// `{"data": [{"col": value, ...}]}`: the default over HTTP.
    Objects,
    /// `{"data": [[value, ...]]}`: what `row: "array"` asks for.
    Arrays,
}

/// How the result of a statement without result columns (INSERT, UPDATE,
/// DELETE, DDL, COMMIT...) is written. Upstream this is unconfirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteShape {
    /// `{"data": {"lastID", "changes", "totalChanges", "rowId"}}`.
    Object,
    /// A one-row result with columns TYPE, INDEX, ROWID, CHANGES,
    /// TOTAL_CHANGES, FINALIZED (in the configured row shape).
    Row,
    /// `{"data": null, "metadata": {...}}`.
    Null,
    /// `{"metadata": {...}}`: no `data` at all.
    Missing,
    /// `{}`.
    Empty,
}

/// How errors are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorFormat {
    /// `{"error": {"status", "title", "detail", "errorCode", "offsetCode", "externalErrorCode"}}`.
    Old,
    /// `{"errors": [{"status", "title", "detail", "meta": {"errorCode", "externalErrorCode", "offsetCode"}}]}`.
    New,
}

/// The settings that `POST /__standin/config` may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Dialect {
    pub rows: RowShape,
    pub write_shape: WriteShape,
    pub errors: ErrorFormat,
    /// Added before answering every SQL request (for benchmarks).
    pub latency_ms: u64,
    /// Paused when a transaction ends in the middle of a request, before the
    /// request's next statement (for tests). SQLite Cloud runs a batch's
    /// statements one after another, so other requests may write between
    /// `COMMIT` and a trailing read; this widens that gap on purpose.
    pub commit_gap_ms: u64,
}

/// A partial update of [`Dialect`]; absent fields stay as they are.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DialectUpdate {
    pub rows: Option<RowShape>,
    #[serde(alias = "write-shape")]
    pub write_shape: Option<WriteShape>,
    pub errors: Option<ErrorFormat>,
    pub latency_ms: Option<u64>,
    pub commit_gap_ms: Option<u64>,
}

impl Dialect {
    pub fn apply(&mut self, update: DialectUpdate) {
        if let Some(rows) = update.rows {
            self.rows = rows;
        }
        if let Some(write_shape) = update.write_shape {
            self.write_shape = write_shape;
        }
        if let Some(errors) = update.errors {
            self.errors = errors;
        }
        if let Some(latency_ms) = update.latency_ms {
            self.latency_ms = latency_ms;
        }
        if let Some(commit_gap_ms) = update.commit_gap_ms {
            self.commit_gap_ms = commit_gap_ms;
        }
    }
}
