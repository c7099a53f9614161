//! JSON bodies in the gateway's dialects.

use std::fmt::Write as _;
use std::time::Duration;

use rusqlite::types::Value as SqlValue;
use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde_json::json;

use crate::config::{ErrorFormat, RowShape, WriteShape};
use crate::engine::{Column, Outcome};

/// Result-type code of a write in SQLite Cloud's one-row write result.
const WRITE_RESULT_TYPE: i64 = 10;

/// One cell. BLOBs (unconfirmed upstream) are written as uppercase hex text;
/// non-finite reals as null, as JavaScript's JSON.stringify does.
struct Cell<'a>(&'a SqlValue);

impl Serialize for Cell<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            SqlValue::Null => serializer.serialize_unit(),
            SqlValue::Integer(n) => serializer.serialize_i64(*n),
            SqlValue::Real(x) if x.is_finite() => serializer.serialize_f64(*x),
            SqlValue::Real(_) => serializer.serialize_unit(),
            SqlValue::Text(s) => serializer.serialize_str(s),
            SqlValue::Blob(bytes) => {
                let mut hex = String::with_capacity(bytes.len() * 2);
                for b in bytes {
                    let _ = write!(hex, "{b:02X}");
                }
                serializer.serialize_str(&hex)
            }
        }
    }
}

/// Object keys as a JavaScript object would hold them: first occurrence
/// decides the position, the last occurrence the value.
fn object_keys(names: &[String]) -> Vec<(&str, usize)> {
    let mut keys: Vec<(&str, usize)> = Vec::new();
    for (index, name) in names.iter().enumerate() {
        match keys.iter_mut().find(|(k, _)| k == name) {
            Some(entry) => entry.1 = index,
            None => keys.push((name, index)),
        }
    }
    keys
}

struct ObjectRow<'a> {
    keys: &'a [(&'a str, usize)],
    values: &'a [SqlValue],
}

impl Serialize for ObjectRow<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.keys.len()))?;
        for (key, index) in self.keys {
            if let Some(value) = self.values.get(*index) {
                map.serialize_entry(key, &Cell(value))?;
            }
        }
        map.end()
    }
}

struct ArrayRow<'a>(&'a [SqlValue]);

impl Serialize for ArrayRow<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for value in self.0 {
            seq.serialize_element(&Cell(value))?;
        }
        seq.end()
    }
}

fn rows_json(names: &[String], rows: &[Vec<SqlValue>], shape: RowShape) -> Vec<u8> {
    let result = match shape {
        RowShape::Objects => {
            let keys = object_keys(names);
            let rows: Vec<ObjectRow<'_>> = rows
                .iter()
                .map(|values| ObjectRow {
                    keys: &keys,
                    values,
                })
                .collect();
            serde_json::to_vec(&rows)
        }
        RowShape::Arrays => {
            let rows: Vec<ArrayRow<'_>> = rows.iter().map(|r| ArrayRow(r)).collect();
            serde_json::to_vec(&rows)
        }
    };
    // Writing plain values into a Vec cannot fail.
    result.unwrap_or_else(|_| b"[]".to_vec())
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

fn timings(outcome: &Outcome, elapsed: Duration) -> serde_json::Map<String, serde_json::Value> {
    let mut map = serde_json::Map::new();
    map.insert("connectedMs".into(), json!(millis(outcome.connected)));
    map.insert("executedMs".into(), json!(millis(outcome.executed)));
    map.insert("elapsedMs".into(), json!(millis(elapsed)));
    map
}

fn rows_metadata(
    columns: &[Column],
    row_count: usize,
    outcome: &Outcome,
    elapsed: Duration,
) -> serde_json::Value {
    let mut map = timings(outcome, elapsed);
    map.insert("version".into(), json!("1"));
    map.insert("numberOfRows".into(), json!(row_count));
    map.insert("numberOfColumns".into(), json!(columns.len()));
    map.insert(
        "columns".into(),
        columns
            .iter()
            .map(|c| json!({"name": c.name, "type": c.declared_type}))
            .collect(),
    );
    serde_json::Value::Object(map)
}

fn assemble(data: Option<&[u8]>, metadata: &serde_json::Value) -> Vec<u8> {
    let mut body = Vec::with_capacity(data.map_or(0, <[u8]>::len) + 256);
    body.extend_from_slice(b"{");
    if let Some(data) = data {
        body.extend_from_slice(b"\"data\":");
        body.extend_from_slice(data);
        body.extend_from_slice(b",");
    }
    body.extend_from_slice(b"\"metadata\":");
    body.extend_from_slice(metadata.to_string().as_bytes());
    body.extend_from_slice(b"}");
    body
}

fn rows_body(
    columns: &[Column],
    rows: &[Vec<SqlValue>],
    shape: RowShape,
    outcome: &Outcome,
    elapsed: Duration,
) -> Vec<u8> {
    let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
    let data = rows_json(&names, rows, shape);
    assemble(
        Some(&data),
        &rows_metadata(columns, rows.len(), outcome, elapsed),
    )
}

/// The body of a successful SQL request: the last statement's result.
pub fn result_body(
    outcome: &Outcome,
    rows: RowShape,
    write: WriteShape,
    elapsed: Duration,
) -> Vec<u8> {
    if outcome.has_result_columns() {
        return rows_body(&outcome.columns, &outcome.rows, rows, outcome, elapsed);
    }
    let changes = i64::try_from(outcome.changes).unwrap_or(i64::MAX);
    let total_changes = i64::try_from(outcome.total_changes).unwrap_or(i64::MAX);
    let metadata = serde_json::Value::Object(timings(outcome, elapsed));
    match write {
        WriteShape::Object => {
            let data = json!({
                "lastID": outcome.last_insert_rowid,
                "changes": changes,
                "totalChanges": total_changes,
                "rowId": outcome.last_insert_rowid,
            });
            assemble(Some(data.to_string().as_bytes()), &metadata)
        }
        WriteShape::Row => {
            let columns: Vec<Column> = [
                ("TYPE", "INTEGER"),
                ("INDEX", "INTEGER"),
                ("ROWID", "INTEGER"),
                ("CHANGES", "INTEGER"),
                ("TOTAL_CHANGES", "INTEGER"),
                ("FINALIZED", "INTEGER"),
            ]
            .into_iter()
            .map(|(name, declared)| Column {
                name: name.to_owned(),
                declared_type: Some(declared.to_owned()),
            })
            .collect();
            let row = vec![
                SqlValue::Integer(WRITE_RESULT_TYPE),
                SqlValue::Integer(0),
                SqlValue::Integer(outcome.last_insert_rowid),
                SqlValue::Integer(changes),
                SqlValue::Integer(total_changes),
                SqlValue::Integer(1),
            ];
            rows_body(&columns, &[row], rows, outcome, elapsed)
        }
        WriteShape::Null => assemble(Some(b"null"), &metadata),
        WriteShape::Missing => assemble(None, &metadata),
        WriteShape::Empty => b"{}".to_vec(),
    }
}

/// A list of names as a one-column result (for `/v2/weblite/databases`).
pub fn names_body(names: &[String], rows: RowShape) -> Vec<u8> {
    let column = Column {
        name: "name".to_owned(),
        declared_type: Some("TEXT".to_owned()),
    };
    let values: Vec<Vec<SqlValue>> = names
        .iter()
        .map(|n| vec![SqlValue::Text(n.clone())])
        .collect();
    rows_body(
        &[column],
        &values,
        rows,
        &Outcome::default(),
        Duration::ZERO,
    )
}

fn title(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error")
}

/// An error body in the configured format. Without a code, `errorCode` is
/// left out (as for the HTTP-level failures of a proxy or a gateway).
pub fn error_body(
    format: ErrorFormat,
    status: u16,
    code: Option<i64>,
    detail: &str,
    offset: i32,
) -> Vec<u8> {
    let mut codes = serde_json::Map::new();
    if let Some(code) = code {
        codes.insert("errorCode".into(), json!(code));
        codes.insert("offsetCode".into(), json!(offset));
        codes.insert("externalErrorCode".into(), json!(0));
    }
    let body = match format {
        ErrorFormat::Old => {
            let mut error = codes;
            error.insert("status".into(), json!(status));
            error.insert("title".into(), json!(title(status)));
            error.insert("detail".into(), json!(detail));
            json!({ "error": error })
        }
        ErrorFormat::New => json!({
            "errors": [{
                "status": status.to_string(),
                "title": title(status),
                "detail": detail,
                "meta": codes,
            }]
        }),
    };
    body.to_string().into_bytes()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn outcome(columns: &[&str], rows: Vec<Vec<SqlValue>>) -> Outcome {
        Outcome {
            columns: columns
                .iter()
                .map(|n| Column {
                    name: (*n).to_owned(),
                    declared_type: None,
                })
                .collect(),
            rows,
            ..Outcome::default()
        }
    }

    #[test]
    fn object_rows_keep_column_order() {
        let out = outcome(
            &["zeta", "alpha"],
            vec![vec![SqlValue::Integer(1), SqlValue::Blob(vec![0xab, 1])]],
        );
        let body = result_body(&out, RowShape::Objects, WriteShape::Object, Duration::ZERO);
        let text = String::from_utf8(body).unwrap();
        assert!(
            text.starts_with(r#"{"data":[{"zeta":1,"alpha":"AB01"}],"metadata":"#),
            "{text}"
        );
    }

    #[test]
    fn duplicate_names_collapse_like_javascript() {
        let out = outcome(
            &["id", "x", "id"],
            vec![vec![
                SqlValue::Integer(1),
                SqlValue::Integer(2),
                SqlValue::Integer(3),
            ]],
        );
        let body = result_body(&out, RowShape::Objects, WriteShape::Object, Duration::ZERO);
        let text = String::from_utf8(body).unwrap();
        assert!(text.starts_with(r#"{"data":[{"id":3,"x":2}]"#), "{text}");
    }

    #[test]
    fn write_shapes() {
        let out = Outcome {
            changes: 2,
            total_changes: 5,
            last_insert_rowid: 9,
            ..Outcome::default()
        };
        let parse = |shape| {
            serde_json::from_slice::<serde_json::Value>(&result_body(
                &out,
                RowShape::Arrays,
                shape,
                Duration::ZERO,
            ))
            .unwrap()
        };
        assert_eq!(parse(WriteShape::Object)["data"]["changes"], 2);
        assert_eq!(parse(WriteShape::Row)["data"], json!([[10, 0, 9, 2, 5, 1]]));
        assert!(parse(WriteShape::Null)["data"].is_null());
        assert!(parse(WriteShape::Missing).get("data").is_none());
        assert_eq!(parse(WriteShape::Empty), json!({}));
    }
}
