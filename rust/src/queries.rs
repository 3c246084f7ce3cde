//! The named queries, scripts, migrations and server functions, embedded
//! from the one `sql/` folder that the Python package ships too (no copies:
//! `rust/sql` is a symlink to it).
//!
//! They use psql-style placeholders for the schema (`:"schema"` and
//! `:'schema'`), replaced here by the validated schema name exactly as
//! Python's `_sql.render` does, and `$n` parameters passed natively.
//! [`Query`] is only the registry of the texts: every call goes through the
//! typed query layer (`crate::calls`, one `Db` method per query, named as
//! its file), which holds the parameter types.

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::validate::validate_schema_name;

mod files {
    include!(concat!(env!("OUT_DIR"), "/sql_files.rs"));
}

macro_rules! queries {
    ($($variant:ident => $file:literal,)*) => {
        /// One named query of `sql/queries/`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Query { $($variant,)* }

        impl Query {
            pub(crate) const ALL: &'static [Query] = &[$(Query::$variant,)*];

            /// The file's text as shipped.
            pub(crate) fn text(self) -> &'static str {
                match self {
                    $(Query::$variant => include_str!(concat!("../sql/queries/", $file, ".sql")),)*
                }
            }

            /// The file's name without `.sql`, as Python names the query.
            #[cfg_attr(not(test), allow(dead_code))]
            pub(crate) fn name(self) -> &'static str {
                match self { $(Query::$variant => $file,)* }
            }
        }
    };
}

queries! {
    ArchiveGet => "archive_get",
    ArchiveList => "archive_list",
    ArchivePrune => "archive_prune",
    ArchivePurge => "archive_purge",
    ArchiveRedrive => "archive_redrive",
    ArchiveWait => "archive_wait",
    FunctionList => "function_list",
    FunctionRecord => "function_record",
    MessageArchive => "message_archive",
    MessageCancel => "message_cancel",
    MessageCancelled => "message_cancelled",
    MessageDelete => "message_delete",
    MessageDequeue => "message_dequeue",
    MessageEnqueue => "message_enqueue",
    MessageExtend => "message_extend",
    MessageFail => "message_fail",
    MessageInsert => "message_insert",
    MessagePeek => "message_peek",
    MessageRelease => "message_release",
    MessageSetProgress => "message_set_progress",
    MetricsScrape => "metrics_scrape",
    MigrationInstalled => "migration_installed",
    MigrationList => "migration_list",
    MigrationLock => "migration_lock",
    MigrationRecord => "migration_record",
    QueueCreate => "queue_create",
    QueueDelete => "queue_delete",
    QueueGet => "queue_get",
    QueueList => "queue_list",
    QueuePurge => "queue_purge",
    QueueSetArchiveRetention => "queue_set_archive_retention",
    QueueSetPaused => "queue_set_paused",
    QueueStats => "queue_stats",
    QueueUpdate => "queue_update",
    RoleGrant => "role_grant",
    ScheduleDelete => "schedule_delete",
    ScheduleDue => "schedule_due",
    ScheduleFire => "schedule_fire",
    ScheduleList => "schedule_list",
    ScheduleSetPaused => "schedule_set_paused",
    ScheduleUpsert => "schedule_upsert",
    WorkerAlive => "worker_alive",
    WorkerList => "worker_list",
    WorkerReap => "worker_reap",
    WorkerRegister => "worker_register",
    WorkerStop => "worker_stop",
}

/// `sql/schema_bootstrap.sql`: creates the schema and the two ledgers.
pub(crate) const SCHEMA_BOOTSTRAP: &str = include_str!("../sql/schema_bootstrap.sql");
/// `sql/uninstall.sql`: drops every pgqrs object.
pub(crate) const UNINSTALL: &str = include_str!("../sql/uninstall.sql");

/// Substitute the schema placeholders with the (validated) schema name.
pub(crate) fn render(text: &str, schema: &str) -> Result<String> {
    validate_schema_name(schema)?;
    Ok(text.replace(":\"schema\"", &format!("\"{schema}\"")).replace(":'schema'", &format!("'{schema}'")))
}

/// Every named query rendered for one schema, indexed by [`Query`].
#[derive(Debug)]
pub(crate) struct Rendered {
    texts: Vec<String>,
}

impl Rendered {
    pub(crate) fn new(schema: &str) -> Result<Rendered> {
        let texts = Query::ALL.iter().map(|q| render(q.text(), schema)).collect::<Result<_>>()?;
        Ok(Rendered { texts })
    }

    pub(crate) fn get(&self, q: Query) -> &str {
        &self.texts[q as usize]
    }
}

/// One file of `sql/migrations/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// The number the file name starts with (1, 2, ...).
    pub version: i32,
    /// The rest of the file name, without `.sql`.
    pub name: String,
    /// The file's text as shipped (before the schema is substituted).
    pub text: &'static str,
}

impl Migration {
    /// sha256 (hex) of the file as shipped: the checksum both clients record.
    pub fn checksum(&self) -> String {
        let digest = Sha256::digest(self.text.as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// `NNNN_name`, as the verify report names migrations.
    pub fn label(&self) -> String {
        format!("{:04}_{}", self.version, self.name)
    }
}

/// The migrations in version order; versions must be 1, 2, 3... without gaps.
pub fn migrations() -> Result<Vec<Migration>> {
    let mut found = Vec::new();
    for (file, text) in files::MIGRATION_FILES {
        let stem = file.strip_suffix(".sql").unwrap_or(file);
        let parsed = stem.split_once('_').and_then(|(num, name)| {
            let valid_name = !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            (num.len() == 4 && valid_name).then(|| num.parse::<i32>().ok()).flatten().map(|v| (v, name))
        });
        let Some((version, name)) = parsed else {
            return Err(Error::new(
                crate::ErrorKind::Database,
                format!("migration file {file:?} is not named NNNN_name.sql"),
            ));
        };
        found.push(Migration { version, name: name.to_string(), text });
    }
    for (i, m) in found.iter().enumerate() {
        let expected = i as i32 + 1;
        if m.version != expected {
            return Err(Error::new(
                crate::ErrorKind::Database,
                format!("migration versions must be consecutive; missing {expected:04}"),
            ));
        }
    }
    Ok(found)
}

/// One file of `sql/functions/`: the current definition of one server function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    /// The function's name (the file's name without `.sql`).
    pub name: String,
    /// The file's text as shipped (before the schema is substituted).
    pub text: &'static str,
}

impl Function {
    /// sha256 (hex) of the file as shipped: the checksum both clients record.
    pub fn checksum(&self) -> String {
        let digest = Sha256::digest(self.text.as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// `function name`, as install and the verify report name functions.
    pub fn label(&self) -> String {
        format!("function {}", self.name)
    }
}

/// The server functions, by name; each file must define the function it is named after.
pub fn functions() -> Result<Vec<Function>> {
    let mut found = Vec::new();
    for (file, text) in files::FUNCTION_FILES {
        let name = file.strip_suffix(".sql").unwrap_or(file);
        let valid = name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid || !text.contains(&format!("CREATE OR REPLACE FUNCTION :\"schema\".{name}(")) {
            return Err(Error::new(
                crate::ErrorKind::Database,
                format!(
                    "sql/functions/{file} must be named like its function and define it with \
                     CREATE OR REPLACE FUNCTION :\"schema\".{name}(...)"
                ),
            ));
        }
        found.push(Function { name: name.to_string(), text });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_query_file_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/queries");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().replace(".sql", ""))
            .collect();
        on_disk.sort();
        let embedded: Vec<String> = Query::ALL.iter().map(|q| q.name().to_string()).collect();
        assert_eq!(embedded, on_disk);
    }

    #[test]
    fn render_substitutes_both_placeholders() {
        let text = render("SELECT * FROM :\"schema\".q WHERE s = :'schema'", "jobs").unwrap();
        assert_eq!(text, "SELECT * FROM \"jobs\".q WHERE s = 'jobs'");
        assert!(render("x", "Bad\"").is_err());
        let all = Rendered::new("jobs").unwrap();
        for q in Query::ALL {
            assert!(!all.get(*q).contains(":\"schema\""), "{}", q.name());
            assert!(!all.get(*q).contains(":'schema'"), "{}", q.name());
        }
    }

    #[test]
    fn sql_files_use_lf_line_endings() {
        // Python reads the files with universal newlines and Rust embeds their
        // bytes: with CRLF the two clients would record different checksums.
        for m in migrations().unwrap() {
            assert!(!m.text.contains('\r'), "{} has CR characters", m.label());
        }
        for q in Query::ALL {
            assert!(!q.text().contains('\r'), "{} has CR characters", q.name());
        }
        for f in functions().unwrap() {
            assert!(!f.text.contains('\r'), "{} has CR characters", f.label());
        }
    }

    #[test]
    fn every_function_file_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/functions");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().replace(".sql", ""))
            .collect();
        on_disk.sort();
        let embedded: Vec<String> = functions().unwrap().into_iter().map(|f| f.name).collect();
        assert_eq!(embedded, on_disk);
        assert!(embedded.contains(&"message_dequeue".to_string()));
    }

    #[test]
    fn migrations_are_consecutive_with_stable_checksums() {
        let ms = migrations().unwrap();
        assert_eq!(ms[0].version, 1);
        assert_eq!(ms[0].label(), "0001_init");
        let on_disk = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/migrations/0001_init.sql"),
        )
        .unwrap();
        assert_eq!(ms[0].text, on_disk);
        assert_eq!(ms[0].checksum().len(), 64);
    }
}
