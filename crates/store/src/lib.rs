//! Latch's data access, one interface for every route.
//!
//! [`Store`] holds the queries (one method per thing a route needs, each a
//! counted number of database round trips); a [`Database`] runs them. Two
//! databases implement it: [`embedded::Embedded`] (Spin's `spin:sqlite`, a
//! file per pod) and [`cloud::SqliteCloud`] (SQLite Cloud's HTTP API through
//! Spin's outbound HTTP). Writes that belong together go to the database as
//! one atomic batch, so no failure can leave half of them applied.

#![forbid(unsafe_code)]

pub mod cloud;
pub mod embedded;
mod queries;
mod rows;

pub use latch_weblite::{Statement, Value};
pub use queries::*;
pub use rows::{Row, Rows};

include!(concat!(env!("OUT_DIR"), "/schema.rs"));

/// Why a database call failed, in the terms the API answers with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule refused the write (the API answers 409).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database cannot be reached or did not answer properly (503).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database refused a statement: a defect in this code (500).
    #[error("query failed: {0}")]
    Query(String),
    /// A row did not have the shape the code expects (500).
    #[error("unexpected result: {0}")]
    Shape(String),
    /// The database settings are unusable (503 until fixed).
    #[error("database misconfigured: {0}")]
    Misconfigured(String),
}

impl StoreError {
    /// Whether the service should answer 503 (retry later) for this error.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_) | StoreError::Misconfigured(_)
        )
    }

    /// A short, stable name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Conflict(_) => "conflict",
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Query(_) => "query",
            StoreError::Shape(_) => "shape",
            StoreError::Misconfigured(_) => "misconfigured",
        }
    }
}

/// Something that runs SQL: one call is one database round trip.
pub trait Database {
    /// Runs one statement and returns its rows.
    fn query(&self, statement: &Statement) -> impl Future<Output = Result<Rows, StoreError>>;

    /// Runs `writes` atomically (all or none), then `then` (a read, typically
    /// reading back what the writes did), in one round trip.
    fn batch(
        &self,
        writes: &[Statement],
        then: Option<&Statement>,
    ) -> impl Future<Output = Result<Rows, StoreError>>;

    /// `"sqlite"` or `"sqlitecloud"`, for logs.
    fn backend(&self) -> &'static str;
}

/// The queries of Latch over a [`Database`], counting round trips.
pub struct Store<D> {
    db: D,
    round_trips: std::cell::Cell<u32>,
}

impl<D: Database> Store<D> {
    pub fn new(db: D) -> Store<D> {
        Store {
            db,
            round_trips: std::cell::Cell::new(0),
        }
    }

    /// Database round trips made so far by this store (one request's worth).
    pub fn round_trips(&self) -> u32 {
        self.round_trips.get()
    }

    /// `"sqlite"` or `"sqlitecloud"`.
    pub fn backend(&self) -> &'static str {
        self.db.backend()
    }

    async fn query(&self, statement: &Statement) -> Result<Rows, StoreError> {
        self.round_trips.set(self.round_trips.get() + 1);
        self.db.query(statement).await
    }

    async fn batch(
        &self,
        writes: &[Statement],
        then: Option<&Statement>,
    ) -> Result<Rows, StoreError> {
        self.round_trips.set(self.round_trips.get() + 1);
        self.db.batch(writes, then).await
    }
}

/// Builds a statement from SQL and parameters.
pub(crate) fn stmt(sql: &str, params: Vec<Value>) -> Statement {
    Statement::with_params(sql, params)
}
