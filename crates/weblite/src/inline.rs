//! Inlining `?` parameters as SQL literals, for batches.
//!
//! Binds across several statements in one request are unconfirmed upstream,
//! so a batch carries no `bind`: each parameter becomes a literal. Text is
//! rendered as `CAST(X'<hex>' AS TEXT)`, so no quote, semicolon or comment
//! marker from a value ever reaches the SQL text, even through a gateway that
//! naively splits on `;`.

use std::fmt::Write as _;

use crate::value::Value;

/// Why a request could not be built. Messages never carry parameter values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("the SQL has {placeholders} `?` placeholders but {params} parameters were given")]
    ParamCountMismatch { placeholders: usize, params: usize },
    #[error("numbered placeholder (?NNN) at byte {offset}: only plain positional `?` is supported")]
    NumberedPlaceholder { offset: usize },
    #[error("named placeholder at byte {offset}: only positional `?` is supported")]
    NamedPlaceholder { offset: usize },
    #[error("unterminated quoted text starting at byte {offset}")]
    Unterminated { offset: usize },
    #[error("parameter {index} is a NaN or infinite REAL, which SQL cannot carry")]
    NonFiniteReal { index: usize },
    #[error("a batch statement holds several statements separated by `;`")]
    MultipleStatements,
    #[error("a batch statement is empty")]
    EmptyStatement,
    #[error("a batch needs at least one statement")]
    EmptyBatch,
    #[error("batch statement {index}: {source}")]
    InBatchStatement {
        index: usize,
        #[source]
        source: Box<BuildError>,
    },
    #[error("trailing query: {source}")]
    InTrailingQuery {
        #[source]
        source: Box<BuildError>,
    },
}

/// A lexical piece of SQL, as far as inlining cares.
#[derive(Debug, PartialEq)]
enum Piece {
    /// Verbatim SQL text (including literals and quoted identifiers).
    Text(std::ops::Range<usize>),
    Placeholder,
    /// A comment; rendered as one space.
    Comment,
    Semicolon,
}

/// Splits SQL into pieces following SQLite's tokenizer rules for string
/// literals (`'...'`, `''` escapes), quoted identifiers (`"..."`, `` `...` ``,
/// `[...]`) and comments (`-- ...`, `/* ... */`).
fn scan(sql: &str) -> Result<Vec<Piece>, BuildError> {
    let bytes = sql.as_bytes();
    let mut pieces = Vec::new();
    let mut text_start = 0;
    let mut i = 0;
    let flush = |pieces: &mut Vec<Piece>, start: usize, end: usize| {
        if end > start {
            pieces.push(Piece::Text(start..end));
        }
    };
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'\'' | b'"' | b'`') => {
                i = skip_quoted(bytes, i, quote)?;
            }
            b'[' => {
                let close = bytes[i + 1..]
                    .iter()
                    .position(|&b| b == b']')
                    .ok_or(BuildError::Unterminated { offset: i })?;
                i += close + 2;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                flush(&mut pieces, text_start, i);
                let end = bytes[i..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(bytes.len(), |p| i + p + 1);
                pieces.push(Piece::Comment);
                i = end;
                text_start = i;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                flush(&mut pieces, text_start, i);
                // SQLite accepts a block comment left open at the end of input.
                let end = bytes[i + 2..]
                    .windows(2)
                    .position(|w| w == b"*/")
                    .map_or(bytes.len(), |p| i + 2 + p + 2);
                pieces.push(Piece::Comment);
                i = end;
                text_start = i;
            }
            b'?' => {
                if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    return Err(BuildError::NumberedPlaceholder { offset: i });
                }
                flush(&mut pieces, text_start, i);
                pieces.push(Piece::Placeholder);
                i += 1;
                text_start = i;
            }
            b':' | b'@' if bytes.get(i + 1).is_some_and(|&b| is_identifier_byte(b)) => {
                return Err(BuildError::NamedPlaceholder { offset: i });
            }
            // `$` inside a word is part of an identifier (`a$b`); at a word start
            // it opens a named parameter.
            b'$' if bytes.get(i + 1).is_some_and(|&b| is_identifier_byte(b))
                && !(i > 0 && is_identifier_byte(bytes[i - 1])) =>
            {
                return Err(BuildError::NamedPlaceholder { offset: i });
            }
            b';' => {
                flush(&mut pieces, text_start, i);
                pieces.push(Piece::Semicolon);
                i += 1;
                text_start = i;
            }
            _ => i += 1,
        }
    }
    flush(&mut pieces, text_start, bytes.len());
    Ok(pieces)
}

fn is_identifier_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// Returns the index just past the closing quote; a doubled quote is an escape.
fn skip_quoted(bytes: &[u8], open: usize, quote: u8) -> Result<usize, BuildError> {
    let mut i = open + 1;
    while i < bytes.len() {
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return Ok(i + 1);
        }
        i += 1;
    }
    Err(BuildError::Unterminated { offset: open })
}

/// Renders one value as an SQL literal, padded with spaces so it cannot fuse
/// with a neighbouring token (`SELECT?` is valid SQLite).
fn push_literal(out: &mut String, value: &Value, index: usize) -> Result<(), BuildError> {
    out.push(' ');
    match value {
        Value::Null => out.push_str("NULL"),
        // Negative numbers are parenthesised so `1-?` can never become `1--5`.
        Value::Integer(n) if *n < 0 => {
            let _ = write!(out, "({n})");
        }
        Value::Integer(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Real(x) => {
            if !x.is_finite() {
                return Err(BuildError::NonFiniteReal { index });
            }
            // `{:?}` prints the shortest text that reads back to the same f64 and
            // always has a `.` or an exponent, so SQLite reads it as REAL.
            if x.is_sign_negative() {
                let _ = write!(out, "({x:?})");
            } else {
                let _ = write!(out, "{x:?}");
            }
        }
        Value::Text(s) => {
            out.push_str("CAST(X'");
            for b in s.as_bytes() {
                let _ = write!(out, "{b:02X}");
            }
            out.push_str("' AS TEXT)");
        }
    }
    out.push(' ');
    Ok(())
}

/// Replaces each positional `?` outside string literals, quoted identifiers
/// and comments with the matching parameter rendered as a literal. Comments
/// are replaced by a space (so a trailing `--` comment cannot swallow what a
/// batch appends). Errors when the number of placeholders and parameters
/// differ, on `?NNN` and named placeholders, and on NaN or infinite reals.
pub fn inline_params(sql: &str, params: &[Value]) -> Result<String, BuildError> {
    let pieces = scan(sql)?;
    render(sql, &pieces, params)
}

fn render(sql: &str, pieces: &[Piece], params: &[Value]) -> Result<String, BuildError> {
    let placeholders = pieces.iter().filter(|p| **p == Piece::Placeholder).count();
    if placeholders != params.len() {
        return Err(BuildError::ParamCountMismatch {
            placeholders,
            params: params.len(),
        });
    }
    let mut out = String::with_capacity(sql.len() + params.len() * 16);
    let mut next_param = params.iter().enumerate();
    for piece in pieces {
        match piece {
            Piece::Text(range) => out.push_str(&sql[range.clone()]),
            Piece::Comment => out.push(' '),
            Piece::Semicolon => out.push(';'),
            Piece::Placeholder => {
                if let Some((index, value)) = next_param.next() {
                    push_literal(&mut out, value, index)?;
                }
            }
        }
    }
    Ok(out)
}

/// Inlines one statement of a batch and strips its trailing `;`s, so the
/// caller can join statements itself. Refuses several statements in one.
pub(crate) fn inline_batch_statement(sql: &str, params: &[Value]) -> Result<String, BuildError> {
    let mut pieces = scan(sql)?;
    // Drop trailing semicolons, comments and blank text.
    while let Some(last) = pieces.last() {
        let droppable = match last {
            Piece::Semicolon | Piece::Comment => true,
            Piece::Text(range) => sql[range.clone()].trim().is_empty(),
            Piece::Placeholder => false,
        };
        if !droppable {
            break;
        }
        pieces.pop();
    }
    if pieces.contains(&Piece::Semicolon) {
        return Err(BuildError::MultipleStatements);
    }
    let rendered = render(sql, &pieces, params)?;
    let trimmed = rendered.trim();
    if trimmed.is_empty() {
        return Err(BuildError::EmptyStatement);
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use rusqlite::Connection;
    use rusqlite::types::Value as SqlValue;

    fn text(s: &str) -> Value {
        Value::Text(s.to_owned())
    }

    #[test]
    fn replaces_placeholders_outside_quotes_and_comments() {
        let sql = "SELECT '?', \"?\", `?`, [?], ? -- ?\n, ? /* ? */, ?";
        let out = inline_params(sql, &[Value::Integer(1), Value::Null, text("a")]).unwrap();
        assert_eq!(
            out,
            "SELECT '?', \"?\", `?`, [?],  1   ,  NULL   ,  CAST(X'61' AS TEXT) "
        );
    }

    #[test]
    fn escaped_quotes_stay_inside_literals() {
        let out = inline_params("SELECT 'it''s ?', ?", &[Value::Integer(2)]).unwrap();
        assert_eq!(out, "SELECT 'it''s ?',  2 ");
        let out =
            inline_params("SELECT \"a\"\"?\" FROM t WHERE x = ?", &[Value::Integer(2)]).unwrap();
        assert_eq!(out, "SELECT \"a\"\"?\" FROM t WHERE x =  2 ");
    }

    #[test]
    fn count_mismatch() {
        assert_eq!(
            inline_params("SELECT ?, ?", &[Value::Null]),
            Err(BuildError::ParamCountMismatch {
                placeholders: 2,
                params: 1
            })
        );
        assert_eq!(
            inline_params("SELECT '?'", &[Value::Null]),
            Err(BuildError::ParamCountMismatch {
                placeholders: 0,
                params: 1
            })
        );
    }

    #[test]
    fn refuses_other_placeholder_styles() {
        assert!(matches!(
            inline_params("SELECT ?1", &[Value::Null]),
            Err(BuildError::NumberedPlaceholder { offset: 7 })
        ));
        for sql in [
            "SELECT :a",
            "SELECT @a",
            "SELECT $a",
            "SELECT x FROM t WHERE y=$v",
        ] {
            assert!(
                matches!(
                    inline_params(sql, &[]),
                    Err(BuildError::NamedPlaceholder { .. })
                ),
                "{sql}"
            );
        }
        // `$` inside an identifier and a lone `:` are not placeholders.
        assert_eq!(
            inline_params("SELECT a$b FROM t", &[]).unwrap(),
            "SELECT a$b FROM t"
        );
        assert_eq!(inline_params("SELECT ':a'", &[]).unwrap(), "SELECT ':a'");
    }

    #[test]
    fn unterminated_quotes() {
        for sql in ["SELECT 'abc", "SELECT \"abc", "SELECT [abc", "SELECT `a"] {
            assert!(
                matches!(
                    inline_params(sql, &[]),
                    Err(BuildError::Unterminated { .. })
                ),
                "{sql}"
            );
        }
        // An open block comment at the end is accepted, like SQLite does.
        assert_eq!(inline_params("SELECT 1 /* x", &[]).unwrap(), "SELECT 1  ");
    }

    #[test]
    fn literals() {
        let out = inline_params(
            "VALUES (?, ?, ?, ?, ?)",
            &[
                Value::Integer(-5),
                Value::Real(0.1),
                Value::Real(-2.5),
                text("a'b;c"),
                text(""),
            ],
        )
        .unwrap();
        assert_eq!(
            out,
            "VALUES ( (-5) ,  0.1 ,  (-2.5) ,  CAST(X'6127623B63' AS TEXT) ,  CAST(X'' AS TEXT) )"
        );
        assert_eq!(
            inline_params("SELECT ?", &[Value::Real(f64::NAN)]),
            Err(BuildError::NonFiniteReal { index: 0 })
        );
        assert_eq!(
            inline_params(
                "SELECT ?, ?",
                &[Value::Null, Value::Real(f64::NEG_INFINITY)]
            ),
            Err(BuildError::NonFiniteReal { index: 1 })
        );
    }

    #[test]
    fn no_token_fusion() {
        // `1-?` with a negative value must not become a `--` comment, and a
        // literal right after a keyword must not fuse with it.
        let conn = Connection::open_in_memory().unwrap();
        for (sql, params, want) in [
            ("SELECT 1-?", vec![Value::Integer(-5)], SqlValue::Integer(6)),
            ("SELECT?", vec![Value::Integer(7)], SqlValue::Integer(7)),
            ("SELECT 1-?", vec![Value::Real(-0.5)], SqlValue::Real(1.5)),
            (
                "SELECT ?||'x'",
                vec![text("a")],
                SqlValue::Text("ax".into()),
            ),
        ] {
            let inlined = inline_params(sql, &params).unwrap();
            let got: SqlValue = conn.query_row(&inlined, [], |r| r.get(0)).unwrap();
            assert_eq!(got, want, "{inlined}");
        }
    }

    #[test]
    fn batch_statement_trimming() {
        assert_eq!(
            inline_batch_statement(
                "INSERT INTO t VALUES (?); -- done\n ;",
                &[Value::Integer(1)]
            )
            .unwrap(),
            "INSERT INTO t VALUES ( 1 )"
        );
        assert_eq!(
            inline_batch_statement("SELECT 1 -- trailing comment", &[]).unwrap(),
            "SELECT 1"
        );
        assert_eq!(
            inline_batch_statement("SELECT ';'", &[]).unwrap(),
            "SELECT ';'"
        );
        assert_eq!(
            inline_batch_statement("SELECT 1; SELECT 2", &[]),
            Err(BuildError::MultipleStatements)
        );
        assert_eq!(
            inline_batch_statement(" ; -- nothing", &[]),
            Err(BuildError::EmptyStatement)
        );
    }

    fn to_sql_value(v: &Value) -> SqlValue {
        match v {
            Value::Null => SqlValue::Null,
            Value::Integer(n) => SqlValue::Integer(*n),
            Value::Real(x) => SqlValue::Real(*x),
            Value::Text(s) => SqlValue::Text(s.clone()),
        }
    }

    fn nasty_values() -> Vec<Value> {
        let mut values: Vec<Value> = [
            "",
            "'",
            "''",
            "\"",
            "a'); DROP TABLE t; --",
            ";",
            "; COMMIT; BEGIN;",
            "--",
            "/*",
            "*/",
            "/* ? */",
            "?",
            "? ?",
            ":name",
            "$x",
            "\\",
            "\\'",
            "X'00'",
            "line\nbreak\r\n\ttab",
            "héllo wörld",
            "日本語テキスト",
            "emoji 🦀🔐",
            "\u{202e}rtl override",
            "\u{feff}bom",
            "CAST(X'41' AS TEXT)",
        ]
        .into_iter()
        .map(|s| Value::Text(s.to_owned()))
        .collect();
        values.push(Value::Text("x".repeat(10_000)));
        values.extend([
            Value::Null,
            Value::Integer(0),
            Value::Integer(-1),
            Value::Integer(i64::MAX),
            Value::Integer(i64::MIN),
            Value::Integer(i64::MIN + 1),
            Value::Real(0.0),
            Value::Real(-0.0),
            Value::Real(0.1),
            Value::Real(-1.0 / 3.0),
            Value::Real(std::f64::consts::PI),
            Value::Real(1e300),
            Value::Real(-1e-300),
            Value::Real(f64::MAX),
            Value::Real(f64::MIN_POSITIVE),
            Value::Real(5e-324),
            Value::Real(1e16),
            Value::Real(123_456.789),
            Value::Real(9_007_199_254_740_992.0),
        ]);
        values
    }

    /// Inlined and bound parameters must store and select identical rows.
    #[test]
    fn inlined_equals_bound_in_real_sqlite() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE bound (n INTEGER PRIMARY KEY, v);
             CREATE TABLE inlined (n INTEGER PRIMARY KEY, v);
             CREATE TABLE typed (n INTEGER PRIMARY KEY, t TEXT, i INTEGER, r REAL);",
        )
        .unwrap();
        let values = nasty_values();
        for (n, value) in values.iter().enumerate() {
            let n = i64::try_from(n).unwrap();
            conn.execute(
                "INSERT INTO bound (n, v) VALUES (?1, ?2)",
                rusqlite::params![n, to_sql_value(value)],
            )
            .unwrap();
            let sql = inline_params(
                "INSERT INTO inlined (n, v) VALUES (?, ?)",
                &[Value::Integer(n), value.clone()],
            )
            .unwrap();
            conn.execute(&sql, []).unwrap();

            // A SELECT with the value in the WHERE clause finds the same row.
            let bound_hit: i64 = conn
                .query_row(
                    "SELECT count(*) FROM bound WHERE v IS ?1",
                    [to_sql_value(value)],
                    |r| r.get(0),
                )
                .unwrap();
            let sql = inline_params(
                "SELECT count(*) FROM inlined WHERE v IS ?",
                std::slice::from_ref(value),
            )
            .unwrap();
            let inlined_hit: i64 = conn.query_row(&sql, [], |r| r.get(0)).unwrap();
            assert_eq!(bound_hit, inlined_hit, "{value:?}");
            assert!(inlined_hit >= 1, "{value:?}");
        }
        let read = |table: &str| -> Vec<(i64, SqlValue, String)> {
            let mut stmt = conn
                .prepare(&format!("SELECT n, v, typeof(v) FROM {table} ORDER BY n"))
                .unwrap();
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let bound = read("bound");
        let inlined = read("inlined");
        assert_eq!(bound.len(), values.len());
        for (b, i) in bound.iter().zip(&inlined) {
            // Compare reals bit for bit: -0.0 == 0.0 would hide a sign loss.
            match (&b.1, &i.1) {
                (SqlValue::Real(x), SqlValue::Real(y)) => {
                    assert_eq!(x.to_bits(), y.to_bits(), "{x} vs {y}");
                }
                _ => assert_eq!(b, i),
            }
            assert_eq!(b.2, i.2);
        }

        // The same through typed columns (affinity applies to both the same way).
        let sql = inline_params(
            "INSERT INTO typed (n, t, i, r) VALUES (?, ?, ?, ?)",
            &[
                Value::Integer(1),
                text("it's; --"),
                Value::Integer(-42),
                Value::Real(2.5),
            ],
        )
        .unwrap();
        conn.execute(&sql, []).unwrap();
        let row: (String, i64, f64) = conn
            .query_row("SELECT t, i, r FROM typed WHERE n = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(row, ("it's; --".to_owned(), -42, 2.5));
    }

    /// A batch built from hostile text keeps exactly its statements.
    #[test]
    fn hostile_text_cannot_add_statements() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (v TEXT)").unwrap();
        let sql = inline_params(
            "INSERT INTO t (v) VALUES (?)",
            &[text("x'); DROP TABLE t; --")],
        )
        .unwrap();
        assert!(!sql.contains(';') && !sql.contains("--"), "{sql}");
        conn.execute_batch(&sql).unwrap();
        let v: String = conn.query_row("SELECT v FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(v, "x'); DROP TABLE t; --");
    }
}
