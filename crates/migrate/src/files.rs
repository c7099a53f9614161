//! Migration files: `NNNN_name.sql` in one directory, ordered by version.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::MigrateError;

/// One migration file, read and checked.
#[derive(Clone, PartialEq, Eq)]
pub struct MigrationFile {
    /// The integer before the first `_`.
    pub version: u32,
    /// The file name, e.g. `0001_initial.sql`: what `schema_migrations.name`
    /// records and what messages show.
    pub name: String,
    pub path: PathBuf,
    /// The file's text.
    pub sql: String,
    /// Lower-case hex SHA-256 of the file's bytes.
    pub checksum: String,
}

impl std::fmt::Debug for MigrationFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MigrationFile")
            .field("version", &self.version)
            .field("name", &self.name)
            .field("checksum", &self.checksum)
            .finish_non_exhaustive()
    }
}

impl MigrationFile {
    /// A migration from its file name and contents (no file system access).
    /// Refuses a name that is not `NNNN_name.sql`, text that is not UTF-8,
    /// and SQL holding transaction control (`BEGIN`, `COMMIT`, `END`,
    /// `ROLLBACK`): each migration already runs in a transaction of its own.
    pub fn from_bytes(
        path: impl Into<PathBuf>,
        name: &str,
        bytes: &[u8],
    ) -> Result<MigrationFile, MigrateError> {
        let path = path.into();
        let version = parse_file_name(name).map_err(|reason| MigrateError::BadFileName {
            path: path.clone(),
            reason,
        })?;
        let sql = std::str::from_utf8(bytes)
            .map_err(|_| MigrateError::NotUtf8 { path: path.clone() })?
            .to_owned();
        if let Some(keyword) = crate::sql::transaction_control(&sql) {
            return Err(MigrateError::TransactionControl {
                name: name.to_owned(),
                keyword,
            });
        }
        Ok(MigrationFile {
            version,
            name: name.to_owned(),
            path,
            sql,
            checksum: checksum(bytes),
        })
    }
}

/// Lower-case hex SHA-256.
pub fn checksum(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The version of a migration file name: one or more ASCII digits, `_`, a
/// name of ASCII letters, digits, `_` and `-`, then `.sql` (lower case).
pub fn parse_file_name(name: &str) -> Result<u32, &'static str> {
    let stem = name
        .strip_suffix(".sql")
        .ok_or("the name must end in `.sql` (lower case)")?;
    let (digits, label) = stem
        .split_once('_')
        .ok_or("expected NNNN_name.sql: no `_` after the version")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected NNNN_name.sql: the name must start with the version's digits");
    }
    if label.is_empty()
        || !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
    {
        return Err(
            "expected NNNN_name.sql: the part after the version must be ASCII letters, digits, `_` or `-`",
        );
    }
    digits
        .parse::<u32>()
        .map_err(|_| "the version is too large (at most 4294967295)")
}

/// Reads every migration in `dir`, ordered by version. Files not ending in
/// `.sql` (in any case) are ignored; every other entry must be a well-named
/// migration file, and versions must be unique.
pub fn load_dir(dir: &Path) -> Result<Vec<MigrationFile>, MigrateError> {
    let read_dir = |source| MigrateError::ReadDir {
        dir: dir.to_path_buf(),
        source,
    };
    let mut migrations = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_dir)? {
        let entry = entry.map_err(read_dir)?;
        let path = entry.path();
        let lossy = entry.file_name().to_string_lossy().into_owned();
        if !lossy.to_ascii_lowercase().ends_with(".sql") {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            return Err(MigrateError::BadFileName {
                path,
                reason: "the file name is not valid UTF-8",
            });
        };
        // Follows symbolic links: a linked migration file is fine.
        let is_file = std::fs::metadata(&path)
            .map_err(|source| MigrateError::ReadFile {
                path: path.clone(),
                source,
            })?
            .is_file();
        if !is_file {
            return Err(MigrateError::BadFileName {
                path,
                reason: "not a regular file",
            });
        }
        // Check the name before reading, so a typo is reported as such.
        parse_file_name(&name).map_err(|reason| MigrateError::BadFileName {
            path: path.clone(),
            reason,
        })?;
        let bytes = std::fs::read(&path).map_err(|source| MigrateError::ReadFile {
            path: path.clone(),
            source,
        })?;
        migrations.push(MigrationFile::from_bytes(path, &name, &bytes)?);
    }
    sort_and_check(migrations)
}

/// Orders migrations by version and refuses duplicate versions.
pub fn sort_and_check(
    mut migrations: Vec<MigrationFile>,
) -> Result<Vec<MigrationFile>, MigrateError> {
    migrations.sort_by(|a, b| a.version.cmp(&b.version).then_with(|| a.name.cmp(&b.name)));
    if let Some(pair) = migrations.windows(2).find(|w| w[0].version == w[1].version) {
        return Err(MigrateError::DuplicateVersion {
            version: pair[0].version,
            first: pair[0].name.clone(),
            second: pair[1].name.clone(),
        });
    }
    Ok(migrations)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        assert_eq!(parse_file_name("0001_initial.sql"), Ok(1));
        assert_eq!(parse_file_name("0042_add-index_2.sql"), Ok(42));
        assert_eq!(parse_file_name("12345_big.sql"), Ok(12345));
        assert_eq!(parse_file_name("1_x.sql"), Ok(1));
        for bad in [
            "0001-initial.sql",
            "0001_.sql",
            "_initial.sql",
            "v1_initial.sql",
            "0001_initial.SQL",
            "0001_init ial.sql",
            "0001_initial.sql.sql",
            "0001_initial",
            "99999999999_x.sql",
            "0001_inïtial.sql",
        ] {
            assert!(parse_file_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn checksum_is_lower_hex_sha256() {
        assert_eq!(
            checksum(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn loads_in_version_order_and_ignores_other_files() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "0010_ten.sql", "SELECT 10;");
        write(dir.path(), "0002_two.sql", "SELECT 2;");
        write(dir.path(), "README.md", "notes");
        write(dir.path(), "0003_three.sql.bak", "old");
        std::fs::create_dir(dir.path().join("archive")).unwrap();
        let files = load_dir(dir.path()).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["0002_two.sql", "0010_ten.sql"]);
        assert_eq!(files[0].version, 2);
        assert_eq!(files[0].sql, "SELECT 2;");
        assert_eq!(files[0].checksum, checksum(b"SELECT 2;"));
    }

    #[test]
    fn a_misnamed_sql_file_is_an_error() {
        for name in ["0002-two.sql", "two.sql", "0002_two.SQL"] {
            let dir = tempfile::tempdir().unwrap();
            write(dir.path(), "0001_one.sql", "SELECT 1;");
            write(dir.path(), name, "SELECT 2;");
            let err = load_dir(dir.path()).unwrap_err();
            assert!(matches!(err, MigrateError::BadFileName { .. }), "{err:?}");
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn a_directory_named_like_sql_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("0001_x.sql")).unwrap();
        assert!(matches!(
            load_dir(dir.path()),
            Err(MigrateError::BadFileName { .. })
        ));
    }

    #[test]
    fn duplicate_versions_are_an_error() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "0001_one.sql", "SELECT 1;");
        write(dir.path(), "001_uno.sql", "SELECT 1;");
        let err = load_dir(dir.path()).unwrap_err();
        assert!(
            matches!(err, MigrateError::DuplicateVersion { version: 1, .. }),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("0001_one.sql") && text.contains("001_uno.sql"),
            "{text}"
        );
    }

    #[test]
    fn transaction_control_and_bad_utf8_are_refused() {
        let err = MigrationFile::from_bytes("x", "0001_x.sql", b"CREATE TABLE a (x); COMMIT;")
            .unwrap_err();
        assert!(
            matches!(err, MigrateError::TransactionControl { ref keyword, .. } if keyword == "COMMIT"),
            "{err:?}"
        );
        let err = MigrationFile::from_bytes("x", "0001_x.sql", b"SELECT '\xff'").unwrap_err();
        assert!(matches!(err, MigrateError::NotUtf8 { .. }), "{err:?}");
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_dir(&dir.path().join("nope")).unwrap_err();
        assert!(matches!(err, MigrateError::ReadDir { .. }), "{err:?}");
    }
}
