//! The LISTEN connection: enqueue notifications wake the fetcher of their queue.
//!
//! Only a hint: on any failure the worker keeps polling, and this task
//! reconnects with backoff; after every (re)connect all queues are polled at
//! once, since notifications sent while disconnected are lost.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, Connection, NoTls};

use super::reconnect::Reconnect;
use crate::tls::Connector;

/// First pause before opening the LISTEN connection again.
const LISTEN_RECONNECT_MIN: Duration = Duration::from_secs(1);
/// Longest pause between attempts to open the LISTEN connection again.
const LISTEN_RECONNECT_MAX: Duration = Duration::from_secs(30);

/// Keep a LISTEN on `<schema>.enqueue` and wake `queues` by name until `stop` changes.
pub(crate) async fn listen(
    pg: tokio_postgres::Config,
    connector: Connector,
    schema: String,
    queues: Vec<(String, Arc<Notify>)>,
    mut stop: watch::Receiver<u8>,
) {
    // The schema name is validated ([a-z_][a-z0-9_]*), so quoting is enough.
    let command = format!("LISTEN \"{schema}.enqueue\"");
    let mut reconnect = Reconnect::new(LISTEN_RECONNECT_MIN, LISTEN_RECONNECT_MAX);
    loop {
        match connect(&pg, &connector).await {
            Ok((client, mut notes, driver)) => {
                match client.batch_execute(&command).await {
                    Ok(()) => {
                        reconnect.succeeded();
                        for (_, wake) in &queues {
                            wake.notify_one(); // poll again after every reconnect
                        }
                        loop {
                            tokio::select! {
                                n = notes.recv() => match n {
                                    Some(name) => {
                                        if let Some((_, wake)) = queues.iter().find(|(q, _)| *q == name) {
                                            wake.notify_one();
                                        }
                                    }
                                    None => break,
                                },
                                _ = stop.changed() => { driver.abort(); return; }
                            }
                        }
                        log::warn!("pgqrs worker: LISTEN connection lost (polling until it is back)");
                    }
                    Err(e) => log::warn!("pgqrs worker: LISTEN failed (polling only): {e}"),
                }
                driver.abort();
            }
            Err(e) => log::warn!("pgqrs worker: LISTEN connection failed (polling only): {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(reconnect.failed()) => {}
            _ = stop.changed() => return,
        }
    }
}

pub(crate) type Listening = (Client, mpsc::UnboundedReceiver<String>, JoinHandle<()>);

pub(crate) async fn connect(
    pg: &tokio_postgres::Config,
    connector: &Connector,
) -> Result<Listening, tokio_postgres::Error> {
    match connector {
        Connector::Plain => {
            let (client, conn) = pg.connect(NoTls).await?;
            let (notes, driver) = drive(conn);
            Ok((client, notes, driver))
        }
        #[cfg(feature = "tls")]
        Connector::Rustls(tls) => {
            let (client, conn) = pg.connect(tls.clone()).await?;
            let (notes, driver) = drive(conn);
            Ok((client, notes, driver))
        }
    }
}

/// Run the connection, sending the payload (queue name) of each notification.
fn drive<S, T>(mut conn: Connection<S, T>) -> (mpsc::UnboundedReceiver<String>, JoinHandle<()>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        while let Some(msg) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            match msg {
                Ok(AsyncMessage::Notification(n)) => {
                    let _ = tx.send(n.payload().to_string());
                }
                Ok(_) => {}
                Err(e) => {
                    log::debug!("pgqrs worker: LISTEN connection: {e}");
                    break;
                }
            }
        }
    });
    (rx, driver)
}
