//! Settings, read from the component's Spin variables when a route needs
//! them. A missing or malformed value makes the route answer 503 and logs
//! which variable (never its value).

use std::time::Duration;

use latch_domain::{Environment, TokenPolicy, config};

use crate::ApiError;

fn misconfigured(reason: String) -> ApiError {
    ApiError::Unavailable {
        reason,
        kind: "misconfigured",
    }
}

/// A variable's value; the component must declare it in spin.toml.
pub fn var(name: &'static str) -> Result<String, ApiError> {
    spin_sdk::variables::get(name)
        .map_err(|e| misconfigured(format!("variable `{name}` is not available: {e}")))
}

fn parse<T>(
    name: &'static str,
    parse: impl FnOnce(&str) -> Result<T, config::ConfigError>,
) -> Result<T, ApiError> {
    let value = var(name)?;
    parse(&value).map_err(|e| misconfigured(e.to_string()))
}

/// `development` or `production`.
pub fn environment() -> Result<Environment, ApiError> {
    parse("environment", |v| Environment::parse("environment", v))
}

/// A `true`/`false` variable.
pub fn flag(name: &'static str) -> Result<bool, ApiError> {
    parse(name, |v| config::parse_bool(name, v))
}

/// A whole number of seconds between `min` and `max`.
pub fn seconds(name: &'static str, min: i64, max: i64) -> Result<i64, ApiError> {
    parse(name, |v| config::parse_bounded(name, v, min, max))
}

/// Issuer, audience and lifetimes of tokens.
pub fn token_policy() -> Result<TokenPolicy, ApiError> {
    let mut policy = TokenPolicy::new(var("token_issuer")?, var("token_audience")?);
    // Components that only verify tokens do not declare the lifetimes.
    if let Ok(value) = spin_sdk::variables::get("access_token_ttl_seconds") {
        policy.access_ttl_secs =
            config::parse_bounded("access_token_ttl_seconds", &value, 1, 86_400)
                .map_err(|e| misconfigured(e.to_string()))?;
    }
    if let Ok(value) = spin_sdk::variables::get("refresh_token_ttl_seconds") {
        policy.refresh_ttl_secs =
            config::parse_bounded("refresh_token_ttl_seconds", &value, 1, 90 * 86_400)
                .map_err(|e| misconfigured(e.to_string()))?;
    }
    Ok(policy)
}

/// Where the data lives.
pub enum DatabaseSettings {
    /// `db_type = sqlite`: Spin's embedded database `default`.
    Embedded,
    /// `db_type = sqlitecloud`: SQLite Cloud over HTTP.
    Cloud {
        url: latch_weblite::DatabaseUrl,
        timeout: Duration,
    },
}

/// The database settings (the seed's `DB_TYPE` and `DATABASE_URL`).
pub fn database() -> Result<DatabaseSettings, ApiError> {
    match var("db_type")?.as_str() {
        "sqlite" => Ok(DatabaseSettings::Embedded),
        "sqlitecloud" => {
            let url = latch_weblite::DatabaseUrl::parse(&var("database_url")?)
                .map_err(|e| misconfigured(format!("variable `database_url`: {e}")))?;
            let millis: u64 = parse("database_timeout_ms", |v| {
                config::parse_bounded("database_timeout_ms", v, 100, 60_000)
            })?;
            Ok(DatabaseSettings::Cloud {
                url,
                timeout: Duration::from_millis(millis),
            })
        }
        _ => Err(misconfigured(
            "variable `db_type` must be `sqlite` or `sqlitecloud`".to_string(),
        )),
    }
}
