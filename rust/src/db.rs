//! Running named queries on a connection pool, owned or shared.

use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{GenericClient, NoTls, Row};

use crate::tls::Connector;

use crate::config::Config;
use crate::error::{first_line, translate, Error, ErrorKind, Result};
use crate::queries::{Query, Rendered};

/// One typed parameter: the value and its PostgreSQL type (sent with the
/// statement, so no describe round trip and no named statement is needed).
pub(crate) type Param<'a> = (&'a (dyn ToSql + Sync), Type);

/// A pool set up for pgqrs: TLS as the DSN's `sslmode` says, no session
/// state, connections checked before reuse. Pass it to several clients
/// (`with_pool`) to share connections.
pub fn make_pool(config: &Config) -> Result<Pool> {
    let manager_config = ManagerConfig { recycling_method: RecyclingMethod::Fast };
    let manager = match config.connector()? {
        Connector::Plain => Manager::from_config(config.pg_config(), NoTls, manager_config),
        #[cfg(feature = "tls")]
        Connector::Rustls(tls) => Manager::from_config(config.pg_config(), tls, manager_config),
    };
    Pool::builder(manager)
        .max_size(config.pool_max_size())
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(config.connect_timeout()))
        .create_timeout(Some(config.connect_timeout()))
        .build()
        .map_err(|e| Error::config(format!("cannot build the connection pool: {e}")))
}

/// Runs pgqrs's named queries, one round trip each. Not part of the API
/// (public only for `pgqrs::internal`, which rust/tests uses).
#[derive(Clone)]
pub struct Db {
    pub(crate) config: Config,
    pub(crate) pool: Pool,
    queries: Arc<Rendered>,
}

impl Db {
    /// A Db on `pool` (or a new one), with `pool_min_size` connections opened
    /// now so that a bad DSN fails here rather than on first use.
    pub async fn open(config: &Config, pool: Option<Pool>) -> Result<Db> {
        config.validate()?;
        let owned = pool.is_none();
        let pool = match pool {
            Some(p) => p,
            None => make_pool(config)?,
        };
        let db = Db { config: config.clone(), pool, queries: Arc::new(Rendered::new(config.schema())?) };
        if owned {
            let mut held = Vec::new();
            for _ in 0..config.pool_min_size() {
                held.push(db.conn().await?);
            }
        }
        Ok(db)
    }

    pub(crate) fn sql(&self, q: Query) -> &str {
        self.queries.get(q)
    }

    /// A pooled connection, or a Connection error naming the server's reason.
    pub(crate) async fn conn(&self) -> Result<deadpool_postgres::Client> {
        self.pool.get().await.map_err(|e| self.pool_error(e))
    }

    fn pool_error(&self, err: PoolError) -> Error {
        let dsn = self.config.masked_dsn();
        match err {
            PoolError::Backend(e) => {
                let reason = match e.as_db_error() {
                    Some(db) => first_line(db.message()),
                    None => with_causes(&e),
                };
                let hint = if reason.contains("TLS") || reason.contains("certificate") {
                    let mode = self.config.ssl_mode().map(|m| m.to_string()).unwrap_or_default();
                    format!(
                        " (sslmode={mode}: check sslrootcert, and that the server's certificate \
                         is signed by it and names the host)"
                    )
                } else {
                    String::new()
                };
                Error::new(
                    ErrorKind::Connection,
                    format!("cannot connect to PostgreSQL at {dsn}: {reason}{hint}"),
                )
                .with_source(e)
            }
            PoolError::Timeout(_) => Error::new(
                ErrorKind::Connection,
                format!(
                    "no connection available within {:?} (pool_max_size={}) from {dsn}",
                    self.config.connect_timeout(),
                    self.config.pool_max_size()
                ),
            ),
            other => Error::new(ErrorKind::Connection, format!("connection pool: {other}")),
        }
    }

    /// Run query `q` on a pooled connection and return its rows (for the
    /// typed query layer, `crate::calls`, which every call site goes through).
    pub(crate) async fn fetch(
        &self,
        q: Query,
        params: &[Param<'_>],
        queue: Option<&str>,
    ) -> Result<Vec<Row>> {
        let client = self.conn().await?;
        let sql = self.sql(q);
        let result = if self.config.prepare_statements() {
            let types: Vec<Type> = params.iter().map(|(_, t)| t.clone()).collect();
            let values: Vec<&(dyn ToSql + Sync)> = params.iter().map(|(v, _)| *v).collect();
            match client.prepare_typed_cached(sql, &types).await {
                Ok(stmt) => client.query(&stmt, &values).await,
                Err(e) => Err(e),
            }
        } else {
            client.query_typed(sql, params).await
        };
        result.map_err(|e| translate(e, self.config.schema(), queue))
    }

    /// Run query `q` on the caller's connection or transaction.
    pub(crate) async fn fetch_on<C: GenericClient>(
        &self,
        client: &C,
        q: Query,
        params: &[Param<'_>],
        queue: Option<&str>,
    ) -> Result<Vec<Row>> {
        client.query_typed(self.sql(q), params).await.map_err(|e| translate(e, self.config.schema(), queue))
    }

    pub(crate) fn translate(&self, e: tokio_postgres::Error) -> Error {
        translate(e, self.config.schema(), None)
    }
}

/// The error's first line followed by those of its causes (the driver's
/// Display leaves out why, e.g., a TLS handshake failed).
fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = first_line(&e.to_string());
    let mut cause = e.source();
    while let Some(c) = cause {
        let line = first_line(&c.to_string());
        if !text.contains(&line) {
            text = format!("{text}: {line}");
        }
        cause = c.source();
    }
    text
}

/// Read column `name` of `row`, as a Database error when the type is off.
pub(crate) fn col<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, name: &str) -> Result<T> {
    row.try_get(name)
        .map_err(|e| Error::new(ErrorKind::Database, format!("unexpected value in column {name:?}: {e}")))
}
