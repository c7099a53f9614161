//! A small SQL tokenizer, for two checks only: where a file's last statement
//! ends (so an HTTP request can append to it without an empty statement or a
//! trailing `--` comment swallowing what follows), and whether a file holds a
//! transaction-control statement (which would break the transaction the
//! migration runs in).
//!
//! Execution never depends on it: the embedded target hands the whole file
//! to SQLite (`execute_batch`), and SQLite Cloud splits statements itself.
//! It follows SQLite's tokenizer for strings (`'...'` with `''`), quoted
//! identifiers (`"..."`, `` `...` ``, `[...]`), blob literals and comments
//! (`-- ...`, `/* ... */`), and, like `sqlite3_complete`, knows that the `;`s
//! inside `CREATE TRIGGER ... BEGIN ... END` do not end the statement.

use std::ops::Range;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A keyword or an unquoted identifier (ASCII letters, digits, `_`, `$`,
    /// and any non-ASCII character), as a byte range.
    Word(Range<usize>),
    Semicolon,
    /// Anything else that is significant: literals, quoted identifiers,
    /// numbers, operators, punctuation.
    Other(Range<usize>),
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// Tokens without whitespace and comments. Unterminated quotes and block
/// comments run to the end of the text, as in SQLite (which then reports the
/// error when it runs the file).
fn tokens(sql: &str) -> Vec<Token> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b if b.is_ascii_whitespace() => i += 1,
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = bytes[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(bytes.len(), |p| i + p + 1);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = sql[i + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |p| i + 2 + p + 2);
            }
            b';' => {
                out.push(Token::Semicolon);
                i += 1;
            }
            b'\'' | b'"' | b'`' => {
                let end = quoted_end(bytes, i, b);
                out.push(Token::Other(i..end));
                i = end;
            }
            b'[' => {
                let end = bytes[i..]
                    .iter()
                    .position(|&c| c == b']')
                    .map_or(bytes.len(), |p| i + p + 1);
                out.push(Token::Other(i..end));
                i = end;
            }
            // Blob literal: X'..' (otherwise `x` starts a word).
            b'x' | b'X' if bytes.get(i + 1) == Some(&b'\'') => {
                let end = quoted_end(bytes, i + 1, b'\'');
                out.push(Token::Other(i..end));
                i = end;
            }
            b if b.is_ascii_digit() => {
                // Numbers (including 1e5, 0x1F, 1_000): digits glued to word bytes.
                let end = bytes[i..]
                    .iter()
                    .position(|&c| !(is_word_byte(c) || c == b'.'))
                    .map_or(bytes.len(), |p| i + p);
                out.push(Token::Other(i..end));
                i = end;
            }
            b if is_word_byte(b) => {
                let end = bytes[i..]
                    .iter()
                    .position(|&c| !is_word_byte(c))
                    .map_or(bytes.len(), |p| i + p);
                out.push(Token::Word(i..end));
                i = end;
            }
            _ => {
                // One byte of punctuation; non-ASCII bytes are word bytes, so
                // this never splits a UTF-8 character.
                out.push(Token::Other(i..i + 1));
                i += 1;
            }
        }
    }
    out
}

/// The index just past the closing `quote` of the quoted text starting at
/// `start`; a doubled quote is an escape.
fn quoted_end(bytes: &[u8], start: usize, quote: u8) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

/// The SQL up to the end of its last significant token: trailing
/// whitespace, comments and `;`s removed. Empty for a file of comments only.
pub(crate) fn trim_tail(sql: &str) -> &str {
    let end = tokens(sql)
        .iter()
        .rev()
        .find_map(|t| match t {
            Token::Word(r) | Token::Other(r) => Some(r.end),
            Token::Semicolon => None,
        })
        .unwrap_or(0);
    &sql[..end]
}

/// The first transaction-control statement (`BEGIN`, `COMMIT`, `END`,
/// `ROLLBACK` other than `ROLLBACK TO`) in the SQL, as its leading keyword
/// in upper case. `SAVEPOINT`, `RELEASE` and `ROLLBACK TO` are allowed: inside
/// the migration's transaction they never commit it.
pub(crate) fn transaction_control(sql: &str) -> Option<String> {
    let tokens = tokens(sql);
    let word = |t: &Token| match t {
        Token::Word(r) => Some(sql[r.clone()].to_ascii_uppercase()),
        _ => None,
    };
    let mut statement: Vec<&Token> = Vec::new();
    let mut trigger = TriggerState::default();
    for token in &tokens {
        if *token == Token::Semicolon {
            if trigger.is_open() {
                statement.push(token);
                continue;
            }
            if let Some(keyword) = classify(&statement, &word) {
                return Some(keyword);
            }
            statement.clear();
            trigger = TriggerState::default();
            continue;
        }
        statement.push(token);
        if statement.len() <= 4 && !trigger.in_trigger {
            let leading: Vec<String> = statement.iter().filter_map(|t| word(t)).collect();
            trigger.in_trigger = is_create_trigger(&leading);
        } else if trigger.in_trigger
            && let Some(w) = word(token)
        {
            trigger.see(&w);
        }
    }
    classify(&statement, &word)
}

/// Inside a `CREATE TRIGGER`: whether its `BEGIN ... END` body has started
/// and ended. `CASE ... END` is counted so its `END` is not taken for the
/// body's.
#[derive(Default)]
struct TriggerState {
    in_trigger: bool,
    body_started: bool,
    body_ended: bool,
    case_depth: usize,
}

impl TriggerState {
    fn is_open(&self) -> bool {
        self.in_trigger && !self.body_ended
    }

    fn see(&mut self, word: &str) {
        match word {
            "CASE" => self.case_depth += 1,
            "END" if self.case_depth > 0 => self.case_depth -= 1,
            "END" if self.body_started => self.body_ended = true,
            "BEGIN" if !self.body_started => self.body_started = true,
            _ => {}
        }
    }
}

/// `CREATE [TEMP|TEMPORARY] TRIGGER`.
fn is_create_trigger(leading: &[String]) -> bool {
    match leading {
        [create, trigger, ..] if create == "CREATE" && trigger == "TRIGGER" => true,
        [create, temp, trigger, ..]
            if create == "CREATE"
                && (temp == "TEMP" || temp == "TEMPORARY")
                && trigger == "TRIGGER" =>
        {
            true
        }
        _ => false,
    }
}

fn classify(statement: &[&Token], word: &impl Fn(&Token) -> Option<String>) -> Option<String> {
    let mut words = statement.iter().map(|t| word(t));
    let first = words.next().flatten()?;
    match first.as_str() {
        "BEGIN" | "COMMIT" | "END" => Some(first),
        "ROLLBACK" => {
            let mut next = words.next().flatten();
            if next.as_deref() == Some("TRANSACTION") {
                next = words.next().flatten();
            }
            (next.as_deref() != Some("TO")).then_some(first)
        }
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const INITIAL: &str = include_str!("../../../migrations/0001_initial.sql");

    #[test]
    fn trims_trailing_semicolons_comments_and_space() {
        assert_eq!(trim_tail("SELECT 1;"), "SELECT 1");
        assert_eq!(trim_tail("SELECT 1 ; ;\n-- done\n/* x */ \n"), "SELECT 1");
        assert_eq!(trim_tail("SELECT 1 -- no newline"), "SELECT 1");
        assert_eq!(trim_tail("SELECT ';' -- ;"), "SELECT ';'");
        assert_eq!(
            trim_tail("SELECT '-- not a comment'"),
            "SELECT '-- not a comment'"
        );
        assert_eq!(trim_tail("SELECT \"a;b\";"), "SELECT \"a;b\"");
        assert_eq!(trim_tail("-- only comments\n/* and more */;"), "");
        assert_eq!(trim_tail(""), "");
        assert_eq!(trim_tail("SELECT 'unterminated;"), "SELECT 'unterminated;");
        assert_eq!(trim_tail("SELECT 1 /* unterminated"), "SELECT 1");
        assert_eq!(trim_tail("SELECT 'é' ; "), "SELECT 'é'");
        assert!(trim_tail(INITIAL).ends_with("created_at  INTEGER NOT NULL\n)"));
    }

    #[test]
    fn the_initial_migration_has_no_transaction_control() {
        assert_eq!(transaction_control(INITIAL), None);
    }

    #[test]
    fn finds_transaction_control_statements() {
        for (sql, keyword) in [
            ("CREATE TABLE a (x); COMMIT; CREATE TABLE b (y);", "COMMIT"),
            ("begin; CREATE TABLE a (x);", "BEGIN"),
            ("BEGIN IMMEDIATE TRANSACTION", "BEGIN"),
            ("CREATE TABLE a (x);\nEND TRANSACTION;", "END"),
            ("ROLLBACK", "ROLLBACK"),
            ("ROLLBACK TRANSACTION;", "ROLLBACK"),
            ("-- comment\n/* c */ commit", "COMMIT"),
            (
                "CREATE TRIGGER t AFTER INSERT ON a BEGIN SELECT 1; END; COMMIT;",
                "COMMIT",
            ),
        ] {
            assert_eq!(transaction_control(sql).as_deref(), Some(keyword), "{sql}");
        }
    }

    #[test]
    fn allows_savepoints_triggers_and_keywords_elsewhere() {
        for sql in [
            "SAVEPOINT s; CREATE TABLE a (x); ROLLBACK TO s; RELEASE s;",
            "ROLLBACK TRANSACTION TO SAVEPOINT s",
            "CREATE TABLE \"commit\" (\"end\" TEXT); SELECT 'COMMIT; END';",
            "CREATE TABLE t (x); -- COMMIT;\n/* ROLLBACK; */",
            // The body's `;`s and a CASE ... END inside it.
            "CREATE TRIGGER t AFTER UPDATE ON a WHEN CASE WHEN 1 THEN 1 END BEGIN \
             UPDATE a SET x = CASE WHEN x > 0 THEN 1 ELSE 0 END; \
             INSERT INTO b VALUES (1);\nEND;\nCREATE TABLE c (y);",
            "CREATE TEMP TRIGGER t BEFORE DELETE ON a BEGIN SELECT RAISE(ABORT, 'no'); END",
            "CREATE TABLE [begin] (x); SELECT X'00' ; SELECT 1e5;",
        ] {
            assert_eq!(transaction_control(sql), None, "{sql}");
        }
    }
}
