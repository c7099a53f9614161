//! Embeds the schema version the code expects: the highest `NNNN_*.sql` in
//! `migrations/`, so `/ready` can tell whether the database is up to date.

use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    println!("cargo::rerun-if-changed={}", dir.display());
    let mut latest = 0u32;
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".sql") else {
                continue;
            };
            let Some((number, _)) = stem.split_once('_') else {
                continue;
            };
            if let Ok(version) = number.parse::<u32>() {
                latest = latest.max(version);
            }
        }
    }
    let out = Path::new(&std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into())).join("schema.rs");
    let code = format!(
        "/// The schema version (latest migration) this build expects.\npub const SCHEMA_VERSION: u32 = {latest};\n"
    );
    if let Err(e) = std::fs::write(&out, code) {
        panic!("writing {}: {e}", out.display());
    }
}
