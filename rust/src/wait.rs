//! Waiting for a message to be archived (`Admin::wait`), as Python's
//! `pgqrs._async._wait`: woken by NOTIFY, guaranteed by polling.
//!
//! The waiter registers its id (`archive_wait`), so the archive's trigger
//! NOTIFYs channel `<schema>.archived` only while someone waits; the same
//! statement returns the row if it is archived already (LISTEN comes first:
//! nothing is missed). Behind pgBouncer in transaction mode LISTEN hears
//! nothing: the poll (`archive_get` every [`POLL_INTERVAL`]) finds the row.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::Config;
use crate::db::Db;
use crate::error::{Error, ErrorKind, Result};
use crate::message::ArchivedMessage;
use crate::worker::listener::connect;

/// Time between two looks at the archive when no NOTIFY came.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How long a registration lasts before it is renewed.
const REGISTRATION: Duration = Duration::from_secs(600);

pub(crate) async fn wait_archived(
    db: &Db,
    config: &Config,
    id: i64,
    timeout: Option<Duration>,
) -> Result<ArchivedMessage> {
    if id < 1 {
        return Err(Error::invalid(format!("message id must be a positive int (a message's id), got {id}")));
    }
    let deadline = timeout.map(|t| Instant::now() + t);
    let connector = config.connector()?;
    let (client, mut notes, driver) =
        connect(&config.pg_config(), &connector).await.map_err(|e| db.translate(e))?;
    let result = async {
        // The schema name is validated ([a-z_][a-z0-9_]*), so quoting is enough.
        client
            .batch_execute(&format!("LISTEN \"{}.archived\"", config.schema()))
            .await
            .map_err(|e| db.translate(e))?;
        let mut renew_at = Instant::now();
        loop {
            let rows = if Instant::now() >= renew_at {
                renew_at = Instant::now() + REGISTRATION / 2;
                db.archive_wait(Some(&client), &[id], Some(REGISTRATION.as_secs_f64())).await?
            } else {
                db.archive_get(Some(&client), &[id]).await?
            };
            if let Some(row) = rows.into_iter().next() {
                return Ok(row);
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => POLL_INTERVAL,
            };
            if left.is_zero() {
                let t = timeout.unwrap_or_default();
                return Err(Error::new(
                    ErrorKind::WaitTimeout,
                    format!(
                        "message {id} was not archived within {}s (it may still be waiting or running; \
                         wait again or cancel it)",
                        t.as_secs_f64()
                    ),
                ));
            }
            // A notification (or the poll interval) wakes the next look.
            let _ = tokio::time::timeout(left.min(POLL_INTERVAL), notes.recv()).await;
        }
    }
    .await;
    // Best effort: the registration expires anyway.
    let _ = db.archive_wait(Some(&client), &[id], None).await;
    driver.abort();
    result
}
