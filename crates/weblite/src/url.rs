//! The database address: a SQLite Cloud connection string or an HTTPS URL.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The TCP protocol port of SQLite Cloud: a connection string copied from the
/// dashboard carries it, but HTTP is served elsewhere.
const TCP_PROTOCOL_PORT: u16 = 8860;
const HTTPS_PORT: u16 = 443;
const HTTP_PORT: u16 = 80;

/// Why a database URL was refused. Messages never carry the credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error(
        "not a database URL: expected sqlitecloud://HOST/DATABASE?apikey=KEY or https://HOST/DATABASE?apikey=KEY"
    )]
    NotAUrl,
    #[error(
        "unsupported scheme `{scheme}`: use sqlitecloud://, https://, or http:// for a loopback host"
    )]
    UnsupportedScheme { scheme: String },
    #[error(
        "user/password connection strings are not supported over HTTP: create an API key in the SQLite Cloud dashboard and use ?apikey=KEY"
    )]
    UserPassword,
    #[error("the database URL has no host")]
    MissingHost,
    #[error("invalid host `{host}` in the database URL")]
    InvalidHost { host: String },
    #[error("invalid port `{port}` in the database URL")]
    InvalidPort { port: String },
    #[error(
        "plain http:// is only allowed for loopback hosts (127.0.0.0/8, ::1, localhost), not `{host}`: use https://"
    )]
    PlainHttpNotLoopback { host: String },
    #[error("the database URL names no database: add /DATABASE after the host")]
    MissingDatabase,
    #[error("invalid database name in the database URL: {reason}")]
    InvalidDatabase { reason: &'static str },
    #[error("invalid percent-encoding in the {part} of the database URL")]
    InvalidPercentEncoding { part: &'static str },
    #[error("the database URL carries no credential: add ?apikey=KEY or ?token=TOKEN")]
    MissingCredential,
    #[error("the database URL must carry exactly one of apikey= and token=")]
    ConflictingCredentials,
    #[error("the database URL repeats the option `{name}`")]
    DuplicateOption { name: String },
    #[error(
        "the credential in the database URL is empty or holds characters not allowed in an HTTP header"
    )]
    InvalidCredential,
    #[error("the database URL must not have a #fragment")]
    Fragment,
}

/// What kind of bearer credential the URL carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    ApiKey,
    AccessToken,
}

impl CredentialKind {
    fn option_name(self) -> &'static str {
        match self {
            CredentialKind::ApiKey => "apikey",
            CredentialKind::AccessToken => "token",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Https,
    Http,
}

/// A parsed database address. The credential is kept out of `Debug` and
/// `Display`; use [`DatabaseUrl::redacted`] in logs.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    scheme: Scheme,
    /// As it appears in the origin: lowercase, IPv6 in brackets.
    host: String,
    /// `None` for the scheme's default port.
    port: Option<u16>,
    database: String,
    credential_kind: CredentialKind,
    credential: String,
}

impl DatabaseUrl {
    /// Parses `sqlitecloud://host[:port]/database?apikey=KEY` (or `?token=TOKEN`),
    /// `https://host[:port]/database?apikey=KEY`, or `http://...` for a loopback
    /// host. A `sqlitecloud://` string is served over `https://`; port 8860 (the
    /// TCP protocol's) or no port means 443, any other port is kept. Options
    /// other than the credential (e.g. `timeout=`) are ignored: they configure
    /// the TCP drivers.
    pub fn parse(input: &str) -> Result<DatabaseUrl, UrlError> {
        let input = input.trim();
        let (scheme_text, rest) = input.split_once("://").ok_or(UrlError::NotAUrl)?;
        let scheme_lower = scheme_text.to_ascii_lowercase();
        let (scheme, is_connection_string) = match scheme_lower.as_str() {
            "sqlitecloud" => (Scheme::Https, true),
            "https" => (Scheme::Https, false),
            "http" => (Scheme::Http, false),
            _ => {
                // The scheme is not secret, but cap it in case of a pasted blob.
                let scheme: String = scheme_text.chars().take(32).collect();
                return Err(UrlError::UnsupportedScheme { scheme });
            }
        };
        if rest.contains('#') {
            return Err(UrlError::Fragment);
        }
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, after_authority) = rest.split_at(authority_end);
        if authority.contains('@') {
            return Err(UrlError::UserPassword);
        }
        let (host, port) = parse_authority(authority)?;
        let (path, query) = match after_authority.split_once('?') {
            Some((path, query)) => (path, query),
            None => (after_authority, ""),
        };
        let credential = parse_query(query)?;
        let database = parse_database(path)?;

        if scheme == Scheme::Http && !is_loopback(&host) {
            return Err(UrlError::PlainHttpNotLoopback { host });
        }
        let default_port = match scheme {
            Scheme::Https => HTTPS_PORT,
            Scheme::Http => HTTP_PORT,
        };
        let port = match port {
            None => None,
            Some(p) if p == default_port => None,
            Some(TCP_PROTOCOL_PORT) if scheme == Scheme::Https || is_connection_string => None,
            Some(p) => Some(p),
        };
        let (credential_kind, credential) = credential;
        Ok(DatabaseUrl {
            scheme,
            host,
            port,
            database,
            credential_kind,
            credential,
        })
    }

    /// `https://host[:port]` (or `http://` for loopback): what Spin's
    /// `allowed_outbound_hosts` must list.
    pub fn origin(&self) -> String {
        let scheme = match self.scheme {
            Scheme::Https => "https",
            Scheme::Http => "http",
        };
        match self.port {
            Some(port) => format!("{scheme}://{}:{port}", self.host),
            None => format!("{scheme}://{}", self.host),
        }
    }

    /// Where SQL is posted: the origin followed by `/v2/weblite/sql`.
    pub fn sql_url(&self) -> String {
        format!("{}{}", self.origin(), crate::request::SQL_PATH)
    }

    /// The database name, percent-decoded.
    pub fn database(&self) -> &str {
        &self.database
    }

    pub fn credential_kind(&self) -> CredentialKind {
        self.credential_kind
    }

    /// The value of the `Authorization` header: `Bearer <credential>`.
    pub fn authorization_header(&self) -> String {
        format!("Bearer {}", self.credential)
    }

    /// The URL with the credential replaced, for logs and messages.
    pub fn redacted(&self) -> String {
        format!(
            "{}/{}?{}=REDACTED",
            self.origin(),
            self.database,
            self.credential_kind.option_name()
        )
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseUrl")
            .field("origin", &self.origin())
            .field("database", &self.database)
            .field("credential_kind", &self.credential_kind)
            .field("credential", &"REDACTED")
            .finish()
    }
}

fn parse_authority(authority: &str) -> Result<(String, Option<u16>), UrlError> {
    if authority.is_empty() {
        return Err(UrlError::MissingHost);
    }
    let (host, port_text) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (inside, after) = bracketed
            .split_once(']')
            .ok_or_else(|| invalid_host(authority))?;
        if inside.parse::<Ipv6Addr>().is_err() {
            return Err(invalid_host(authority));
        }
        let port_text = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| invalid_host(authority))?,
            ),
        };
        (format!("[{}]", inside.to_ascii_lowercase()), port_text)
    } else {
        let (host, port_text) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        let valid = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
            && !host.starts_with(['.', '-']);
        if host.is_empty() {
            return Err(UrlError::MissingHost);
        }
        if !valid {
            return Err(invalid_host(host));
        }
        (host.to_ascii_lowercase(), port_text)
    };
    let port = match port_text {
        None => None,
        Some(text) => {
            let port = text
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0 && text.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| UrlError::InvalidPort {
                    port: text.chars().take(16).collect(),
                })?;
            Some(port)
        }
    };
    Ok((host, port))
}

fn invalid_host(host: &str) -> UrlError {
    UrlError::InvalidHost {
        host: host.chars().take(64).collect(),
    }
}

fn is_loopback(host: &str) -> bool {
    if host == "localhost" {
        return true;
    }
    if let Some(inside) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inside.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback());
    }
    host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

fn parse_database(path: &str) -> Result<String, UrlError> {
    let raw = path.strip_prefix('/').unwrap_or(path);
    let raw = raw.strip_suffix('/').unwrap_or(raw);
    if raw.is_empty() {
        return Err(UrlError::MissingDatabase);
    }
    if raw.contains('/') {
        return Err(UrlError::InvalidDatabase {
            reason: "the path must be a single segment, /DATABASE",
        });
    }
    let name = percent_decode(raw).ok_or(UrlError::InvalidPercentEncoding { part: "path" })?;
    if name.is_empty() {
        return Err(UrlError::MissingDatabase);
    }
    if name.chars().any(char::is_control) {
        return Err(UrlError::InvalidDatabase {
            reason: "it holds control characters",
        });
    }
    Ok(name)
}

fn parse_query(query: &str) -> Result<(CredentialKind, String), UrlError> {
    let mut api_key: Option<String> = None;
    let mut token: Option<String> = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = name.to_ascii_lowercase();
        let slot = match name.as_str() {
            "apikey" => &mut api_key,
            "token" => &mut token,
            "user" | "username" | "password" => return Err(UrlError::UserPassword),
            _ => continue,
        };
        if slot.is_some() {
            return Err(UrlError::DuplicateOption { name });
        }
        let value =
            percent_decode(value).ok_or(UrlError::InvalidPercentEncoding { part: "query" })?;
        // The credential goes into a header: refuse anything that could break it.
        if value.is_empty() || !value.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(UrlError::InvalidCredential);
        }
        *slot = Some(value);
    }
    match (api_key, token) {
        (Some(key), None) => Ok((CredentialKind::ApiKey, key)),
        (None, Some(token)) => Ok((CredentialKind::AccessToken, token)),
        (None, None) => Err(UrlError::MissingCredential),
        (Some(_), Some(_)) => Err(UrlError::ConflictingCredentials),
    }
}

/// Decodes `%XX` escapes; `+` stays a plus (tokens may hold it). `None` for a
/// broken escape or a result that is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn parse(s: &str) -> DatabaseUrl {
        DatabaseUrl::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn connection_string_maps_to_https_443() {
        let url = parse("sqlitecloud://abc.g5.sqlite.cloud:8860/auth.sqlite?apikey=KEY123");
        assert_eq!(url.origin(), "https://abc.g5.sqlite.cloud");
        assert_eq!(url.sql_url(), "https://abc.g5.sqlite.cloud/v2/weblite/sql");
        assert_eq!(url.database(), "auth.sqlite");
        assert_eq!(url.authorization_header(), "Bearer KEY123");
        assert_eq!(url.credential_kind(), CredentialKind::ApiKey);

        let url = parse("sqlitecloud://abc.g5.sqlite.cloud/auth?apikey=K");
        assert_eq!(url.origin(), "https://abc.g5.sqlite.cloud");
    }

    #[test]
    fn other_ports_are_kept() {
        let url = parse("sqlitecloud://abc.sqlite.cloud:8090/db?apikey=K");
        assert_eq!(url.origin(), "https://abc.sqlite.cloud:8090");
        let url = parse("https://abc.sqlite.cloud:8443/db?apikey=K");
        assert_eq!(url.origin(), "https://abc.sqlite.cloud:8443");
        let url = parse("https://abc.sqlite.cloud:443/db?apikey=K");
        assert_eq!(url.origin(), "https://abc.sqlite.cloud");
        let url = parse("https://abc.sqlite.cloud:8860/db?apikey=K");
        assert_eq!(url.origin(), "https://abc.sqlite.cloud");
    }

    #[test]
    fn access_token_form() {
        let url = parse("sqlitecloud://h.sqlite.cloud/db?token=tok%2Babc+d");
        assert_eq!(url.credential_kind(), CredentialKind::AccessToken);
        assert_eq!(url.authorization_header(), "Bearer tok+abc+d");
    }

    #[test]
    fn scheme_and_host_are_case_insensitive() {
        let url = parse("SQLiteCloud://ABC.Sqlite.Cloud/MyDb?APIKEY=K");
        assert_eq!(url.origin(), "https://abc.sqlite.cloud");
        assert_eq!(url.database(), "MyDb");
    }

    #[test]
    fn database_is_percent_decoded() {
        let url = parse("https://h.sqlite.cloud/my%20db.sqlite?apikey=K");
        assert_eq!(url.database(), "my db.sqlite");
        let url = parse("https://h.sqlite.cloud/db/?apikey=K&timeout=10");
        assert_eq!(url.database(), "db");
    }

    #[test]
    fn plain_http_only_for_loopback() {
        for ok in [
            "http://127.0.0.1:8090/db?apikey=K",
            "http://127.1.2.3/db?apikey=K",
            "http://localhost:1234/db?apikey=K",
            "http://[::1]:1234/db?apikey=K",
        ] {
            let url = parse(ok);
            assert!(url.origin().starts_with("http://"), "{ok}");
        }
        assert_eq!(
            parse("http://[::1]:1234/db?apikey=K").origin(),
            "http://[::1]:1234"
        );
        assert_eq!(
            parse("http://127.0.0.1/db?apikey=K").origin(),
            "http://127.0.0.1"
        );
        for bad in [
            "http://example.com/db?apikey=K",
            "http://10.0.0.1/db?apikey=K",
            "http://[::2]/db?apikey=K",
            "http://localhost.evil.com/db?apikey=K",
            "http://127.0.0.1.nip.io/db?apikey=K",
        ] {
            assert!(
                matches!(
                    DatabaseUrl::parse(bad),
                    Err(UrlError::PlainHttpNotLoopback { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn user_password_is_refused() {
        for s in [
            "sqlitecloud://admin:hunter2@h.sqlite.cloud:8860/db",
            "sqlitecloud://h.sqlite.cloud/db?user=admin&password=hunter2",
        ] {
            let err = DatabaseUrl::parse(s).unwrap_err();
            assert_eq!(err, UrlError::UserPassword);
            let msg = err.to_string();
            assert!(msg.contains("API key"), "{msg}");
            assert!(!msg.contains("hunter2"));
        }
    }

    #[test]
    fn exactly_one_credential() {
        assert_eq!(
            DatabaseUrl::parse("https://h/db").unwrap_err(),
            UrlError::MissingCredential
        );
        assert_eq!(
            DatabaseUrl::parse("https://h/db?apikey=A&token=B").unwrap_err(),
            UrlError::ConflictingCredentials
        );
        assert!(matches!(
            DatabaseUrl::parse("https://h/db?apikey=A&apikey=B").unwrap_err(),
            UrlError::DuplicateOption { .. }
        ));
        assert_eq!(
            DatabaseUrl::parse("https://h/db?apikey=").unwrap_err(),
            UrlError::InvalidCredential
        );
        assert_eq!(
            DatabaseUrl::parse("https://h/db?apikey=a%0D%0AX-Evil:1").unwrap_err(),
            UrlError::InvalidCredential
        );
    }

    #[test]
    fn database_required() {
        for s in [
            "https://h?apikey=K",
            "https://h/?apikey=K",
            "sqlitecloud://h:8860?apikey=K",
        ] {
            assert_eq!(
                DatabaseUrl::parse(s).unwrap_err(),
                UrlError::MissingDatabase,
                "{s}"
            );
        }
        assert!(matches!(
            DatabaseUrl::parse("https://h/a/b?apikey=K").unwrap_err(),
            UrlError::InvalidDatabase { .. }
        ));
        assert!(matches!(
            DatabaseUrl::parse("https://h/a%ZZ?apikey=K").unwrap_err(),
            UrlError::InvalidPercentEncoding { .. }
        ));
    }

    #[test]
    fn malformed_addresses() {
        for (s, want) in [
            ("h.sqlite.cloud/db?apikey=K", UrlError::NotAUrl),
            ("https:///db?apikey=K", UrlError::MissingHost),
            ("https://:443/db?apikey=K", UrlError::MissingHost),
            ("https://h/db?apikey=K#frag", UrlError::Fragment),
        ] {
            assert_eq!(DatabaseUrl::parse(s).unwrap_err(), want, "{s}");
        }
        assert!(matches!(
            DatabaseUrl::parse("ftp://h/db?apikey=K").unwrap_err(),
            UrlError::UnsupportedScheme { .. }
        ));
        for s in [
            "https://h:0/db?apikey=K",
            "https://h:99999/db?apikey=K",
            "https://h:+80/db?apikey=K",
            "https://h:x/db?apikey=K",
        ] {
            assert!(
                matches!(
                    DatabaseUrl::parse(s).unwrap_err(),
                    UrlError::InvalidPort { .. }
                ),
                "{s}"
            );
        }
        for s in [
            "https://h st/db?apikey=K",
            "https://[::1/db?apikey=K",
            "https://[nothex]/db?apikey=K",
            "https://::1/db?apikey=K",
        ] {
            assert!(
                matches!(
                    DatabaseUrl::parse(s).unwrap_err(),
                    UrlError::InvalidHost { .. }
                        | UrlError::InvalidPort { .. }
                        | UrlError::MissingHost
                ),
                "{s}"
            );
        }
    }

    #[test]
    fn credential_never_shown() {
        let url = parse("sqlitecloud://h.sqlite.cloud/db?apikey=SuperSecret42");
        for shown in [
            format!("{url:?}"),
            format!("{url}"),
            url.redacted(),
            format!(
                "{:?}",
                DatabaseUrl::parse("https://h/db?apikey=SuperSecret42&apikey=x")
            ),
        ] {
            assert!(!shown.contains("SuperSecret42"), "{shown}");
        }
        assert_eq!(url.redacted(), "https://h.sqlite.cloud/db?apikey=REDACTED");
    }
}
