//! The store of the configured backend.

use latch_store::cloud::SqliteCloud;
use latch_store::embedded::Embedded;
use latch_store::{Database, Rows, Statement, Store, StoreError};

use crate::ApiError;
use crate::config::{self, DatabaseSettings};

/// The database this deployment uses.
pub enum Backend {
    Embedded(Embedded),
    Cloud(SqliteCloud),
}

impl Database for Backend {
    async fn query(&self, statement: &Statement) -> Result<Rows, StoreError> {
        match self {
            Backend::Embedded(db) => db.query(statement).await,
            Backend::Cloud(db) => db.query(statement).await,
        }
    }

    async fn batch(
        &self,
        writes: &[Statement],
        then: Option<&Statement>,
    ) -> Result<Rows, StoreError> {
        match self {
            Backend::Embedded(db) => db.batch(writes, then).await,
            Backend::Cloud(db) => db.batch(writes, then).await,
        }
    }

    fn backend(&self) -> &'static str {
        match self {
            Backend::Embedded(db) => db.backend(),
            Backend::Cloud(db) => db.backend(),
        }
    }
}

/// Opens the store of the configured backend.
pub fn open() -> Result<Store<Backend>, ApiError> {
    let backend = match config::database()? {
        DatabaseSettings::Embedded => Backend::Embedded(Embedded::open("default")?),
        DatabaseSettings::Cloud { url, timeout } => Backend::Cloud(SqliteCloud::new(url, timeout)),
    };
    Ok(Store::new(backend))
}
