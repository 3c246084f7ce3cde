//! Lists the migration files of `../sql/migrations` so that the crate embeds
//! every one of them (with `include_str!`, no copies) and a new migration
//! needs no change to the Rust code.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../sql/migrations");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    let mut out = String::from("/// (file name, text) of every migration, in file-name order.\n");
    out.push_str("pub(crate) const MIGRATION_FILES: &[(&str, &str)] = &[\n");
    for path in &files {
        let path = path.canonicalize().unwrap();
        let name = path.file_name().unwrap().to_str().unwrap();
        writeln!(out, "    ({name:?}, include_str!({:?})),", path.to_str().unwrap()).unwrap();
    }
    out.push_str("];\n");
    let target = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("migrations.rs");
    std::fs::write(target, out).unwrap();
}
