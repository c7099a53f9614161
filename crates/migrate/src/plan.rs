//! Planning: which migrations are pending, and which problems forbid going on.
//! Pure: applied rows and files in, a status or a plan out.

use std::collections::BTreeMap;

use crate::error::MigrateError;
use crate::files::MigrationFile;

/// A row of `schema_migrations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedMigration {
    pub version: u32,
    pub name: String,
    pub checksum: String,
    /// Unix seconds.
    pub applied_at: i64,
}

/// The state of one version, for `--status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Applied, and the file is unchanged.
    Applied { applied_at: i64 },
    /// Not applied yet; will be applied.
    Pending,
    /// Applied, but the file has changed since.
    Changed {
        applied_checksum: String,
        applied_at: i64,
    },
    /// Applied, but there is no file with this version.
    MissingFile { applied_at: i64 },
    /// Not applied, but a later version is: it would never be applied.
    OutOfOrder { highest_applied: u32 },
}

/// One version in [`status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEntry {
    pub version: u32,
    /// The file name (or the recorded name when the file is missing).
    pub name: String,
    /// The file's checksum; `None` when the file is missing.
    pub checksum: Option<String>,
    pub state: State,
}

impl StatusEntry {
    pub fn is_problem(&self) -> bool {
        !matches!(self.state, State::Applied { .. } | State::Pending)
    }

    /// The error this entry stands for, when it is a problem.
    pub fn problem(&self) -> Option<MigrateError> {
        let version = self.version;
        let name = self.name.clone();
        match &self.state {
            State::Applied { .. } | State::Pending => None,
            State::Changed {
                applied_checksum, ..
            } => Some(MigrateError::Changed {
                version,
                name,
                applied_checksum: applied_checksum.clone(),
                file_checksum: self.checksum.clone().unwrap_or_default(),
            }),
            State::MissingFile { .. } => Some(MigrateError::MissingFile { version, name }),
            State::OutOfOrder { highest_applied } => Some(MigrateError::OutOfOrder {
                version,
                name,
                highest_applied: *highest_applied,
            }),
        }
    }
}

/// Every version that is applied or has a file, in version order, with its
/// state. `files` must be sorted by version and free of duplicates (as
/// [`crate::load_dir`] returns them).
pub fn status(applied: &[AppliedMigration], files: &[MigrationFile]) -> Vec<StatusEntry> {
    let highest_applied = applied.iter().map(|a| a.version).max();
    let applied_by_version: BTreeMap<u32, &AppliedMigration> =
        applied.iter().map(|a| (a.version, a)).collect();
    let files_by_version: BTreeMap<u32, &MigrationFile> =
        files.iter().map(|f| (f.version, f)).collect();
    let mut versions: Vec<u32> = applied_by_version
        .keys()
        .chain(files_by_version.keys())
        .copied()
        .collect();
    versions.sort_unstable();
    versions.dedup();
    versions
        .into_iter()
        .filter_map(|version| {
            let row = applied_by_version.get(&version);
            let file = files_by_version.get(&version);
            let state = match (row, file) {
                (Some(row), Some(file)) if row.checksum == file.checksum => State::Applied {
                    applied_at: row.applied_at,
                },
                (Some(row), Some(_)) => State::Changed {
                    applied_checksum: row.checksum.clone(),
                    applied_at: row.applied_at,
                },
                (Some(row), None) => State::MissingFile {
                    applied_at: row.applied_at,
                },
                (None, Some(_)) => match highest_applied {
                    Some(highest) if highest > version => State::OutOfOrder {
                        highest_applied: highest,
                    },
                    _ => State::Pending,
                },
                (None, None) => return None,
            };
            Some(StatusEntry {
                version,
                name: file.map_or_else(
                    || row.map(|r| r.name.clone()).unwrap_or_default(),
                    |f| f.name.clone(),
                ),
                checksum: file.map(|f| f.checksum.clone()),
                state,
            })
        })
        .collect()
}

/// The migrations to apply, in order; or the first problem, in version
/// order: a changed applied file, an applied version without a file, or an
/// unapplied file below the highest applied version.
pub fn plan(
    applied: &[AppliedMigration],
    files: &[MigrationFile],
) -> Result<Vec<MigrationFile>, MigrateError> {
    let entries = status(applied, files);
    if let Some(problem) = entries.iter().find_map(StatusEntry::problem) {
        return Err(problem);
    }
    let pending: Vec<u32> = entries
        .iter()
        .filter(|e| e.state == State::Pending)
        .map(|e| e.version)
        .collect();
    Ok(files
        .iter()
        .filter(|f| pending.contains(&f.version))
        .cloned()
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn file(version: u32, name: &str, sql: &str) -> MigrationFile {
        MigrationFile::from_bytes(name, name, sql.as_bytes()).map_or_else(
            |e| panic!("{e}"),
            |f| {
                assert_eq!(f.version, version);
                f
            },
        )
    }

    fn applied(f: &MigrationFile) -> AppliedMigration {
        AppliedMigration {
            version: f.version,
            name: f.name.clone(),
            checksum: f.checksum.clone(),
            applied_at: 1_700_000_000,
        }
    }

    fn names(files: &[MigrationFile]) -> Vec<&str> {
        files.iter().map(|f| f.name.as_str()).collect()
    }

    fn three() -> Vec<MigrationFile> {
        vec![
            file(1, "0001_a.sql", "CREATE TABLE a (x);"),
            file(2, "0002_b.sql", "CREATE TABLE b (x);"),
            file(10, "0010_c.sql", "CREATE TABLE c (x);"),
        ]
    }

    #[test]
    fn nothing_applied_means_everything_pending() {
        let files = three();
        let pending = plan(&[], &files).unwrap();
        assert_eq!(names(&pending), ["0001_a.sql", "0002_b.sql", "0010_c.sql"]);
    }

    #[test]
    fn applied_ones_are_skipped() {
        let files = three();
        let pending = plan(&[applied(&files[0])], &files).unwrap();
        assert_eq!(names(&pending), ["0002_b.sql", "0010_c.sql"]);
        let all: Vec<_> = files.iter().map(applied).collect();
        assert!(plan(&all, &files).unwrap().is_empty());
    }

    #[test]
    fn no_files_and_nothing_applied() {
        assert!(plan(&[], &[]).unwrap().is_empty());
        assert!(status(&[], &[]).is_empty());
    }

    #[test]
    fn a_changed_file_is_refused_with_both_checksums() {
        let files = three();
        let mut row = applied(&files[0]);
        row.checksum = "0".repeat(64);
        let err = plan(&[row, applied(&files[1])], &files).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, MigrateError::Changed { version: 1, .. }),
            "{err:?}"
        );
        assert!(text.contains("0001_a.sql"), "{text}");
        assert!(text.contains(&"0".repeat(64)), "{text}");
        assert!(text.contains(&files[0].checksum), "{text}");
    }

    #[test]
    fn an_applied_version_without_a_file_is_refused() {
        let files = three();
        let gone = AppliedMigration {
            version: 3,
            name: "0003_gone.sql".into(),
            checksum: "ab".repeat(32),
            applied_at: 5,
        };
        let rows = [applied(&files[0]), applied(&files[1]), gone];
        let err = plan(&rows, &files).unwrap_err();
        assert!(
            matches!(err, MigrateError::MissingFile { version: 3, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("0003_gone.sql"), "{err}");
    }

    #[test]
    fn a_gap_below_the_highest_applied_is_refused() {
        let files = three();
        let rows = [applied(&files[0]), applied(&files[2])];
        let err = plan(&rows, &files).unwrap_err();
        assert!(
            matches!(
                err,
                MigrateError::OutOfOrder {
                    version: 2,
                    highest_applied: 10,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("0002_b.sql"), "{err}");
    }

    #[test]
    fn status_lists_every_version_with_its_state() {
        let files = three();
        let mut changed = applied(&files[1]);
        changed.checksum = "f".repeat(64);
        let gone = AppliedMigration {
            version: 11,
            name: "0011_gone.sql".into(),
            checksum: "e".repeat(64),
            applied_at: 7,
        };
        let entries = status(&[applied(&files[0]), changed, gone], &files);
        let summary: Vec<(u32, &str, bool)> = entries
            .iter()
            .map(|e| (e.version, e.name.as_str(), e.is_problem()))
            .collect();
        assert_eq!(
            summary,
            [
                (1, "0001_a.sql", false),
                (2, "0002_b.sql", true),
                (10, "0010_c.sql", true),
                (11, "0011_gone.sql", true),
            ]
        );
        assert_eq!(
            entries[0].state,
            State::Applied {
                applied_at: 1_700_000_000
            }
        );
        assert!(matches!(entries[1].state, State::Changed { .. }));
        assert_eq!(
            entries[2].state,
            State::OutOfOrder {
                highest_applied: 11
            }
        );
        assert_eq!(entries[3].state, State::MissingFile { applied_at: 7 });
        assert_eq!(entries[3].checksum, None);
    }

    #[test]
    fn pending_after_all_applied_is_fine() {
        let files = three();
        let rows = [applied(&files[0]), applied(&files[1])];
        let entries = status(&rows, &files);
        assert_eq!(entries[2].state, State::Pending);
        assert_eq!(names(&plan(&rows, &files).unwrap()), ["0010_c.sql"]);
    }
}
