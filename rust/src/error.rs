//! The one error type of pgqrs, and the translation of the driver's errors.
//!
//! Every error a caller can act on has its own [`ErrorKind`] (the same cases
//! as the Python exceptions) and a message that names the offending value and
//! the fix; anything else from the database is [`ErrorKind::Database`], with
//! the driver's error kept as the [`source`](std::error::Error::source).

use std::fmt;

mod rules {
    include!(concat!(env!("OUT_DIR"), "/error_rules.rs"));
}

/// Shorthand for `Result<T, pgqrs::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, one case per Python exception class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// `ConfigError`: a configuration value (DSN, schema name, option) is invalid.
    Config,
    /// `InvalidArgument`: an argument is out of range or of the wrong kind.
    InvalidArgument,
    /// `ConnectionFailed`: PostgreSQL could not be reached, or the connection broke.
    Connection,
    /// `DatabaseError`: PostgreSQL refused an operation for another reason.
    Database,
    /// `SchemaNotInstalled`: the pgqrs schema is missing (run `Admin::install`).
    SchemaNotInstalled,
    /// `InvalidQueueName`: a queue name broke the naming rules.
    InvalidQueueName,
    /// `QueueNotFound`: no queue has that name.
    QueueNotFound,
    /// `QueueExists`: `create_queue` was asked for a name that is taken.
    QueueExists,
    /// `PayloadError`: a payload or header cannot be stored as JSON.
    Payload,
    /// `ScheduleNotFound`: no schedule has that name.
    ScheduleNotFound,
    /// `ScheduleExists`: `create_schedule` was asked for a name that is taken.
    ScheduleExists,
    /// `LeaseExpired`: the lease ran out and another consumer owns the message now;
    /// the row was left untouched. See [`Error::ids`] and [`Error::succeeded`].
    LeaseExpired,
    /// `LeaseNotHeld`: an id was given that this consumer never dequeued.
    LeaseNotHeld,
    /// `MessageNotFound`: no waiting, in-flight or archived message has that id.
    MessageNotFound,
    /// `AlreadyArchived`: the message already ended (it cannot be cancelled);
    /// the message names its status.
    AlreadyArchived,
    /// `WaitTimeout`: `Admin::wait` gave up before the message was archived.
    WaitTimeout,
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: &'static [ErrorKind] = &[
        ErrorKind::Config,
        ErrorKind::InvalidArgument,
        ErrorKind::Connection,
        ErrorKind::Database,
        ErrorKind::SchemaNotInstalled,
        ErrorKind::InvalidQueueName,
        ErrorKind::QueueNotFound,
        ErrorKind::QueueExists,
        ErrorKind::Payload,
        ErrorKind::ScheduleNotFound,
        ErrorKind::ScheduleExists,
        ErrorKind::LeaseExpired,
        ErrorKind::LeaseNotHeld,
        ErrorKind::MessageNotFound,
        ErrorKind::AlreadyArchived,
        ErrorKind::WaitTimeout,
    ];

    /// The name of the matching Python exception class.
    pub fn python_name(self) -> &'static str {
        match self {
            ErrorKind::Config => "ConfigError",
            ErrorKind::InvalidArgument => "InvalidArgument",
            ErrorKind::Connection => "ConnectionFailed",
            ErrorKind::Database => "DatabaseError",
            ErrorKind::SchemaNotInstalled => "SchemaNotInstalled",
            ErrorKind::InvalidQueueName => "InvalidQueueName",
            ErrorKind::QueueNotFound => "QueueNotFound",
            ErrorKind::QueueExists => "QueueExists",
            ErrorKind::Payload => "PayloadError",
            ErrorKind::ScheduleNotFound => "ScheduleNotFound",
            ErrorKind::ScheduleExists => "ScheduleExists",
            ErrorKind::LeaseExpired => "LeaseExpired",
            ErrorKind::LeaseNotHeld => "LeaseNotHeld",
            ErrorKind::MessageNotFound => "MessageNotFound",
            ErrorKind::AlreadyArchived => "AlreadyArchived",
            ErrorKind::WaitTimeout => "WaitTimeout",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.python_name())
    }
}

/// The error of every pgqrs operation. Opaque: look at [`Error::kind`].
pub struct Error(Box<Inner>);

struct Inner {
    kind: ErrorKind,
    message: String,
    ids: Vec<i64>,
    succeeded: Vec<i64>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error(Box::new(Inner {
            kind,
            message: message.into(),
            ids: Vec::new(),
            succeeded: Vec::new(),
            source: None,
        }))
    }

    pub(crate) fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.0.source = Some(Box::new(source));
        self
    }

    pub(crate) fn lease(kind: ErrorKind, message: String, ids: Vec<i64>, succeeded: Vec<i64>) -> Self {
        let mut e = Error::new(kind, message);
        e.0.ids = ids;
        e.0.succeeded = succeeded;
        e
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Config, message)
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidArgument, message)
    }

    pub(crate) fn payload(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Payload, message)
    }

    pub(crate) fn queue_not_found(name: &str) -> Self {
        Error::new(
            ErrorKind::QueueNotFound,
            format!("queue {name:?} does not exist (create it with Admin::create_queue({name:?}))"),
        )
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// True for the fencing errors ([`ErrorKind::LeaseExpired`], [`ErrorKind::LeaseNotHeld`]).
    pub fn is_lease_error(&self) -> bool {
        matches!(self.0.kind, ErrorKind::LeaseExpired | ErrorKind::LeaseNotHeld)
    }

    /// For lease errors: the message ids the operation was refused for.
    pub fn ids(&self) -> &[i64] {
        &self.0.ids
    }

    /// For [`ErrorKind::LeaseExpired`] from a batch call: the ids that did go through.
    pub fn succeeded(&self) -> &[i64] {
        &self.0.succeeded
    }

    /// The message, without the kind.
    pub fn message(&self) -> &str {
        &self.0.message
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("pgqrs::Error");
        d.field("kind", &self.0.kind).field("message", &self.0.message);
        if !self.0.ids.is_empty() {
            d.field("ids", &self.0.ids).field("succeeded", &self.0.succeeded);
        }
        if let Some(source) = &self.0.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.0.kind, self.0.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// The kind `sql/errors.tsv` (the table Python reads too) gives a SQLSTATE:
/// its exact row, else its class's row, else [`ErrorKind::Database`].
/// `constraint`: the violated constraint, if any; `has_queue`: the operation
/// names a queue.
pub(crate) fn error_kind(sqlstate: &str, constraint: Option<&str>, has_queue: bool) -> ErrorKind {
    let rule = rules::ERROR_RULES
        .iter()
        .find(|(code, _, _)| *code == sqlstate)
        .or_else(|| rules::ERROR_RULES.iter().find(|(code, _, _)| sqlstate.get(..2) == Some(*code)));
    let Some((_, kind, when)) = rule else { return ErrorKind::Database };
    let holds = match *when {
        "-" => true,
        "queue" => has_queue,
        other => other.strip_prefix("constraint=").is_some_and(|name| constraint == Some(name)),
    };
    if !holds {
        return ErrorKind::Database;
    }
    ErrorKind::ALL.iter().copied().find(|k| k.python_name() == *kind).unwrap_or(ErrorKind::Database)
}

/// Map a driver error to the kind that says what went wrong and what to do
/// (the same rules as Python's `translate`: `sql/errors.tsv`).
pub(crate) fn translate(err: tokio_postgres::Error, schema: &str, queue: Option<&str>) -> Error {
    let Some(db) = err.as_db_error() else {
        // No SQLSTATE: the socket broke, the server went away, or a timeout.
        let text = first_line(&err.to_string());
        return Error::new(ErrorKind::Connection, format!("cannot talk to PostgreSQL: {text}"))
            .with_source(err);
    };
    from_server(db.code().code(), db.constraint(), db.message(), schema, queue).with_source(err)
}

/// The same translation for an sqlx error (feature `sqlx`).
#[cfg(feature = "sqlx")]
pub(crate) fn translate_sqlx(err: sqlx::Error, schema: &str, queue: Option<&str>) -> Error {
    let translated = match &err {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => from_server(&code, db.constraint(), db.message(), schema, queue),
            None => {
                Error::new(ErrorKind::Database, format!("PostgreSQL error: {}", first_line(db.message())))
            }
        },
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::ColumnNotFound(_) | sqlx::Error::Decode(_) => {
            Error::new(ErrorKind::Database, format!("unexpected row from PostgreSQL: {err}"))
        }
        other => Error::new(
            ErrorKind::Connection,
            format!("cannot talk to PostgreSQL: {}", first_line(&other.to_string())),
        ),
    };
    translated.with_source(err)
}

/// The error for a server error of SQLSTATE `code` with `message`.
fn from_server(
    code: &str,
    constraint: Option<&str>,
    message: &str,
    schema: &str,
    queue: Option<&str>,
) -> Error {
    let text = first_line(message);
    let constraint = constraint.or_else(|| text.contains("queues_name_valid").then_some("queues_name_valid"));
    match error_kind(code, constraint, queue.is_some()) {
        // A missing function or column: the schema predates the migration that added it.
        ErrorKind::SchemaNotInstalled => Error::new(
            ErrorKind::SchemaNotInstalled,
            format!(
                "the pgqrs schema {schema:?} is not installed in this database, or lacks a \
                 migration (run Admin::install() or `pgqrs install`): {text}"
            ),
        ),
        ErrorKind::QueueNotFound => Error::queue_not_found(queue.unwrap_or_default()),
        ErrorKind::InvalidQueueName => Error::new(
            ErrorKind::InvalidQueueName,
            format!("invalid queue name {:?}: {text}", queue.unwrap_or_default()),
        ),
        ErrorKind::Payload => Error::payload(format!("PostgreSQL refused the payload: {text}")),
        ErrorKind::Connection => {
            Error::new(ErrorKind::Connection, format!("cannot talk to PostgreSQL: {text}"))
        }
        _ => Error::new(ErrorKind::Database, format!("PostgreSQL error: {text}")),
    }
}

pub(crate) fn first_line(text: &str) -> String {
    let text = text.trim();
    text.lines().next().unwrap_or("").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + 'static>() {}

    #[test]
    fn error_is_send_sync_and_names_the_python_class() {
        assert_send_sync::<Error>();
        let e = Error::queue_not_found("tasks");
        assert_eq!(e.kind(), ErrorKind::QueueNotFound);
        assert!(e.to_string().starts_with("QueueNotFound: queue \"tasks\" does not exist"), "{e}");
        let lease = Error::lease(ErrorKind::LeaseExpired, "x".into(), vec![1], vec![2]);
        assert!(lease.is_lease_error());
        assert_eq!((lease.ids(), lease.succeeded()), (&[1][..], &[2][..]));
    }

    /// Every row of the file Python reads maps here to the kind it names (and
    /// Python's test checks the same rows), so the two clients agree.
    #[test]
    fn every_row_of_errors_tsv_maps_to_its_kind() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/errors.tsv");
        let text = std::fs::read_to_string(path).unwrap();
        let mut rows = 0;
        for line in
            text.lines().filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("sqlstate\t"))
        {
            let f: Vec<&str> = line.split('\t').collect();
            let code = if f[0].len() == 2 { format!("{}999", f[0]) } else { f[0].to_string() };
            let (constraint, has_queue) = match f[3] {
                "queue" => (None, true),
                "-" => (None, false),
                other => (other.strip_prefix("constraint="), false),
            };
            let kind = error_kind(&code, constraint, has_queue);
            assert_eq!(kind.python_name(), f[2], "{line}");
            if f[3] != "-" {
                assert_eq!(error_kind(&code, Some("other"), false), ErrorKind::Database, "{line}");
            }
            rows += 1;
        }
        assert!(rows >= 15, "{rows} rows");
        assert_eq!(error_kind("22003", None, false), ErrorKind::Payload);
        assert_eq!(error_kind("XX000", None, true), ErrorKind::Database);
        assert_eq!(error_kind("55P03", None, false), ErrorKind::Database);
    }
}
