//! Shared test setup: a real PostgreSQL named by PGQRS_TEST_DSN (tests/test_rust.py
//! passes the pytest session's server), one fresh schema per test.
#![allow(dead_code)]

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pgqrs::{Admin, Config};

static NEXT: AtomicUsize = AtomicUsize::new(1);

pub struct TestDb {
    pub config: Config,
    pub schema: String,
}

impl TestDb {
    /// A config on a fresh schema (not installed).
    pub fn new() -> TestDb {
        let dsn = std::env::var("PGQRS_TEST_DSN").expect(
            "set PGQRS_TEST_DSN to a PostgreSQL DSN (tests/test_rust.py does this with the pytest server)",
        );
        let schema = format!("r{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let config = Config::from_dsn(&dsn).unwrap().with_schema(&schema).with_pool_max_size(4);
        TestDb { config, schema }
    }

    /// A fresh schema, installed, with its Admin.
    pub async fn installed() -> (TestDb, Admin) {
        let db = TestDb::new();
        let admin = Admin::new(&db.config).await.unwrap();
        admin.install().await.unwrap();
        (db, admin)
    }

    /// A plain connection for looking at (and poking) the tables.
    pub async fn raw(&self) -> tokio_postgres::Client {
        let (client, conn) = self.config.pg_config().connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        client
    }

    /// Drop the schema.
    pub async fn drop(self) {
        let client = self.raw().await;
        client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema)).await.unwrap();
    }
}

/// Poll `check` until it returns Some, or panic after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
