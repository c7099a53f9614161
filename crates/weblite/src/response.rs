//! Decoding the answers of `POST /v2/weblite/sql`, in every known dialect.

use crate::error::{ConstraintKind, WebliteError};
use crate::json::Json;
use crate::value::Value;

/// The largest integer a JSON number keeps exactly through the gateway (a
/// Node service): 2^53 - 1.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Gateway text kept in errors; enough to diagnose, too short to leak much.
const MAX_MESSAGE_CHARS: usize = 300;

/// Columns of the one-row result some gateways give for a write statement.
const WRITE_RESULT_COLUMNS: [&str; 6] = [
    "TYPE",
    "INDEX",
    "ROWID",
    "CHANGES",
    "TOTAL_CHANGES",
    "FINALIZED",
];

/// The result of the last statement of a request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueryResult {
    /// Column names in order; empty for write statements.
    pub columns: Vec<String>,
    /// Rows, each with one value per column.
    pub rows: Vec<Vec<Value>>,
    /// Rows changed by a write statement, when the gateway says.
    pub changes: Option<u64>,
}

impl QueryResult {
    /// The position of the first column called `name`.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// The value in row `row` of the column called `column`.
    pub fn get(&self, row: usize, column: &str) -> Option<&Value> {
        let index = self.column_index(column)?;
        self.rows.get(row)?.get(index)
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// Decodes one answer of the SQL endpoint from its HTTP status and body.
///
/// Accepted results: rows as objects or as arrays (`data: [...]`, column order
/// from `metadata.columns`, else from the first object's keys); and for write
/// statements any of `data: {lastID, changes, ...}`, a one-row
/// TYPE/INDEX/ROWID/CHANGES/TOTAL_CHANGES/FINALIZED result, `data: null`, no
/// `data`, or `{}` (no rows, `changes` when given). Errors: the old `error`
/// object, the new `errors` list, a bare `message` (a paused node, even with
/// status 200), and HTTP statuses (401/403, 429, 5xx).
pub fn decode_response(status: u16, body: &[u8]) -> Result<QueryResult, WebliteError> {
    let json = match Json::parse(body) {
        Ok(json) => json,
        Err(err) => {
            // serde_json's messages give a position, never the body's content.
            let reason = if body.is_empty() {
                "empty body".to_owned()
            } else {
                format!("body is not JSON ({err})")
            };
            return Err(status_error(status, None).unwrap_or(malformed(status, reason)));
        }
    };
    if !matches!(json, Json::Object(_)) {
        let reason = format!("expected a JSON object, got {}", json.type_name());
        return Err(status_error(status, None).unwrap_or(malformed(status, reason)));
    }
    if let Some(info) = find_error(&json) {
        return Err(classify_error(status, info));
    }
    let data = json.get("data").filter(|d| **d != Json::Null);
    let message = json.get("message").and_then(Json::as_str);
    if data.is_none()
        && let Some(message) = message
    {
        return Err(message_error(status, message));
    }
    if let Some(err) = status_error(status, message) {
        return Err(err);
    }
    if !(200..300).contains(&status) {
        return Err(malformed(
            status,
            "unexpected HTTP status without an error description".to_owned(),
        ));
    }
    decode_data(status, data, json.get("metadata"))
}

fn malformed(status: u16, reason: String) -> WebliteError {
    WebliteError::Malformed { status, reason }
}

/// Errors that follow from the status alone.
fn status_error(status: u16, message: Option<&str>) -> Option<WebliteError> {
    let message = || message.map_or_else(|| format!("HTTP {status}"), sanitize);
    match status {
        401 | 403 => Some(WebliteError::Unauthorized { status }),
        429 => Some(WebliteError::RateLimited { message: message() }),
        500..=599 => Some(WebliteError::Server {
            status,
            message: message(),
        }),
        _ => None,
    }
}

/// A body with a `message` and no `data`: a paused node, whatever the status
/// (even 200), unless the status says something more precise.
fn message_error(status: u16, message: &str) -> WebliteError {
    match status {
        401 | 403 | 429 => status_error(status, Some(message)).unwrap_or(WebliteError::Paused {
            status,
            message: sanitize(message),
        }),
        500..=599 if !message.to_ascii_lowercase().contains("paus") => WebliteError::Server {
            status,
            message: sanitize(message),
        },
        _ => WebliteError::Paused {
            status,
            message: sanitize(message),
        },
    }
}

/// Keeps gateway text short and on one line.
fn sanitize(message: &str) -> String {
    let cleaned: String = message
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_MESSAGE_CHARS + 1)
        .collect();
    if cleaned.is_empty() {
        return "no detail given".to_owned();
    }
    if cleaned.chars().count() > MAX_MESSAGE_CHARS {
        let mut cut: String = cleaned.chars().take(MAX_MESSAGE_CHARS).collect();
        cut.push('…');
        return cut;
    }
    cleaned
}

/// An error description found in a body.
#[derive(Debug, Default)]
struct ErrorInfo {
    code: Option<u32>,
    external_code: Option<u32>,
    message: String,
}

/// Finds `{"error": {...}}` (old gateway) or `{"errors": [{...}]}` (new).
fn find_error(json: &Json) -> Option<ErrorInfo> {
    if let Some(error) = json.get("error").filter(|e| **e != Json::Null) {
        return Some(error_info(error));
    }
    match json.get("errors") {
        Some(Json::Array(items)) => items.first().map(error_info),
        Some(Json::Null) | None => None,
        Some(other) => Some(error_info(other)),
    }
}

fn error_info(error: &Json) -> ErrorInfo {
    match error {
        Json::Str(text) => ErrorInfo {
            message: text.clone(),
            ..ErrorInfo::default()
        },
        Json::Object(_) => {
            let meta = error.get("meta");
            let field = |name: &str| {
                error
                    .get(name)
                    .or_else(|| meta.and_then(|m| m.get(name)))
                    .and_then(parse_code)
            };
            let message = ["detail", "message", "title"]
                .iter()
                .find_map(|key| error.get(key).and_then(Json::as_str))
                .unwrap_or_default()
                .to_owned();
            ErrorInfo {
                code: field("errorCode"),
                external_code: field("externalErrorCode"),
                message,
            }
        }
        other => ErrorInfo {
            message: format!("error given as a JSON {}", other.type_name()),
            ..ErrorInfo::default()
        },
    }
}

/// A positive error code, given as a number or a numeric string.
fn parse_code(json: &Json) -> Option<u32> {
    let code = match json {
        Json::Int(n) => u32::try_from(*n).ok(),
        Json::Float(x) if x.fract() == 0.0 && *x >= 1.0 && *x <= f64::from(u32::MAX) => {
            Some(*x as u32)
        }
        Json::Str(s) => s.trim().parse::<u32>().ok(),
        _ => None,
    };
    code.filter(|c| *c > 0)
}

fn is_sqlite_code(code: u32) -> bool {
    (1..10_000).contains(&code)
}

fn classify_error(status: u16, info: ErrorInfo) -> WebliteError {
    if matches!(status, 401 | 403 | 429) {
        return status_error(status, Some(&info.message)).unwrap_or(WebliteError::Gateway {
            code: info.code,
            message: sanitize(&info.message),
        });
    }
    let primary = info.code.filter(|c| is_sqlite_code(*c));
    let external = info.external_code.filter(|c| is_sqlite_code(*c));
    // An extended code refines its primary code (2067 = UNIQUE refines 19).
    // An extended code next to a SQLite Cloud code is not trusted on its own:
    // its meaning there is unconfirmed, the message text decides instead.
    let sqlite_code = match (primary, external) {
        (Some(p), Some(e)) if e & 0xff == p & 0xff => Some(e.max(p)),
        (Some(p), _) => Some(p),
        (None, Some(e)) if info.code.is_none() => Some(e),
        _ => None,
    };
    let message = sanitize(&info.message);
    if let Some(code) = sqlite_code {
        if code & 0xff == 19 {
            let kind = ConstraintKind::from_extended_code(code)
                .or_else(|| ConstraintKind::from_message(&info.message))
                .unwrap_or(ConstraintKind::Other);
            return WebliteError::Constraint {
                kind,
                detail: message,
            };
        }
        return WebliteError::Sql { code, message };
    }
    if let Some(kind) = ConstraintKind::from_message(&info.message) {
        return WebliteError::Constraint {
            kind,
            detail: message,
        };
    }
    match info.code {
        Some(code) => WebliteError::Gateway {
            code: Some(code),
            message,
        },
        None if (500..600).contains(&status) => WebliteError::Server { status, message },
        None => WebliteError::Gateway {
            code: None,
            message,
        },
    }
}

fn decode_data(
    status: u16,
    data: Option<&Json>,
    metadata: Option<&Json>,
) -> Result<QueryResult, WebliteError> {
    match data {
        None => Ok(QueryResult::default()),
        Some(Json::Object(_)) => Ok(QueryResult {
            changes: data.and_then(write_changes),
            ..QueryResult::default()
        }),
        Some(Json::Array(items)) => decode_rows(status, items, metadata),
        Some(other) => Err(malformed(
            status,
            format!("`data` is a JSON {}", other.type_name()),
        )),
    }
}

/// `changes` of a write-result object (`changes` or `CHANGES`).
fn write_changes(object: &Json) -> Option<u64> {
    ["changes", "CHANGES"]
        .iter()
        .find_map(|key| object.get(key))
        .and_then(|v| match v {
            Json::Int(n) => u64::try_from(*n).ok(),
            _ => None,
        })
}

/// Column names from `metadata.columns` (objects with `name`, or strings).
fn metadata_columns(metadata: Option<&Json>) -> Option<Vec<String>> {
    let Some(Json::Array(columns)) = metadata?.get("columns") else {
        return None;
    };
    columns
        .iter()
        .map(|c| match c {
            Json::Str(name) => Some(name.clone()),
            _ => c.get("name").and_then(Json::as_str).map(str::to_owned),
        })
        .collect()
}

fn decode_rows(
    status: u16,
    items: &[Json],
    metadata: Option<&Json>,
) -> Result<QueryResult, WebliteError> {
    let meta_columns = metadata_columns(metadata);
    let Some(first) = items.first() else {
        return Ok(QueryResult {
            columns: meta_columns.unwrap_or_default(),
            ..QueryResult::default()
        });
    };
    let (columns, rows) = match first {
        Json::Object(first_entries) => {
            let columns = meta_columns
                .unwrap_or_else(|| first_entries.iter().map(|(k, _)| k.clone()).collect());
            let rows = items
                .iter()
                .enumerate()
                .map(|(i, item)| object_row(status, i, item, &columns))
                .collect::<Result<Vec<_>, _>>()?;
            (columns, rows)
        }
        Json::Array(first_values) => {
            let columns = meta_columns.unwrap_or_default();
            let width = if columns.is_empty() {
                first_values.len()
            } else {
                columns.len()
            };
            let rows = items
                .iter()
                .enumerate()
                .map(|(i, item)| array_row(status, i, item, width, &columns))
                .collect::<Result<Vec<_>, _>>()?;
            (columns, rows)
        }
        other => {
            return Err(malformed(
                status,
                format!("row 0 is a JSON {}", other.type_name()),
            ));
        }
    };
    if rows.len() == 1 && is_write_result(&columns) {
        let changes = columns
            .iter()
            .position(|c| c == "CHANGES")
            .and_then(|i| rows[0][i].as_i64())
            .and_then(|n| u64::try_from(n).ok());
        return Ok(QueryResult {
            changes,
            ..QueryResult::default()
        });
    }
    Ok(QueryResult {
        columns,
        rows,
        changes: None,
    })
}

fn is_write_result(columns: &[String]) -> bool {
    columns.len() == WRITE_RESULT_COLUMNS.len()
        && WRITE_RESULT_COLUMNS
            .iter()
            .all(|name| columns.iter().any(|c| c == name))
}

fn object_row(
    status: u16,
    index: usize,
    item: &Json,
    columns: &[String],
) -> Result<Vec<Value>, WebliteError> {
    if !matches!(item, Json::Object(_)) {
        return Err(malformed(
            status,
            format!("row {index} is a JSON {}, not an object", item.type_name()),
        ));
    }
    columns
        .iter()
        .map(|column| {
            let value = item.get(column).ok_or_else(|| {
                malformed(
                    status,
                    format!("row {index} has no value for column `{}`", short(column)),
                )
            })?;
            to_value(status, value, column)
        })
        .collect()
}

fn array_row(
    status: u16,
    index: usize,
    item: &Json,
    width: usize,
    columns: &[String],
) -> Result<Vec<Value>, WebliteError> {
    let Json::Array(values) = item else {
        return Err(malformed(
            status,
            format!("row {index} is a JSON {}, not an array", item.type_name()),
        ));
    };
    if values.len() != width {
        return Err(malformed(
            status,
            format!(
                "row {index} has {} values for {width} columns",
                values.len()
            ),
        ));
    }
    values
        .iter()
        .enumerate()
        .map(|(i, value)| {
            let column = columns.get(i).map_or_else(|| format!("#{i}"), Clone::clone);
            to_value(status, value, &column)
        })
        .collect()
}

fn to_value(status: u16, json: &Json, column: &str) -> Result<Value, WebliteError> {
    let bad = |what: &str| malformed(status, format!("column `{}` holds {what}", short(column)));
    match json {
        Json::Null => Ok(Value::Null),
        Json::Str(s) => Ok(Value::Text(s.clone())),
        Json::Int(n) if n.unsigned_abs() <= MAX_SAFE_INTEGER => Ok(Value::Integer(*n)),
        Json::Int(_) | Json::UInt(_) => Err(bad(
            "an integer beyond ±(2^53-1), which JSON does not carry exactly",
        )),
        // JSON from the gateway (JavaScript) writes every integral number below
        // 1e21 as plain digits, which parse as integers above; a float here
        // has a fraction or an exponent, so it was a REAL.
        Json::Float(x) => Ok(Value::Real(*x)),
        Json::Bool(_) => Err(bad("a boolean")),
        Json::Array(_) => Err(bad("an array")),
        Json::Object(_) => Err(bad("an object")),
    }
}

/// Column names are chosen by the service, but keep them short in messages.
fn short(text: &str) -> String {
    text.chars().take(64).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(status: u16, body: serde_json::Value) -> Result<QueryResult, WebliteError> {
        decode_response(status, body.to_string().as_bytes())
    }

    fn ok(status: u16, body: serde_json::Value) -> QueryResult {
        decode(status, body.clone()).unwrap_or_else(|e| panic!("{body}: {e}"))
    }

    fn text(s: &str) -> Value {
        Value::Text(s.to_owned())
    }

    fn metadata(columns: &[&str]) -> serde_json::Value {
        json!({
            "version": "1",
            "numberOfRows": 2,
            "numberOfColumns": columns.len(),
            "columns": columns.iter().map(|c| json!({"name": c, "type": "TEXT", "database": "main"})).collect::<Vec<_>>(),
            "connectedMs": 1.2, "executedMs": 0.3, "elapsedMs": 1.5,
        })
    }

    #[test]
    fn rows_as_objects_with_metadata_order() {
        // Keys in an order different from the columns: metadata wins.
        let result = ok(
            200,
            json!({
                "data": [{"id": "u1", "email": "a@b.c", "n": 3}, {"email": null, "id": "u2", "n": 2.5}],
                "metadata": metadata(&["email", "id", "n"]),
            }),
        );
        assert_eq!(result.columns, ["email", "id", "n"]);
        assert_eq!(
            result.rows,
            [
                vec![text("a@b.c"), text("u1"), Value::Integer(3)],
                vec![Value::Null, text("u2"), Value::Real(2.5)],
            ]
        );
        assert_eq!(result.changes, None);
        assert_eq!(result.get(1, "id"), Some(&text("u2")));
    }

    #[test]
    fn rows_as_objects_without_metadata_keep_key_order() {
        let body = br#"{"data": [{"zeta": 1, "alpha": "x", "mid": null}, {"mid": 2, "alpha": "y", "zeta": 3}]}"#;
        let result = decode_response(200, body).unwrap();
        assert_eq!(result.columns, ["zeta", "alpha", "mid"]);
        assert_eq!(
            result.rows[1],
            [Value::Integer(3), text("y"), Value::Integer(2)]
        );
    }

    #[test]
    fn duplicate_column_names_read_the_same_key() {
        let result = ok(
            200,
            json!({"data": [{"id": "a"}], "metadata": metadata(&["id", "id"])}),
        );
        assert_eq!(result.rows, [vec![text("a"), text("a")]]);
    }

    #[test]
    fn rows_as_arrays() {
        let result = ok(
            200,
            json!({"data": [["u1", 1], ["u2", null]], "metadata": metadata(&["id", "n"])}),
        );
        assert_eq!(result.columns, ["id", "n"]);
        assert_eq!(result.rows[1], [text("u2"), Value::Null]);
        // Column names given as plain strings.
        let result = ok(200, json!({"data": [[1]], "metadata": {"columns": ["x"]}}));
        assert_eq!(result.columns, ["x"]);
        // No metadata: values without names.
        let result = ok(200, json!({"data": [[1, 2], [3, 4]]}));
        assert!(result.columns.is_empty());
        assert_eq!(result.rows.len(), 2);
    }

    #[test]
    fn empty_results() {
        let result = ok(200, json!({"data": [], "metadata": metadata(&["id"])}));
        assert_eq!(result.columns, ["id"]);
        assert!(result.is_empty());
        assert_eq!(ok(200, json!({"data": []})), QueryResult::default());
    }

    #[test]
    fn write_result_shapes() {
        let result = ok(
            200,
            json!({"data": {"lastID": 7, "changes": 1, "totalChanges": 9, "rowId": 7}}),
        );
        assert_eq!(
            result,
            QueryResult {
                changes: Some(1),
                ..QueryResult::default()
            }
        );
        assert_eq!(ok(200, json!({"data": {"lastID": 7}})).changes, None);
        assert_eq!(ok(200, json!({"data": {}})).changes, None);

        let columns = [
            "TYPE",
            "INDEX",
            "ROWID",
            "CHANGES",
            "TOTAL_CHANGES",
            "FINALIZED",
        ];
        let as_objects = ok(
            200,
            json!({"data": [{"TYPE": 10, "INDEX": 0, "ROWID": 5, "CHANGES": 2, "TOTAL_CHANGES": 4, "FINALIZED": 1}],
                   "metadata": metadata(&columns)}),
        );
        assert_eq!(
            as_objects,
            QueryResult {
                changes: Some(2),
                ..QueryResult::default()
            }
        );
        let as_arrays = ok(
            200,
            json!({"data": [[10, 0, 5, 3, 4, 1]], "metadata": metadata(&columns)}),
        );
        assert_eq!(as_arrays.changes, Some(3));
        let without_metadata = ok(
            200,
            json!({"data": [{"TYPE": 10, "INDEX": 0, "ROWID": 5, "CHANGES": 0, "TOTAL_CHANGES": 4, "FINALIZED": 1}]}),
        );
        assert_eq!(without_metadata.changes, Some(0));
        assert!(without_metadata.columns.is_empty());

        for body in [
            json!({"data": null}),
            json!({}),
            json!({"metadata": {"elapsedMs": 1}}),
        ] {
            assert_eq!(ok(200, body), QueryResult::default());
        }
    }

    #[test]
    fn values() {
        let result = ok(
            200,
            json!({"data": [[9_007_199_254_740_991_i64, -9_007_199_254_740_991_i64, 1.0, 1e300, "", "7"]]}),
        );
        assert_eq!(
            result.rows[0],
            [
                Value::Integer(9_007_199_254_740_991),
                Value::Integer(-9_007_199_254_740_991),
                Value::Real(1.0),
                Value::Real(1e300),
                text(""),
                text("7"),
            ]
        );
        for bad in [
            json!({"data": [[9_007_199_254_740_992_i64]]}),
            json!({"data": [[-9_007_199_254_740_993_i64]]}),
            json!({"data": [[u64::MAX]]}),
            json!({"data": [[true]]}),
            json!({"data": [{"flag": false}]}),
            json!({"data": [[[1]]]}),
            json!({"data": [[{"type": "Buffer", "data": [1, 2]}]]}),
        ] {
            assert!(
                matches!(
                    decode(200, bad.clone()),
                    Err(WebliteError::Malformed { .. })
                ),
                "{bad}"
            );
        }
        // Beyond u64 only a REAL can be meant (SQLite integers are i64).
        let result = decode_response(
            200,
            br#"{"data": [[123456789012345678901234567890, 1e21]]}"#,
        )
        .unwrap();
        assert_eq!(
            result.rows[0],
            [Value::Real(1.2345678901234568e29), Value::Real(1e21)]
        );
    }

    #[test]
    fn old_gateway_errors() {
        let body = |code: serde_json::Value, detail: &str| {
            json!({"error": {"status": 400, "title": "Bad Request", "detail": detail,
                             "errorCode": code, "offsetCode": -1, "externalErrorCode": 0}})
        };
        let err = decode(
            400,
            body(json!(2067), "UNIQUE constraint failed: users.email"),
        )
        .unwrap_err();
        assert_eq!(
            err,
            WebliteError::Constraint {
                kind: ConstraintKind::Unique,
                detail: "UNIQUE constraint failed: users.email".into()
            }
        );
        assert!(err.is_unique_violation());
        for (code, kind) in [
            (1555, ConstraintKind::PrimaryKey),
            (787, ConstraintKind::ForeignKey),
            (275, ConstraintKind::Check),
            (1299, ConstraintKind::NotNull),
            (2323, ConstraintKind::Other),
        ] {
            let err = decode(400, body(json!(code), "constraint failed")).unwrap_err();
            assert!(
                matches!(err, WebliteError::Constraint { kind: k, .. } if k == kind),
                "{code}: {err:?}"
            );
        }
        // Plain 19: the message tells the kind.
        let err = decode(400, body(json!(19), "NOT NULL constraint failed: t.x")).unwrap_err();
        assert!(matches!(
            err,
            WebliteError::Constraint {
                kind: ConstraintKind::NotNull,
                ..
            }
        ));
        // Codes given as strings.
        let err = decode(400, body(json!("2067"), "x")).unwrap_err();
        assert!(err.is_unique_violation());

        let err = decode(400, body(json!(1), "no such table: users")).unwrap_err();
        assert_eq!(
            err,
            WebliteError::Sql {
                code: 1,
                message: "no such table: users".into()
            }
        );
        assert!(!err.is_unavailable());
        let err = decode(400, body(json!(10002), "Database not found")).unwrap_err();
        assert_eq!(
            err,
            WebliteError::Gateway {
                code: Some(10002),
                message: "Database not found".into()
            }
        );
        // The old gateway's 500 still carries SQLite codes.
        let err = decode(500, body(json!(2067), "UNIQUE constraint failed: t.id")).unwrap_err();
        assert!(err.is_unique_violation());
    }

    #[test]
    fn extended_code_in_external_field() {
        let err = decode(
            400,
            json!({"error": {"detail": "constraint failed", "errorCode": 19, "externalErrorCode": 2067}}),
        )
        .unwrap_err();
        assert!(err.is_unique_violation(), "{err:?}");
        // Next to a SQLite Cloud code, only the message counts.
        let err = decode(
            400,
            json!({"error": {"detail": "UNIQUE constraint failed: t.x", "errorCode": 10001, "externalErrorCode": 2067}}),
        )
        .unwrap_err();
        assert!(err.is_unique_violation(), "{err:?}");
        let err = decode(
            400,
            json!({"error": {"detail": "quota exceeded", "errorCode": 10001, "externalErrorCode": 1}}),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                WebliteError::Gateway {
                    code: Some(10001),
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn new_gateway_errors() {
        let err = decode(
            400,
            json!({"errors": [{"status": "400", "detail": "UNIQUE constraint failed: users.email",
                               "meta": {"errorCode": 2067, "externalErrorCode": 0, "offsetCode": -1}}]}),
        )
        .unwrap_err();
        assert!(err.is_unique_violation(), "{err:?}");
        let err = decode(
            400,
            json!({"errors": [{"message": "near \"SELEC\": syntax error", "meta": {"errorCode": 1, "offsetCode": 0}}]}),
        )
        .unwrap_err();
        assert_eq!(
            err,
            WebliteError::Sql {
                code: 1,
                message: "near \"SELEC\": syntax error".into()
            }
        );
        let err = decode(
            200,
            json!({"errors": [{"detail": "oops", "meta": {"errorCode": 10005}}]}),
        )
        .unwrap_err();
        assert!(matches!(
            err,
            WebliteError::Gateway {
                code: Some(10005),
                ..
            }
        ));
        // Text only: recognised by SQLite's message.
        let err = decode(
            400,
            json!({"errors": [{"detail": "UNIQUE constraint failed: t.email"}]}),
        )
        .unwrap_err();
        assert!(err.is_unique_violation());
        let err = decode(400, json!({"errors": ["something broke"]})).unwrap_err();
        assert_eq!(
            err,
            WebliteError::Gateway {
                code: None,
                message: "something broke".into()
            }
        );
        // An empty list is no error.
        assert_eq!(
            ok(200, json!({"errors": [], "data": []})),
            QueryResult::default()
        );
    }

    #[test]
    fn error_wins_over_data() {
        let err = decode(
            200,
            json!({"data": [], "error": {"detail": "x", "errorCode": 1}}),
        )
        .unwrap_err();
        assert!(matches!(err, WebliteError::Sql { code: 1, .. }));
    }

    #[test]
    fn statuses() {
        for status in [401, 403] {
            for body in [
                json!({"error": {"status": status, "title": "Unauthorized", "detail": "bad key k3y", "errorCode": 10008}}),
                json!({"message": "Unauthorized"}),
                json!({}),
            ] {
                let err = decode(status, body).unwrap_err();
                assert_eq!(err, WebliteError::Unauthorized { status });
                assert!(err.is_unavailable());
            }
            assert_eq!(
                decode_response(status, b"").unwrap_err(),
                WebliteError::Unauthorized { status }
            );
        }
        let err = decode(429, json!({"error": {"detail": "Too many requests"}})).unwrap_err();
        assert_eq!(
            err,
            WebliteError::RateLimited {
                message: "Too many requests".into()
            }
        );
        let err = decode_response(429, b"slow down").unwrap_err();
        assert!(matches!(err, WebliteError::RateLimited { .. }));
        for status in [500, 502, 503, 504] {
            let err =
                decode_response(status, b"<html><body>Bad Gateway</body></html>").unwrap_err();
            assert!(
                matches!(err, WebliteError::Server { status: s, .. } if s == status),
                "{err:?}"
            );
            assert!(err.is_unavailable());
            let err =
                decode(status, json!({"error": {"title": "Internal Server Error"}})).unwrap_err();
            assert!(matches!(err, WebliteError::Server { .. }), "{err:?}");
            let err = decode(status, json!({"data": []})).unwrap_err();
            assert!(matches!(err, WebliteError::Server { .. }), "{err:?}");
        }
        let err = decode(404, json!({"data": []})).unwrap_err();
        assert!(matches!(err, WebliteError::Malformed { status: 404, .. }));
    }

    #[test]
    fn paused_node() {
        let message = "Your free node is paused due to inactivity. Resume it from the dashboard.";
        for status in [200, 400, 402, 503] {
            let err = decode(status, json!({"message": message})).unwrap_err();
            assert!(
                matches!(err, WebliteError::Paused { .. }),
                "{status}: {err:?}"
            );
            assert!(err.is_unavailable());
        }
        let err = decode(200, json!({"message": "anything", "data": null})).unwrap_err();
        assert!(matches!(err, WebliteError::Paused { status: 200, .. }));
        let err = decode(500, json!({"message": "internal failure"})).unwrap_err();
        assert!(matches!(err, WebliteError::Server { .. }));
        // With data, a message is informational.
        assert!(decode(200, json!({"message": "ok", "data": []})).is_ok());
    }

    #[test]
    fn garbage() {
        let bodies: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"{".to_vec(),
            br#"{"data": [{"id": 1}"#.to_vec(),
            br#"{"data": [{"id": 1}]"#.to_vec(),
            br#"{"data": [{"id": 1}]} trailing"#.to_vec(),
            b"null".to_vec(),
            b"[]".to_vec(),
            b"42".to_vec(),
            b"\"data\"".to_vec(),
            br#"{"data": 5}"#.to_vec(),
            br#"{"data": "rows"}"#.to_vec(),
            br#"{"data": true}"#.to_vec(),
            br#"{"data": [1, 2]}"#.to_vec(),
            br#"{"data": [{"a": 1}, [1]]}"#.to_vec(),
            br#"{"data": [[1], {"a": 1}]}"#.to_vec(),
            br#"{"data": [[1, 2], [3]]}"#.to_vec(),
            br#"{"data": [["a"]], "metadata": {"columns": [{"name": "x"}, {"name": "y"}]}}"#
                .to_vec(),
            br#"{"data": [{"a": 1}, {"b": 2}]}"#.to_vec(),
            br#"{"data": [{"a": 1}], "metadata": {"columns": [{"name": "b"}]}}"#.to_vec(),
            vec![0xff, 0xfe, 0x00],
            b"\xef\xbb\xbf{}".to_vec(),
            format!("{}1{}", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
            format!(
                r#"{{"data": [{}]}}"#,
                "{\"a\":".repeat(300) + "1" + &"}".repeat(300)
            )
            .into_bytes(),
            format!(r#"{{"data": [[{}1{}]]}}"#, "[".repeat(200), "]".repeat(200)).into_bytes(),
        ];
        for body in bodies {
            let err = decode_response(200, &body).unwrap_err();
            assert!(
                matches!(err, WebliteError::Malformed { status: 200, .. }),
                "{}: {err:?}",
                String::from_utf8_lossy(&body[..body.len().min(80)])
            );
            assert!(err.is_unavailable());
        }
    }

    #[test]
    fn wrong_types_in_error_objects_are_tolerated() {
        for body in [
            json!({"error": 42}),
            json!({"error": {"errorCode": "abc", "detail": 5}}),
            json!({"error": {"errorCode": -3}}),
            json!({"error": {"errorCode": 1.5}}),
            json!({"errors": {"detail": "not a list"}}),
            json!({"errors": [null]}),
        ] {
            let err = decode(400, body.clone()).unwrap_err();
            assert!(
                matches!(err, WebliteError::Gateway { code: None, .. }),
                "{body}: {err:?}"
            );
        }
    }

    /// Every prefix of a valid answer is refused; none panics.
    #[test]
    fn truncated_answers() {
        let full = json!({
            "data": [{"id": "u1", "n": 1}, {"id": "u2", "n": 2}],
            "metadata": metadata(&["id", "n"]),
        })
        .to_string();
        for cut in 0..full.len() {
            let result = decode_response(200, &full.as_bytes()[..cut]);
            assert!(
                matches!(result, Err(WebliteError::Malformed { .. })),
                "cut at {cut}"
            );
        }
        assert!(decode_response(200, full.as_bytes()).is_ok());
    }

    #[test]
    fn messages_are_bounded_and_single_line() {
        let long = format!("line1\nline2 {}", "x".repeat(10_000));
        let err = decode(400, json!({"error": {"detail": long, "errorCode": 1}})).unwrap_err();
        let WebliteError::Sql { message, .. } = &err else {
            panic!("{err:?}")
        };
        assert!(message.chars().count() <= MAX_MESSAGE_CHARS + 1);
        assert!(!message.contains('\n'));
        let err = decode(400, json!({"error": {"detail": "", "errorCode": 1}})).unwrap_err();
        assert_eq!(
            err,
            WebliteError::Sql {
                code: 1,
                message: "no detail given".into()
            }
        );
    }
}
