//! The one error type of pgqrs, and the translation of the driver's errors.
//!
//! Every error a caller can act on has its own [`ErrorKind`] (the same cases
//! as the Python exceptions) and a message that names the offending value and
//! the fix; anything else from the database is [`ErrorKind::Database`], with
//! the driver's error kept as the [`source`](std::error::Error::source).

use std::fmt;

use tokio_postgres::error::SqlState;

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
    /// `LeaseExpired`: the lease ran out and another consumer owns the message now;
    /// the row was left untouched. See [`Error::ids`] and [`Error::succeeded`].
    LeaseExpired,
    /// `LeaseNotHeld`: an id was given that this consumer never dequeued.
    LeaseNotHeld,
}

impl ErrorKind {
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
            ErrorKind::LeaseExpired => "LeaseExpired",
            ErrorKind::LeaseNotHeld => "LeaseNotHeld",
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

/// Map a driver error to the kind that says what went wrong and what to do
/// (the same rules as Python's `translate`).
pub(crate) fn translate(err: tokio_postgres::Error, schema: &str, queue: Option<&str>) -> Error {
    let Some(db) = err.as_db_error() else {
        // No SQLSTATE: the socket broke, the server went away, or a timeout.
        let text = first_line(&err.to_string());
        return Error::new(ErrorKind::Connection, format!("cannot talk to PostgreSQL: {text}"))
            .with_source(err);
    };
    let code = db.code().clone();
    let text = first_line(db.message());
    // A missing function or column: the schema predates the migration that added it.
    let e = if code == SqlState::UNDEFINED_TABLE
        || code == SqlState::INVALID_SCHEMA_NAME
        || code == SqlState::UNDEFINED_FUNCTION
        || code == SqlState::UNDEFINED_COLUMN
    {
        Error::new(
            ErrorKind::SchemaNotInstalled,
            format!(
                "the pgqrs schema {schema:?} is not installed in this database, or lacks a \
                 migration (run Admin::install() or `pgqrs install`): {text}"
            ),
        )
    } else if code == SqlState::FOREIGN_KEY_VIOLATION && queue.is_some() {
        Error::queue_not_found(queue.unwrap_or_default())
    } else if code == SqlState::CHECK_VIOLATION
        && (db.constraint() == Some("queues_name_valid") || text.contains("queues_name_valid"))
    {
        Error::new(
            ErrorKind::InvalidQueueName,
            format!("invalid queue name {:?}: {text}", queue.unwrap_or_default()),
        )
    } else if code == SqlState::INVALID_TEXT_REPRESENTATION
        || code == SqlState::UNTRANSLATABLE_CHARACTER
        || code == SqlState::INVALID_PARAMETER_VALUE
    {
        Error::payload(format!("PostgreSQL refused the payload: {text}"))
    } else if is_operational(code.code()) {
        Error::new(ErrorKind::Connection, format!("cannot talk to PostgreSQL: {text}"))
    } else {
        Error::new(ErrorKind::Database, format!("PostgreSQL error: {text}"))
    };
    e.with_source(err)
}

/// SQLSTATE classes psycopg reports as `OperationalError` (connection,
/// resources, operator intervention, system errors).
fn is_operational(code: &str) -> bool {
    ["08", "53", "57", "58"].iter().any(|class| code.starts_with(class))
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
}
