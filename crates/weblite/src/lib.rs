//! SQLite Cloud's HTTP API ("Weblite") as pure code.
//!
//! This crate builds request bodies and decodes responses; it performs no I/O,
//! so the same code serves the wasm route components (which send requests with
//! Spin's outbound HTTP) and the native CLI (which uses a native client).
//!
//! Several parts of the upstream API are unconfirmed (see
//! `shared/facts/sqlitecloud.md`), so the decoder accepts every documented or
//! observed form, and batches never rely on binds across several statements:
//! their parameters are inlined as injection-proof SQL literals instead.
//!
//! A request is always: `POST {DatabaseUrl::sql_url()}` with the headers
//! `Authorization: {DatabaseUrl::authorization_header()}` and
//! `Content-Type: application/json`, and a body from [`single_request_body`] or
//! [`batch_request_body`]. Feed the answer's status and body to
//! [`decode_response`].

#![forbid(unsafe_code)]

mod error;
mod inline;
mod json;
mod request;
mod response;
mod url;
mod value;

pub use error::{ConstraintKind, WebliteError};
pub use inline::{BuildError, inline_params};
pub use request::{CONTENT_TYPE, SQL_PATH, batch_request_body, batch_sql, single_request_body};
pub use response::{QueryResult, decode_response};
pub use url::{CredentialKind, DatabaseUrl, UrlError};
pub use value::{Statement, Value};
