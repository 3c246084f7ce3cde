//! Rules for the names pgqrs accepts: queue names (data) and the schema name.
//! The same rules as Python's `_validate.py`.

use crate::error::{Error, ErrorKind, Result};

/// Longest queue name accepted (the same bound is a CHECK in the schema).
pub const MAX_QUEUE_NAME_LENGTH: usize = 128;
/// Longest schema name: "<schema>.enqueue" must fit a NOTIFY channel (63 bytes).
const MAX_SCHEMA_NAME_LENGTH: usize = 48;
/// The archive statuses: what a worker writes (completed, dead) and what a
/// consumer may say it did (failed). A fixed set, so that a typo such as
/// "donez" is refused instead of stored where no filter finds it. Python:
/// `pgqrs._validate.ARCHIVE_STATUSES`.
pub const ARCHIVE_STATUSES: [&str; 4] = ["completed", "failed", "dead", "cancelled"];

/// `name` if it is a valid queue name (1 to 128 of `A-Za-z0-9_.:-`).
pub fn validate_queue_name(name: &str) -> Result<&str> {
    let ok = (1..=MAX_QUEUE_NAME_LENGTH).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
    if ok {
        return Ok(name);
    }
    let shown: String = if name.chars().count() <= 60 {
        name.to_string()
    } else {
        name.chars().take(57).collect::<String>() + "..."
    };
    Err(Error::new(
        ErrorKind::InvalidQueueName,
        format!(
            "invalid queue name {shown:?}: use 1 to {MAX_QUEUE_NAME_LENGTH} characters \
             among letters, digits and _ - . :"
        ),
    ))
}

/// `name` if it is a valid schema name (`[a-z_][a-z0-9_]{0,47}`).
pub fn validate_schema_name(name: &str) -> Result<&str> {
    let bytes = name.as_bytes();
    let ok = (1..=MAX_SCHEMA_NAME_LENGTH).contains(&bytes.len())
        && (bytes[0].is_ascii_lowercase() || bytes[0] == b'_')
        && bytes.iter().all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        return Ok(name);
    }
    Err(Error::config(format!(
        "invalid schema name {name:?}: use a lower-case letter or _ then up to 47 \
         lower-case letters, digits or _"
    )))
}

/// `status` if it is one of [`ARCHIVE_STATUSES`].
pub fn validate_status(status: &str) -> Result<&str> {
    if ARCHIVE_STATUSES.contains(&status) {
        return Ok(status);
    }
    let shown: String = status.chars().take(40).collect();
    Err(Error::invalid(format!(
        "unknown archive status {shown:?}: use one of {}",
        ARCHIVE_STATUSES.map(|s| format!("'{s}'")).join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names() {
        for ok in ["tasks", "a", "A-b_c.d:e", &"x".repeat(128)] {
            assert!(validate_queue_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "has space", "é", "a/b", &"x".repeat(129)] {
            let err = validate_queue_name(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidQueueName, "{bad}");
        }
    }

    #[test]
    fn schema_names() {
        for ok in ["pgqrs", "_x", "a1_b", &"a".repeat(48)] {
            assert!(validate_schema_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1a", "Pgqrs", "a-b", "a\"b", &"a".repeat(49)] {
            assert_eq!(validate_schema_name(bad).unwrap_err().kind(), ErrorKind::Config);
        }
    }

    #[test]
    fn statuses() {
        for good in ARCHIVE_STATUSES {
            assert!(validate_status(good).is_ok());
        }
        for bad in ["", "donez", "complete", "Completed", "dead_2", "_x", "a b", &"a".repeat(33)] {
            assert_eq!(validate_status(bad).unwrap_err().kind(), ErrorKind::InvalidArgument);
        }
    }
}
