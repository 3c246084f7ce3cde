//! TLS settings read from the DSN (`sslmode`, `sslrootcert`), in the spirit of
//! libpq, and the rustls connector that applies them (feature `tls`).
//!
//! tokio-postgres itself knows only `sslmode=disable|prefer|require` and no
//! `sslrootcert`: pgqrs takes these keys out of the DSN before the driver
//! parses it, and builds a rustls configuration that verifies as libpq would
//! (see [`SslMode`]).

#[cfg(feature = "tls")]
use std::path::PathBuf;

use crate::error::{Error, Result};

/// How a connection uses TLS (libpq's `sslmode`). The default is [`SslMode::Prefer`].
///
/// | sslmode       | encryption                        | server certificate checked            |
/// |---------------|-----------------------------------|---------------------------------------|
/// | `disable`     | never                             | -                                     |
/// | `allow`, `prefer` (default) | when the server offers it | no                               |
/// | `require`     | always                            | no; chain only when `sslrootcert` is given or `~/.postgresql/root.crt` exists |
/// | `verify-ca`   | always                            | chain of trust (not the host name)    |
/// | `verify-full` | always                            | chain of trust and host name          |
///
/// `sslrootcert` is a PEM file of CA certificates, or `system` for the
/// operating system's store. Without it, `verify-ca`/`verify-full` use
/// `~/.postgresql/root.crt` when it exists, else the system store (and the
/// Mozilla roots of `webpki-roots` when the system has none). `allow` is
/// treated like `prefer`. Unix-socket connections never use TLS (as libpq).
/// `sslcert` and `sslkey` (unencrypted PEM files; by default
/// `~/.postgresql/postgresql.crt` and `.key` when they exist) give a client
/// certificate for `cert` authentication. `PGSSLMODE`, `PGSSLROOTCERT`,
/// `PGSSLCERT` and `PGSSLKEY` apply when the DSN does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SslMode {
    /// Plain text only.
    Disable,
    /// Like `Prefer` here (libpq tries plain text first).
    Allow,
    /// TLS when the server offers it, without checking its certificate.
    #[default]
    Prefer,
    /// TLS always; the certificate is checked only against an explicit `sslrootcert`.
    Require,
    /// TLS always, the server's certificate chain checked against the root certificates.
    VerifyCa,
    /// As `VerifyCa`, and the certificate must name the host connected to.
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling (`verify-full`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Parse libpq's spelling; a Config error naming the value otherwise.
    pub fn parse(value: &str) -> Result<SslMode> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(Error::config(format!(
                    "invalid sslmode {other:?}: use disable, allow, prefer, require, verify-ca or verify-full"
                )))
            }
        })
    }

    pub(crate) fn driver_mode(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as D;
        match self {
            SslMode::Disable => D::Disable,
            SslMode::Allow | SslMode::Prefer => D::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => D::Require,
        }
    }
}

impl std::fmt::Display for SslMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// DSN keys pgqrs handles itself.
const OWN_KEYS: [&str; 5] = ["sslmode", "sslrootcert", "sslcert", "sslkey", "sslsni"];
/// libpq TLS keys the Rust client does not support: refused rather than ignored.
const UNSUPPORTED_KEYS: [&str; 6] = [
    "sslpassword",
    "sslcrl",
    "sslcrldir",
    "sslcertmode",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
];

/// The TLS keys found in a DSN.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct DsnTls {
    pub(crate) mode: Option<SslMode>,
    pub(crate) root_cert: Option<String>,
    pub(crate) cert: Option<String>,
    pub(crate) key: Option<String>,
    pub(crate) sni: Option<bool>,
}

/// Split `dsn` into the DSN tokio-postgres parses (without the TLS keys) and those keys.
pub(crate) fn split_dsn(dsn: &str) -> Result<(String, DsnTls)> {
    let mut tls = DsnTls::default();
    let mut take = |key: &str, value: &str| -> Result<bool> {
        if UNSUPPORTED_KEYS.contains(&key) {
            return Err(Error::config(format!(
                "DSN option {key} is not supported by the Rust client of pgqrs (sslmode, \
                 sslrootcert, sslcert and sslkey are); remove it (an encrypted key needs to be \
                 decrypted first)"
            )));
        }
        if !OWN_KEYS.contains(&key) {
            return Ok(false);
        }
        match key {
            "sslmode" => tls.mode = Some(SslMode::parse(value)?),
            "sslrootcert" => tls.root_cert = Some(value.to_string()).filter(|v| !v.is_empty()),
            "sslcert" => tls.cert = Some(value.to_string()).filter(|v| !v.is_empty()),
            "sslkey" => tls.key = Some(value.to_string()).filter(|v| !v.is_empty()),
            _ => tls.sni = Some(value != "0"),
        }
        Ok(true)
    };
    let lower = dsn.trim_start().to_ascii_lowercase();
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        let Some((base, query)) = dsn.split_once('?') else { return Ok((dsn.to_string(), tls)) };
        let mut kept = Vec::new();
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if !take(&percent_decode(k)?, &percent_decode(v)?)? {
                kept.push(pair);
            }
        }
        let rebuilt = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
        return Ok((rebuilt, tls));
    }
    let mut out = String::with_capacity(dsn.len());
    let mut last = 0;
    for (key, value, start, end) in key_values(dsn)? {
        if take(&key, &value)? {
            out.push_str(&dsn[last..start]);
            last = end;
        }
    }
    out.push_str(&dsn[last..]);
    Ok((out, tls))
}

fn percent_decode(s: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(b) = hex else {
                return Err(Error::config(format!("invalid percent-encoding in DSN parameter {s:?}")));
            };
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Error::config(format!("DSN parameter {s:?} is not UTF-8")))
}

/// The `key = value` pairs of a libpq keyword/value string, with the byte span of each.
fn key_values(s: &str) -> Result<Vec<(String, String, usize, usize)>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= b.len() {
            return Ok(out);
        }
        let start = i;
        while i < b.len() && b[i] != b'=' && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = s[start..i].to_string();
        skip_ws(&mut i);
        if i >= b.len() || b[i] != b'=' {
            return Err(Error::config(format!("invalid DSN: missing \"=\" after {key:?}")));
        }
        i += 1;
        skip_ws(&mut i);
        let mut value = Vec::new();
        if i < b.len() && b[i] == b'\'' {
            i += 1;
            loop {
                match b.get(i) {
                    None => return Err(Error::config("invalid DSN: unterminated quoted value")),
                    Some(b'\'') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') if i + 1 < b.len() => {
                        value.push(b[i + 1]);
                        i += 2;
                    }
                    Some(&c) => {
                        value.push(c);
                        i += 1;
                    }
                }
            }
        } else {
            while i < b.len() && !b[i].is_ascii_whitespace() {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                value.push(b[i]);
                i += 1;
            }
        }
        let value = String::from_utf8(value).map_err(|_| Error::config("invalid DSN: value is not UTF-8"))?;
        out.push((key, value, start, i));
    }
}

/// The TLS settings a connection uses: the DSN's, else `PGSSLMODE`/`PGSSLROOTCERT`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TlsSettings {
    pub(crate) mode: SslMode,
    pub(crate) root_cert: Option<String>,
    /// Client certificate chain and key (PEM files), for `cert` authentication.
    pub(crate) cert: Option<String>,
    pub(crate) key: Option<String>,
    pub(crate) sni: bool,
}

impl TlsSettings {
    pub(crate) fn resolve(dsn: &DsnTls) -> Result<TlsSettings> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let mode = match dsn.mode {
            Some(m) => m,
            None => match env("PGSSLMODE") {
                Some(v) => {
                    SslMode::parse(&v).map_err(|e| Error::config(format!("PGSSLMODE: {}", e.message())))?
                }
                None => SslMode::default(),
            },
        };
        let root_cert = dsn.root_cert.clone().or_else(|| env("PGSSLROOTCERT"));
        let cert = dsn.cert.clone().or_else(|| env("PGSSLCERT"));
        let key = dsn.key.clone().or_else(|| env("PGSSLKEY"));
        Ok(TlsSettings { mode, root_cert, cert, key, sni: dsn.sni.unwrap_or(true) })
    }

    /// libpq's default root certificate file, when it exists.
    #[cfg(feature = "tls")]
    fn default_root_file() -> Option<PathBuf> {
        Self::default_file("root.crt")
    }

    /// `~/.postgresql/<name>`, when it exists (libpq's default TLS files).
    #[cfg(feature = "tls")]
    fn default_file(name: &str) -> Option<PathBuf> {
        let home = std::env::var_os("HOME")?;
        let path = PathBuf::from(home).join(".postgresql").join(name);
        path.exists().then_some(path)
    }

    /// The client certificate and key files: both given, or libpq's defaults
    /// when the certificate file exists; none otherwise.
    #[cfg(feature = "tls")]
    fn client_files(&self) -> Result<Option<(PathBuf, PathBuf)>> {
        let cert = self.cert.as_ref().map(PathBuf::from).or_else(|| Self::default_file("postgresql.crt"));
        let Some(cert) = cert else {
            if let Some(key) = &self.key {
                return Err(Error::config(format!(
                    "sslkey={key} is given without sslcert: give the client certificate too"
                )));
            }
            return Ok(None);
        };
        let key = match &self.key {
            Some(k) => PathBuf::from(k),
            None => cert.with_file_name("postgresql.key"),
        };
        Ok(Some((cert, key)))
    }
}

/// What a pool or LISTEN connection connects with.
#[derive(Clone)]
pub(crate) enum Connector {
    Plain,
    #[cfg(feature = "tls")]
    Rustls(tokio_postgres_rustls::MakeRustlsConnect),
}

impl Connector {
    /// The connector for `settings` (plain text for `disable`, or for unix sockets only).
    pub(crate) fn new(settings: &TlsSettings, unix_only: bool) -> Result<Connector> {
        if settings.mode == SslMode::Disable || unix_only {
            return Ok(Connector::Plain);
        }
        #[cfg(feature = "tls")]
        {
            rustls_connector::build(settings).map(Connector::Rustls)
        }
        #[cfg(not(feature = "tls"))]
        {
            match settings.mode {
                SslMode::Allow | SslMode::Prefer => Ok(Connector::Plain),
                mode => Err(Error::config(format!(
                    "sslmode={mode} needs TLS, but pgqrs was built without its \"tls\" feature; \
                     enable it (it is on by default) or use sslmode=disable"
                ))),
            }
        }
    }
}

#[cfg(feature = "tls")]
mod rustls_connector {
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::client::WebPkiServerVerifier;
    use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
    use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
    use tokio_postgres_rustls::MakeRustlsConnect;

    use super::{SslMode, TlsSettings};
    use crate::error::{Error, Result};

    pub(super) fn build(settings: &TlsSettings) -> Result<MakeRustlsConnect> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let explicit_roots = settings.root_cert.is_some() || TlsSettings::default_root_file().is_some();
        let verifier: Arc<dyn ServerCertVerifier> = match settings.mode {
            SslMode::VerifyFull => web_pki(settings, &provider)?,
            SslMode::VerifyCa => Arc::new(ChainOnly(web_pki(settings, &provider)?)),
            // libpq: `require` checks the chain when root certificates are given.
            SslMode::Require if explicit_roots => Arc::new(ChainOnly(web_pki(settings, &provider)?)),
            _ => Arc::new(NoCheck(provider.clone())),
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::config(format!("TLS setup failed: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match settings.client_files()? {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let (chain, private_key) = client_identity(&cert, &key)?;
                builder.with_client_auth_cert(chain, private_key).map_err(|e| {
                    Error::config(format!(
                        "sslcert={} and sslkey={} do not make a client identity: {e}",
                        cert.display(),
                        key.display()
                    ))
                })?
            }
        };
        config.enable_sni = settings.sni;
        Ok(MakeRustlsConnect::new(config))
    }

    fn web_pki(settings: &TlsSettings, provider: &Arc<CryptoProvider>) -> Result<Arc<WebPkiServerVerifier>> {
        let roots = Arc::new(root_store(settings)?);
        WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| Error::config(format!("TLS setup failed: {e}")))
    }

    /// The certificate chain and private key of the PEM files `cert` and `key`.
    fn client_identity(
        cert: &std::path::Path,
        key: &std::path::Path,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .and_then(|it| it.collect::<std::result::Result<_, _>>())
            .map_err(|e| {
                Error::config(format!(
                    "cannot read the client certificate of sslcert={}: {e}",
                    cert.display()
                ))
            })?;
        if chain.is_empty() {
            return Err(Error::config(format!(
                "sslcert={} holds no certificate (PEM \"CERTIFICATE\" blocks)",
                cert.display()
            )));
        }
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
            Error::config(format!(
                "cannot read the private key of sslkey={}: {e}; give an unencrypted PEM key \
                 (PKCS#8, PKCS#1 or SEC1)",
                key.display()
            ))
        })?;
        Ok((chain, key))
    }

    fn root_store(settings: &TlsSettings) -> Result<RootCertStore> {
        let mut store = RootCertStore::empty();
        let file = match settings.root_cert.as_deref() {
            Some("system") => None,
            Some(path) => Some(std::path::PathBuf::from(path)),
            None => TlsSettings::default_root_file(),
        };
        if let Some(path) = file {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&path)
                .and_then(|it| it.collect::<std::result::Result<_, _>>())
                .map_err(|e| {
                    Error::config(format!(
                        "cannot read the root certificates of sslrootcert={}: {e}; give a PEM file \
                         of CA certificates, or sslrootcert=system",
                        path.display()
                    ))
                })?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(Error::config(format!(
                    "sslrootcert={} holds no usable CA certificate (PEM \"CERTIFICATE\" blocks)",
                    path.display()
                )));
            }
            return Ok(store);
        }
        let native = rustls_native_certs::load_native_certs();
        store.add_parsable_certificates(native.certs);
        if store.is_empty() {
            store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        Ok(store)
    }

    /// `verify-ca`: the chain must lead to a trusted root; the name is not checked.
    #[derive(Debug)]
    struct ChainOnly(Arc<WebPkiServerVerifier>);

    impl ServerCertVerifier for ChainOnly {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            server_name: &ServerName<'_>,
            ocsp_response: &[u8],
            now: UnixTime,
        ) -> std::result::Result<ServerCertVerified, rustls::Error> {
            match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
                )) => Ok(ServerCertVerified::assertion()),
                other => other,
            }
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
            self.0.verify_tls12_signature(message, cert, dss)
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
            self.0.verify_tls13_signature(message, cert, dss)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.supported_verify_schemes()
        }
    }

    /// `prefer`/`require`: encryption without authentication of the server,
    /// as libpq (the handshake signatures are still checked).
    #[derive(Debug)]
    struct NoCheck(Arc<CryptoProvider>);

    impl ServerCertVerifier for NoCheck {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> std::result::Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_dsn_loses_only_the_tls_keys() {
        let (rest, tls) = split_dsn(
            "postgresql://u:p@h:5432/db?sslmode=verify-full&application_name=x&sslrootcert=%2Ftmp%2Fca.pem",
        )
        .unwrap();
        assert_eq!(rest, "postgresql://u:p@h:5432/db?application_name=x");
        assert_eq!(tls.mode, Some(SslMode::VerifyFull));
        assert_eq!(tls.root_cert.as_deref(), Some("/tmp/ca.pem"));
        let (rest, tls) = split_dsn("postgres://h/db?sslmode=disable").unwrap();
        assert_eq!((rest.as_str(), tls.mode), ("postgres://h/db", Some(SslMode::Disable)));
        let (rest, tls) = split_dsn("postgresql://h/db").unwrap();
        assert_eq!((rest.as_str(), tls), ("postgresql://h/db", DsnTls::default()));
    }

    #[test]
    fn keyword_dsn_loses_only_the_tls_keys() {
        let (rest, tls) =
            split_dsn("host=h sslmode = verify-ca dbname=db sslrootcert='/a b/c\\'s.pem' user=u").unwrap();
        assert_eq!(rest.split_whitespace().collect::<Vec<_>>(), ["host=h", "dbname=db", "user=u"]);
        assert_eq!(tls.mode, Some(SslMode::VerifyCa));
        assert_eq!(tls.root_cert.as_deref(), Some("/a b/c's.pem"));
    }

    #[test]
    fn bad_or_unsupported_tls_keys_are_config_errors() {
        for dsn in ["host=h sslmode=bogus", "postgresql://h/db?sslmode=verify", "host=h sslpassword=x"] {
            let err = split_dsn(dsn).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Config, "{dsn}");
        }
        assert!(split_dsn("host=h sslcrl=/k").unwrap_err().to_string().contains("sslcrl"));
        let (rest, tls) = split_dsn("host=h sslcert=/c.pem sslkey=/k.pem").unwrap();
        assert_eq!(rest.trim(), "host=h");
        assert_eq!((tls.cert.as_deref(), tls.key.as_deref()), (Some("/c.pem"), Some("/k.pem")));
        assert!(split_dsn("host=h sslmode=bogus").unwrap_err().to_string().contains("verify-full"));
    }

    #[test]
    fn modes_map_onto_the_driver() {
        use tokio_postgres::config::SslMode as D;
        assert_eq!(SslMode::Disable.driver_mode(), D::Disable);
        assert_eq!(SslMode::Allow.driver_mode(), D::Prefer);
        assert_eq!(SslMode::VerifyCa.driver_mode(), D::Require);
        assert_eq!(SslMode::default(), SslMode::Prefer);
    }
}
