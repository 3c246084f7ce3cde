//! TLS against a real PostgreSQL with `ssl=on`. These tests need a server that
//! tests/test_rust_tls.py starts (a throwaway one, with a CA and a server
//! certificate for the name `db.pgqrs.test` made for the run), so they are
//! `#[ignore]`d in a plain `cargo test`; that Python test runs them with
//! `--ignored` and these variables:
//! PGQRS_TLS_PORT (on 127.0.0.1), PGQRS_TLS_PASSWORD (of user postgres),
//! PGQRS_TLS_CA (the PEM of the CA that signed the server's certificate),
//! PGQRS_TLS_WRONG_CA (another CA), PGQRS_TLS_CLIENT_CERT and PGQRS_TLS_CLIENT_KEY
//! (a client certificate for the role `certuser`, which logs in with it).

use std::time::Duration;

use pgqrs::{make_pool, Admin, Config, ErrorKind, JobError, Message, Producer, SslMode, Worker, WorkerOptions};
use serde_json::json;

/// The name in the server's certificate (reached through hostaddr=127.0.0.1).
const CERT_NAME: &str = "db.pgqrs.test";

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run these tests from tests/test_rust_tls.py"))
}

/// A keyword/value DSN for the TLS server with `extra` appended.
fn dsn(host: &str, extra: &str) -> String {
    let hostaddr = if host == "127.0.0.1" { String::new() } else { " hostaddr=127.0.0.1".to_string() };
    format!(
        "host={host}{hostaddr} port={} user=postgres password={} dbname=postgres connect_timeout=5 {extra}",
        env("PGQRS_TLS_PORT"),
        env("PGQRS_TLS_PASSWORD"),
    )
}

/// Whether the connection a pool gives for `config` is encrypted (pg_stat_ssl).
async fn uses_tls(config: &Config) -> pgqrs::Result<bool> {
    let pool = make_pool(config)?;
    let client = pool.get().await.map_err(|e| panic!("no connection: {e}")).unwrap();
    let row =
        client.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap();
    Ok(row.get(0))
}

async fn connect_error(config: &Config) -> pgqrs::Error {
    match Admin::new(config).await {
        Ok(_) => panic!("connected, but it should have failed: {config:?}"),
        Err(e) => e,
    }
}

#[tokio::test]
#[ignore = "needs the TLS server of tests/test_rust_tls.py"]
async fn require_encrypts_without_checking_the_certificate() {
    let config = Config::from_dsn(&dsn("127.0.0.1", "sslmode=require")).unwrap();
    assert_eq!(config.ssl_mode().unwrap(), SslMode::Require);
    assert!(uses_tls(&config).await.unwrap(), "sslmode=require must encrypt");
}

#[tokio::test]
#[ignore = "needs the TLS server of tests/test_rust_tls.py"]
async fn prefer_encrypts_when_the_server_offers_it_and_disable_does_not() {
    let prefer = Config::from_dsn(&dsn("127.0.0.1", "")).unwrap();
    assert!(uses_tls(&prefer).await.unwrap(), "the default (prefer) uses TLS when offered");
    let disable = Config::from_dsn(&dsn("127.0.0.1", "sslmode=disable")).unwrap();
    assert!(!uses_tls(&disable).await.unwrap(), "sslmode=disable is plain text");
}

#[tokio::test]
#[ignore = "needs the TLS server of tests/test_rust_tls.py"]
async fn verify_full_with_the_right_ca_works_end_to_end() {
    // The URL form, with sslrootcert percent-encoded.
    let ca = env("PGQRS_TLS_CA").replace('/', "%2F");
    let url = format!(
        "postgresql://postgres:{}@{CERT_NAME}:{}/postgres?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={ca}",
        env("PGQRS_TLS_PASSWORD"),
        env("PGQRS_TLS_PORT"),
    );
    let schema = format!("tls_{}", std::process::id());
    let config = Config::from_dsn(&url).unwrap().with_schema(&schema);
    assert!(uses_tls(&config).await.unwrap());
    let admin = Admin::new(&config).await.unwrap();
    admin.install().await.unwrap();
    admin.create_queue("tls").await.unwrap();
    Producer::new(&config, "tls").await.unwrap().enqueue(&json!({"over": "tls"})).await.unwrap();
    // The worker's pool and its LISTEN connection use TLS too.
    let options = WorkerOptions { poll_interval: Duration::from_millis(100), ..WorkerOptions::default() };
    let worker = Worker::new(&config, "tls", options).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let tx = std::sync::Mutex::new(Some(tx));
    let run = worker.run_until(
        move |msg: Message| {
            let done = tx.lock().unwrap().take();
            async move {
                if let Some(done) = done {
                    let _ = done.send(());
                }
                Ok::<_, JobError>(msg.payload)
            }
        },
        async move {
            let _ = tokio::time::timeout(Duration::from_secs(20), rx).await;
        },
    );
    run.await.unwrap();
    let done = admin.list_archive(Some("tls"), Some("completed"), 10).await.unwrap();
    assert_eq!(done.len(), 1, "the worker completed the message over TLS");
    admin.uninstall().await.unwrap();
}

#[tokio::test]
#[ignore = "needs the TLS server of tests/test_rust_tls.py"]
async fn verify_full_with_the_wrong_ca_is_a_clear_connection_error() {
    let config = Config::from_dsn(&dsn(CERT_NAME, "sslmode=verify-full"))
        .unwrap()
        .with_ssl_root_cert(&env("PGQRS_TLS_WRONG_CA"));
    let err = connect_error(&config).await;
    eprintln!("verify-full with the wrong CA: {err}");
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    let text = err.to_string();
    assert!(text.contains("UnknownIssuer"), "says why: {text}");
    assert!(text.contains("sslmode=verify-full"), "names the mode: {text}");
    assert!(text.contains(CERT_NAME), "names the host: {text}");
}

#[tokio::test]
#[ignore = "needs the TLS server of tests/test_rust_tls.py"]
async fn verify_full_checks_the_host_name_and_verify_ca_does_not() {
    let ca = env("PGQRS_TLS_CA");
    // 127.0.0.1 is not the name in the certificate.
    let full = Config::from_dsn(&dsn("127.0.0.1", "sslmode=verify-full")).unwrap().with_ssl_root_cert(&ca);
    let err = connect_error(&full).await;
    eprintln!("verify-full with the wrong host name: {err}");
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    assert!(err.to_string().contains("not valid for name \"127.0.0.1\""), "says why: {err}");
    let by_name = Config::from_dsn(&dsn(CERT_NAME, "sslmode=verify-full")).unwrap().with_ssl_root_cert(&ca);
    assert!(uses_tls(&by_name).await.unwrap());
    let chain_only =
        Config::from_dsn(&dsn("127.0.0.1", "sslmode=verify-ca")).unwrap().with_ssl_root_cert(&ca);
    assert!(uses_tls(&chain_only).await.unwrap(), "verify-ca ignores the name");
    let wrong = Config::from_dsn(&dsn("127.0.0.1", "sslmode=verify-ca"))
        .unwrap()
        .with_ssl_root_cert(&env("PGQRS_TLS_WRONG_CA"));
    assert_eq!(connect_error(&wrong).await.kind(), ErrorKind::Connection);
    // libpq: require with an explicit sslrootcert checks the chain as verify-ca.
    let require = Config::from_dsn(&dsn("127.0.0.1", "sslmode=require"))
        .unwrap()
        .with_ssl_root_cert(&env("PGQRS_TLS_WRONG_CA"));
    assert_eq!(connect_error(&require).await.kind(), ErrorKind::Connection);
}

#[tokio::test]
#[ignore = "needs the TLS server of tests/test_rust_tls.py"]
async fn a_missing_root_certificate_file_is_a_config_error() {
    let config =
        Config::from_dsn(&dsn(CERT_NAME, "sslmode=verify-full sslrootcert=/nonexistent/ca.pem")).unwrap();
    let err = connect_error(&config).await;
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}

#[tokio::test]
#[ignore = "needs the TLS server of tests/test_rust_tls.py"]
async fn a_client_certificate_logs_in_without_a_password() {
    let base = format!(
        "host={CERT_NAME} hostaddr=127.0.0.1 port={} user=certuser dbname=postgres connect_timeout=5 \
         sslmode=verify-full sslrootcert={}",
        env("PGQRS_TLS_PORT"),
        env("PGQRS_TLS_CA"),
    );
    let with_cert = Config::from_dsn(&format!(
        "{base} sslcert={} sslkey={}",
        env("PGQRS_TLS_CLIENT_CERT"),
        env("PGQRS_TLS_CLIENT_KEY")
    ))
    .unwrap();
    let pool = make_pool(&with_cert).unwrap();
    let client = pool.get().await.unwrap();
    let user: String = client.query_one("SELECT current_user::text", &[]).await.unwrap().get(0);
    assert_eq!(user, "certuser");
    // The same through the builder; and without a certificate the server says no.
    let built = Config::from_dsn(&base)
        .unwrap()
        .with_ssl_client_cert(&env("PGQRS_TLS_CLIENT_CERT"), &env("PGQRS_TLS_CLIENT_KEY"));
    Admin::new(&built).await.unwrap();
    let err = connect_error(&Config::from_dsn(&base).unwrap()).await;
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    let missing =
        Config::from_dsn(&format!("{base} sslcert=/nonexistent/c.pem sslkey=/nonexistent/k.pem")).unwrap();
    let err = connect_error(&missing).await;
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("/nonexistent/c.pem"), "{err}");
}
