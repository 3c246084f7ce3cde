//! Embeds the crate's SQL from `sql/` (a symlink to the repository's one
//! `sql/` folder, shared with the Python package; `cargo package` copies the
//! files it points to, so the published crate is self-contained):
//! every migration and every server function (with `include_str!`, no
//! copies), so that a new file needs no change to the Rust code, and the
//! SQLSTATE table `errors.tsv`, checked here and compiled into `error.rs`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn sql_files(dir: &Path) -> Vec<PathBuf> {
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    files
}

fn embed(out: &mut String, doc: &str, name: &str, files: &[PathBuf]) {
    writeln!(out, "/// {doc}").unwrap();
    writeln!(out, "pub(crate) const {name}: &[(&str, &str)] = &[").unwrap();
    for path in files {
        let path = path.canonicalize().unwrap();
        let file = path.file_name().unwrap().to_str().unwrap();
        writeln!(out, "    ({file:?}, include_str!({:?})),", path.to_str().unwrap()).unwrap();
    }
    out.push_str("];\n");
}

/// `errors.tsv` as a Rust table of (sqlstate, kind, when) rows.
fn error_table(path: &Path) -> String {
    println!("cargo:rerun-if-changed={}", path.display());
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut out =
        String::from("/// The rows of `sql/errors.tsv`: (sqlstate or class, kind's Python name, when).\n");
    out.push_str("pub(crate) const ERROR_RULES: &[(&str, &str, &str)] = &[\n");
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') || line.starts_with("sqlstate\t") {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let ok = fields.len() == 4
            && matches!(fields[0].len(), 2 | 5)
            && (fields[3] == "-" || fields[3] == "queue" || fields[3].starts_with("constraint="));
        assert!(ok, "{}:{}: not 'sqlstate, condition, kind, when': {line:?}", path.display(), n + 1);
        writeln!(out, "    ({:?}, {:?}, {:?}),", fields[0], fields[2], fields[3]).unwrap();
    }
    out.push_str("];\n");
    out
}

fn main() {
    let sql = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("sql");
    let mut out = String::new();
    embed(
        &mut out,
        "(file name, text) of every migration, in file-name order.",
        "MIGRATION_FILES",
        &sql_files(&sql.join("migrations")),
    );
    embed(
        &mut out,
        "(file name, text) of every server function, in file-name order.",
        "FUNCTION_FILES",
        &sql_files(&sql.join("functions")),
    );
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    std::fs::write(out_dir.join("sql_files.rs"), out).unwrap();
    std::fs::write(out_dir.join("error_rules.rs"), error_table(&sql.join("errors.tsv"))).unwrap();
}
