//! Connection and behaviour settings, each with a named default (the same
//! defaults and environment variables as Python's `pgqrs.Config`).

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use crate::error::{first_line, Error, Result};
use crate::tls::{split_dsn, Connector, DsnTls, SslMode, TlsSettings};
use crate::validate::validate_schema_name;

/// Schema holding pgqrs's tables; created by `Admin::install()` when missing.
pub const DEFAULT_SCHEMA: &str = "pgqrs";
/// Seconds a dequeued message stays invisible to other consumers (queue default).
pub const DEFAULT_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(30);
/// Deliveries after which an unfinished message is archived as `dead`.
pub const DEFAULT_MAX_ATTEMPTS: i32 = 5;
/// Connections opened when a client starts (the pool keeps them while idle).
pub const DEFAULT_POOL_MIN_SIZE: usize = 1;
/// Connections a pool opens at most (per Admin/Producer/Consumer unless shared).
pub const DEFAULT_POOL_MAX_SIZE: usize = 10;
/// Time to wait for a connection (from the server, or from a busy pool).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest encoded payload accepted, in bytes (checked before any round trip).
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1024 * 1024;
/// Server-side named prepared statements. Off: pgBouncer in transaction mode
/// cannot keep them; turn on only for direct connections.
pub const DEFAULT_PREPARE_STATEMENTS: bool = false;
/// `application_name` reported in `pg_stat_activity`.
pub const DEFAULT_APPLICATION_NAME: &str = "pgqrs";

/// Environment variables read by [`Config::from_env`], by option.
pub const ENV_VARS: [(&str, &str); 8] = [
    ("dsn", "PGQRS_DSN"),
    ("schema", "PGQRS_SCHEMA"),
    ("pool_min_size", "PGQRS_POOL_MIN_SIZE"),
    ("pool_max_size", "PGQRS_POOL_MAX_SIZE"),
    ("connect_timeout", "PGQRS_CONNECT_TIMEOUT"),
    ("max_payload_bytes", "PGQRS_MAX_PAYLOAD_BYTES"),
    ("prepare_statements", "PGQRS_PREPARE_STATEMENTS"),
    ("application_name", "PGQRS_APPLICATION_NAME"),
];
/// Read for the DSN when `PGQRS_DSN` is not set, as many platforms set it.
pub const FALLBACK_DSN_ENV_VAR: &str = "DATABASE_URL";

/// Where the database is and how pgqrs talks to it. Cheap to clone; share it freely.
///
/// ```
/// # fn main() -> Result<(), pgqrs::Error> {
/// let config = pgqrs::Config::from_dsn("postgresql://app@localhost/app")?
///     .with_schema("jobs")
///     .with_pool_max_size(4);
/// config.validate()?; // the clients run it too, when they are made
/// assert_eq!(config.schema(), "jobs");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Config {
    dsn: String,
    pg: tokio_postgres::Config,
    tls: DsnTls,
    schema: String,
    pool_min_size: usize,
    pool_max_size: usize,
    connect_timeout: Duration,
    max_payload_bytes: usize,
    prepare_statements: bool,
    application_name: String,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("dsn", &self.masked_dsn())
            .field("sslmode", &self.tls.mode)
            .field("schema", &self.schema)
            .field("pool_min_size", &self.pool_min_size)
            .field("pool_max_size", &self.pool_max_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_payload_bytes", &self.max_payload_bytes)
            .field("prepare_statements", &self.prepare_statements)
            .field("application_name", &self.application_name)
            .finish()
    }
}

impl Config {
    /// A Config for the connection string `dsn` (URL or `key=value` form;
    /// unix sockets as `postgresql://user@/db?host=/run/postgresql`), with
    /// every other option at its default. TLS follows `sslmode` and
    /// `sslrootcert` as in libpq (see [`SslMode`]).
    pub fn from_dsn(dsn: &str) -> Result<Config> {
        if dsn.trim().is_empty() {
            return Err(Error::config(
                "dsn must be a non-empty connection string, e.g. postgresql://user@host/db",
            ));
        }
        let (driver_dsn, tls) = split_dsn(dsn)?;
        let pg = tokio_postgres::Config::from_str(&driver_dsn).map_err(|e| {
            Error::config(format!(
                "invalid DSN: {}; expected e.g. postgresql://user:password@host:5432/dbname",
                first_line(&e.to_string())
            ))
        })?;
        Ok(Config {
            dsn: dsn.to_string(),
            pg,
            tls,
            schema: DEFAULT_SCHEMA.to_string(),
            pool_min_size: DEFAULT_POOL_MIN_SIZE,
            pool_max_size: DEFAULT_POOL_MAX_SIZE,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            prepare_statements: DEFAULT_PREPARE_STATEMENTS,
            application_name: DEFAULT_APPLICATION_NAME.to_string(),
        })
    }

    /// A Config from the `PGQRS_*` variables of the process environment (see [`ENV_VARS`]).
    pub fn from_env() -> Result<Config> {
        Config::from_env_map(&std::env::vars().collect())
    }

    /// Like [`Config::from_env`], reading the variables from `env`.
    pub fn from_env_map(env: &HashMap<String, String>) -> Result<Config> {
        let get = |option: &str| -> Option<(&'static str, &str)> {
            let var = ENV_VARS.iter().find(|(o, _)| *o == option).map(|(_, v)| *v)?;
            env.get(var).map(|v| (var, v.as_str())).filter(|(_, v)| !v.is_empty())
        };
        let dsn = match get("dsn") {
            Some((_, dsn)) => dsn,
            None => match env.get(FALLBACK_DSN_ENV_VAR).filter(|v| !v.is_empty()) {
                Some(dsn) => dsn.as_str(),
                None => {
                    return Err(Error::config(format!(
                        "no database given: set PGQRS_DSN (or {FALLBACK_DSN_ENV_VAR}) to a \
                         connection string such as postgresql://user@localhost/db"
                    )))
                }
            },
        };
        let mut config = Config::from_dsn(dsn)?;
        if let Some((_, v)) = get("schema") {
            config = config.with_schema(v);
        }
        if let Some((var, v)) = get("pool_max_size") {
            config = config.with_pool_max_size(parse_env(var, v, "pool_max_size", "int")?);
        }
        if let Some((var, v)) = get("pool_min_size") {
            config = config.with_pool_min_size(parse_env(var, v, "pool_min_size", "int")?);
        }
        if let Some((var, v)) = get("connect_timeout") {
            let secs: f64 = parse_env(var, v, "connect_timeout", "float")?;
            config = config.with_connect_timeout(seconds_to_duration(secs, "connect_timeout")?);
        }
        if let Some((var, v)) = get("max_payload_bytes") {
            config = config.with_max_payload_bytes(parse_env(var, v, "max_payload_bytes", "int")?);
        }
        if let Some((var, v)) = get("prepare_statements") {
            let on = match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => {
                    return Err(Error::config(format!(
                        "{var}={v:?} is not a valid bool for option \"prepare_statements\""
                    )))
                }
            };
            config = config.with_prepare_statements(on);
        }
        if let Some((_, v)) = get("application_name") {
            config = config.with_application_name(v);
        }
        config.validate()?;
        Ok(config)
    }

    /// Use `schema` for pgqrs's tables (default [`DEFAULT_SCHEMA`]).
    ///
    /// Every `with_*` builder returns the Config itself; the values are
    /// checked together by [`Config::validate`], which every client runs when
    /// it is made (so a bad value is a [`ErrorKind::Config`](crate::ErrorKind::Config)
    /// error from `Admin::new`, `Producer::new`, ..., naming the value).
    pub fn with_schema(mut self, schema: &str) -> Config {
        self.schema = schema.to_string();
        self
    }

    /// Connections opened when a client starts (default [`DEFAULT_POOL_MIN_SIZE`]).
    pub fn with_pool_min_size(mut self, n: usize) -> Config {
        self.pool_min_size = n;
        self
    }

    /// Connections a pool opens at most (default [`DEFAULT_POOL_MAX_SIZE`]).
    pub fn with_pool_max_size(mut self, n: usize) -> Config {
        self.pool_max_size = n;
        self
    }

    /// Time to wait for a connection (default [`DEFAULT_CONNECT_TIMEOUT`]; must be > 0).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Config {
        self.connect_timeout = timeout;
        self
    }

    /// Largest encoded payload accepted (default [`DEFAULT_MAX_PAYLOAD_BYTES`]; must be >= 1).
    pub fn with_max_payload_bytes(mut self, n: usize) -> Config {
        self.max_payload_bytes = n;
        self
    }

    /// Check the values set by the `with_*` builders: the schema name, the
    /// pool sizes, the connect timeout, the payload limit. Clients run it
    /// when they are made; call it to check a Config earlier.
    pub fn validate(&self) -> Result<()> {
        validate_schema_name(&self.schema)?;
        self.check_pool()?;
        if self.connect_timeout.is_zero() {
            return Err(Error::config("connect_timeout must be > 0 seconds, got 0"));
        }
        if self.max_payload_bytes < 1 {
            return Err(Error::config("max_payload_bytes must be >= 1, got 0"));
        }
        Ok(())
    }

    /// Use named server-side prepared statements (not behind pgBouncer in
    /// transaction mode; default [`DEFAULT_PREPARE_STATEMENTS`]).
    pub fn with_prepare_statements(mut self, on: bool) -> Config {
        self.prepare_statements = on;
        self
    }

    /// `application_name` reported in `pg_stat_activity` (default [`DEFAULT_APPLICATION_NAME`]).
    pub fn with_application_name(mut self, name: &str) -> Config {
        self.application_name = name.to_string();
        self
    }

    /// Use TLS as `mode` says (overrides the DSN's `sslmode`).
    pub fn with_ssl_mode(mut self, mode: SslMode) -> Config {
        self.tls.mode = Some(mode);
        self
    }

    /// Check the server's certificate against the CA certificates of the PEM
    /// file `path` (`"system"`: the system's store); overrides `sslrootcert`.
    pub fn with_ssl_root_cert(mut self, path: &str) -> Config {
        self.tls.root_cert = Some(path.to_string());
        self
    }

    /// Present the client certificate (chain) of the PEM file `cert`, with
    /// the private key of the PEM file `key` (overrides `sslcert`/`sslkey`).
    pub fn with_ssl_client_cert(mut self, cert: &str, key: &str) -> Config {
        self.tls.cert = Some(cert.to_string());
        self.tls.key = Some(key.to_string());
        self
    }

    /// The `sslmode` in force: the DSN's, else `PGSSLMODE`, else `prefer`.
    pub fn ssl_mode(&self) -> Result<SslMode> {
        TlsSettings::resolve(&self.tls).map(|s| s.mode)
    }

    /// The TLS connector for this Config's connections (plain text when TLS is off).
    pub(crate) fn connector(&self) -> Result<Connector> {
        let settings = TlsSettings::resolve(&self.tls)?;
        Connector::new(&settings, unix_only(&self.pg_config()))
    }

    fn check_pool(&self) -> Result<()> {
        if self.pool_max_size < 1 || self.pool_min_size > self.pool_max_size {
            return Err(Error::config(format!(
                "pool sizes must satisfy 0 <= pool_min_size ({}) <= pool_max_size ({}) \
                 and pool_max_size >= 1",
                self.pool_min_size, self.pool_max_size
            )));
        }
        Ok(())
    }

    /// The connection string as given.
    pub fn dsn(&self) -> &str {
        &self.dsn
    }
    /// The schema holding pgqrs's tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }
    /// Connections opened when a client starts.
    pub fn pool_min_size(&self) -> usize {
        self.pool_min_size
    }
    /// Connections a pool opens at most.
    pub fn pool_max_size(&self) -> usize {
        self.pool_max_size
    }
    /// Time to wait for a connection.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }
    /// Largest encoded payload accepted, in bytes.
    pub fn max_payload_bytes(&self) -> usize {
        self.max_payload_bytes
    }
    /// Whether named prepared statements are used.
    pub fn prepare_statements(&self) -> bool {
        self.prepare_statements
    }
    /// `application_name` of every connection.
    pub fn application_name(&self) -> &str {
        &self.application_name
    }

    /// The driver configuration of every connection pgqrs opens: the DSN,
    /// completed like libpq would (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`,
    /// default socket directory), plus the application name and timeout.
    pub fn pg_config(&self) -> tokio_postgres::Config {
        let mut pg = self.pg.clone();
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if pg.get_hosts().is_empty() {
            match env("PGHOST") {
                Some(h) if h.starts_with('/') => {
                    pg.host_path(h);
                }
                Some(h) => {
                    pg.host(&h);
                }
                None => {
                    let dir = ["/var/run/postgresql", "/tmp"]
                        .into_iter()
                        .find(|d| std::path::Path::new(d).join(".s.PGSQL.5432").exists());
                    match dir {
                        Some(d) => pg.host_path(d),
                        None => pg.host("localhost"),
                    };
                }
            }
        }
        if pg.get_ports().is_empty() {
            if let Some(port) = env("PGPORT").and_then(|p| p.parse().ok()) {
                pg.port(port);
            }
        }
        if pg.get_user().is_none() {
            if let Some(user) = env("PGUSER").or_else(|| env("USER")) {
                pg.user(user);
            }
        }
        if pg.get_password().is_none() {
            if let Some(pw) = env("PGPASSWORD") {
                pg.password(pw);
            }
        }
        if pg.get_dbname().is_none() {
            if let Some(db) = env("PGDATABASE") {
                pg.dbname(db);
            }
        }
        pg.application_name(&self.application_name);
        pg.connect_timeout(self.connect_timeout);
        // Unix sockets never use TLS (as libpq); a bad PGSSLMODE fails in connector().
        let mode = TlsSettings::resolve(&self.tls).map(|s| s.mode).unwrap_or_default();
        pg.ssl_mode(if unix_only(&pg) { SslMode::Disable.driver_mode() } else { mode.driver_mode() });
        pg
    }

    /// The DSN without its password, for error messages and logs.
    pub fn masked_dsn(&self) -> String {
        let pg = &self.pg;
        let mut parts = Vec::new();
        for host in pg.get_hosts() {
            match host {
                tokio_postgres::config::Host::Tcp(h) => parts.push(format!("host={h}")),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(p) => parts.push(format!("host={}", p.display())),
            }
        }
        for port in pg.get_ports() {
            parts.push(format!("port={port}"));
        }
        if let Some(user) = pg.get_user() {
            parts.push(format!("user={user}"));
        }
        if pg.get_password().is_some() {
            parts.push("password=***".to_string());
        }
        if let Some(db) = pg.get_dbname() {
            parts.push(format!("dbname={db}"));
        }
        if let Some(mode) = self.tls.mode {
            parts.push(format!("sslmode={mode}"));
        }
        parts.join(" ")
    }
}

/// Whether every host of `pg` is a unix socket (no TLS then, as in libpq).
fn unix_only(pg: &tokio_postgres::Config) -> bool {
    let hosts = pg.get_hosts();
    #[cfg(unix)]
    {
        !hosts.is_empty() && hosts.iter().all(|h| matches!(h, tokio_postgres::config::Host::Unix(_)))
    }
    #[cfg(not(unix))]
    {
        let _ = hosts;
        false
    }
}

fn parse_env<T: FromStr>(var: &str, raw: &str, option: &str, kind: &str) -> Result<T> {
    raw.trim()
        .parse()
        .map_err(|_| Error::config(format!("{var}={raw:?} is not a valid {kind} for option {option:?}")))
}

pub(crate) fn seconds_to_duration(secs: f64, what: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(secs)
        .map_err(|_| Error::config(format!("{what} must be >= 0 seconds, got {secs}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn from_dsn_defaults_and_unix_socket() {
        let c = Config::from_dsn("postgresql://postgres:@/postgres?host=/tmp/x").unwrap();
        assert_eq!(c.schema(), DEFAULT_SCHEMA);
        assert_eq!(c.pool_max_size(), DEFAULT_POOL_MAX_SIZE);
        let pg = c.pg_config();
        assert!(matches!(
            pg.get_hosts()[0],
            tokio_postgres::config::Host::Unix(ref p) if p == std::path::Path::new("/tmp/x")
        ));
        assert_eq!(pg.get_dbname(), Some("postgres"));
        assert_eq!(pg.get_application_name(), Some(DEFAULT_APPLICATION_NAME));
    }

    #[test]
    fn sslmode_reaches_the_driver_except_on_unix_sockets() {
        use tokio_postgres::config::SslMode as D;
        let tcp = Config::from_dsn("postgresql://u@db.example.com/app?sslmode=verify-full").unwrap();
        assert_eq!(tcp.ssl_mode().unwrap(), SslMode::VerifyFull);
        assert_eq!(tcp.pg_config().get_ssl_mode(), D::Require);
        assert!(tcp.masked_dsn().contains("sslmode=verify-full"));
        let unix = Config::from_dsn("postgresql://u@/app?host=/tmp&sslmode=require").unwrap();
        assert_eq!(unix.pg_config().get_ssl_mode(), D::Disable, "no TLS on unix sockets, as libpq");
        let off = Config::from_dsn("host=db.example.com sslmode=disable").unwrap();
        assert_eq!(off.pg_config().get_ssl_mode(), D::Disable);
    }

    #[test]
    fn bad_values_are_config_errors() {
        for dsn in ["", "   ", "postgresql://h/db?sslmode=bogus"] {
            assert_eq!(Config::from_dsn(dsn).unwrap_err().kind(), ErrorKind::Config, "{dsn}");
        }
        let c = Config::from_dsn("host=localhost").unwrap();
        assert_eq!(c.clone().with_schema("Bad").validate().unwrap_err().kind(), ErrorKind::Config);
        assert!(c.clone().with_pool_max_size(0).validate().is_err());
        assert!(c.clone().with_connect_timeout(Duration::ZERO).validate().is_err());
        assert!(c.clone().with_max_payload_bytes(0).validate().is_err());
        // Checked together, so the order of the builders does not matter.
        assert!(c.clone().with_pool_min_size(20).with_pool_max_size(30).validate().is_ok());
        assert!(c.validate().is_ok());
    }

    #[test]
    fn from_env_reads_every_variable() {
        let c = Config::from_env_map(&env(&[
            ("PGQRS_DSN", "postgresql://u:secret@db/app"),
            ("PGQRS_SCHEMA", "jobs"),
            ("PGQRS_POOL_MIN_SIZE", "2"),
            ("PGQRS_POOL_MAX_SIZE", "3"),
            ("PGQRS_CONNECT_TIMEOUT", "2.5"),
            ("PGQRS_MAX_PAYLOAD_BYTES", "100"),
            ("PGQRS_PREPARE_STATEMENTS", "yes"),
            ("PGQRS_APPLICATION_NAME", "svc"),
        ]))
        .unwrap();
        assert_eq!(c.schema(), "jobs");
        assert_eq!((c.pool_min_size(), c.pool_max_size()), (2, 3));
        assert_eq!(c.connect_timeout(), Duration::from_millis(2500));
        assert_eq!(c.max_payload_bytes(), 100);
        assert!(c.prepare_statements());
        assert_eq!(c.application_name(), "svc");
        assert!(!c.masked_dsn().contains("secret"));
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[test]
    fn from_env_fallback_and_errors() {
        let c = Config::from_env_map(&env(&[("DATABASE_URL", "postgresql://x@h/d")])).unwrap();
        assert_eq!(c.dsn(), "postgresql://x@h/d");
        assert_eq!(Config::from_env_map(&env(&[])).unwrap_err().kind(), ErrorKind::Config);
        let err = Config::from_env_map(&env(&[
            ("PGQRS_DSN", "postgresql://x@h/d"),
            ("PGQRS_POOL_MAX_SIZE", "many"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("PGQRS_POOL_MAX_SIZE"), "{err}");
    }
}
