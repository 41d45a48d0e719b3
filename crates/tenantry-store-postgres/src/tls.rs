//! TLS to the database, as libpq's connection strings ask for it, so that a provider's URL works
//! as given (`?sslmode=verify-full&sslrootcert=/path/ca.pem`).
//!
//! tokio-postgres knows `sslmode` only as `disable`, `prefer` and `require`, and no certificate
//! settings; this module takes libpq's TLS parameters out of the URL before tokio-postgres parses
//! the rest, and builds the rustls configuration they describe (tokio-postgres-rustls connects):
//!
//! | `sslmode`             | encrypted             | server certificate checked                  |
//! |-----------------------|-----------------------|---------------------------------------------|
//! | `disable`             | never                 | -                                           |
//! | `prefer` (default)    | if the server offers  | no, unless `sslrootcert` is given (then as `verify-ca`) |
//! | `require`             | always                | no, unless `sslrootcert` is given (then as `verify-ca`) |
//! | `verify-ca`           | always                | chain to `sslrootcert`                      |
//! | `verify-full`         | always                | chain to `sslrootcert`, and the host's name |
//!
//! `sslrootcert` is a PEM file of trusted certificates, or `system`: the Mozilla roots compiled
//! in (webpki-roots, the set outgoing webhooks trust), taken with `verify-full` only, as libpq
//! does. `sslcert` and `sslkey` (PEM) give a client certificate. Unix-domain sockets never carry
//! TLS. Unlike libpq, nothing is read from `~/.postgresql` or from `PG*` variables: what the URL
//! says is all there is, read once.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::Arc;
use tenantry_core::{Error, Result};
use tokio_postgres_rustls::MakeRustlsConnect;

/// A database to connect to: tokio-postgres's settings, and the TLS connector the URL's
/// parameters describe.
#[derive(Clone)]
pub struct Target {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
}

impl Target {
    /// Parses a `postgres://` URL (or a `key=value` string), TLS parameters included.
    pub fn parse(url: &str) -> Result<Target> {
        let (rest, params) = take_tls_params(url)?;
        let mut config: tokio_postgres::Config =
            rest.parse().map_err(|e| Error::invalid_request(format!("the database URL does not parse: {e}")))?;
        let mut mode = params.mode(config.get_ssl_mode())?;
        let mut params = params;
        // libpq ignores the TLS settings over Unix-domain sockets: they never carry TLS.
        #[cfg(unix)]
        if !config.get_hosts().is_empty()
            && config.get_hosts().iter().all(|h| matches!(h, tokio_postgres::config::Host::Unix(_)))
        {
            (mode, params) = (Mode::Disable, TlsParams::default());
        }
        // Only `hostaddr` given: the address is the name TLS checks (an IP address in the
        // certificate), as in libpq; tokio-postgres wants a host for the handshake.
        if config.get_hosts().is_empty() {
            for addr in config.get_hostaddrs().to_vec() {
                config.host(addr.to_string());
            }
        }
        config.ssl_mode(match mode {
            Mode::Disable => tokio_postgres::config::SslMode::Disable,
            Mode::Prefer => tokio_postgres::config::SslMode::Prefer,
            Mode::Require | Mode::VerifyCa | Mode::VerifyFull => tokio_postgres::config::SslMode::Require,
        });
        let tls = MakeRustlsConnect::new(client_config(mode, &params)?);
        Ok(Target { config, tls })
    }

    /// One connection outside any pool, driven by a task of its own until the client is dropped.
    pub async fn connect(&self) -> std::result::Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, connection) = self.config.connect(self.tls.clone()).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// libpq's TLS parameters, as found in a URL.
#[derive(Debug, Default, PartialEq, Eq)]
struct TlsParams {
    mode: Option<String>,
    root_cert: Option<String>,
    cert: Option<String>,
    key: Option<String>,
}

impl TlsParams {
    fn mode(&self, parsed: tokio_postgres::config::SslMode) -> Result<Mode> {
        Ok(match self.mode.as_deref() {
            Some("disable") => Mode::Disable,
            Some("prefer") => Mode::Prefer,
            Some("require") => Mode::Require,
            Some("verify-ca") => Mode::VerifyCa,
            Some("verify-full") => Mode::VerifyFull,
            Some(other) => {
                return Err(Error::invalid_request(format!(
                    "sslmode={other} in the database URL is not one Tenantry knows: use disable, prefer, require, \
                     verify-ca or verify-full (allow is not offered)"
                )))
            }
            // libpq: `sslrootcert=system` alone means verify-full (and no weaker mode is taken
            // with it, below).
            None if self.root_cert.as_deref() == Some("system") => Mode::VerifyFull,
            None => match parsed {
                tokio_postgres::config::SslMode::Disable => Mode::Disable,
                tokio_postgres::config::SslMode::Require => Mode::Require,
                _ => Mode::Prefer,
            },
        })
    }
}

/// The rustls configuration for `mode`.
fn client_config(mode: Mode, params: &TlsParams) -> Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    if params.root_cert.as_deref() == Some("system") && mode != Mode::VerifyFull {
        // Any public CA's certificate, for any name, would pass a chain check alone.
        return Err(Error::invalid_request(
            "sslrootcert=system in the database URL needs sslmode=verify-full (or no sslmode): with the public \
             roots, only the name check tells the server from anyone else's",
        ));
    }
    let roots = match mode {
        Mode::Disable => None,
        _ => params.root_cert.as_deref().map(root_store).transpose()?,
    };
    if matches!(mode, Mode::VerifyCa | Mode::VerifyFull) && roots.is_none() {
        return Err(Error::invalid_request(
            "sslmode=verify-ca and verify-full need sslrootcert in the database URL: a PEM file of the certificates \
             to trust, or sslrootcert=system",
        ));
    }
    let verifier: Arc<dyn ServerCertVerifier> = match (mode, roots) {
        (Mode::VerifyFull, Some(roots)) => webpki_verifier(roots, &provider)?,
        // libpq checks the chain whenever it has a root certificate: `prefer` and `require`
        // with `sslrootcert` check it as `verify-ca` does.
        (Mode::Prefer | Mode::Require | Mode::VerifyCa, Some(roots)) => {
            Arc::new(NameUnchecked { chain: Some(webpki_verifier(roots, &provider)?), provider: provider.clone() })
        }
        _ => Arc::new(NameUnchecked { chain: None, provider: provider.clone() }),
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::internal(format!("TLS settings: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match (&params.cert, &params.key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(|e| unreadable("sslcert", cert, e))?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| unreadable("sslkey", key, e))?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                Error::invalid_request(format!("sslcert and sslkey do not make a client certificate: {e}"))
            })?
        }
        _ => {
            return Err(Error::invalid_request(
                "the database URL gives one of sslcert and sslkey: give both, or neither",
            ))
        }
    };
    // PostgreSQL's protocol name, as libpq 17 sends it: a server taking TLS directly
    // (`sslnegotiation=direct`) requires it; others ignore it.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(config)
}

fn unreadable(param: &str, path: &str, e: rustls::pki_types::pem::Error) -> Error {
    Error::invalid_request(format!("{param}={path} in the database URL cannot be read as PEM: {e}"))
}

fn webpki_verifier(roots: RootCertStore, provider: &Arc<CryptoProvider>) -> Result<Arc<WebPkiServerVerifier>> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| Error::invalid_request(format!("sslrootcert in the database URL: {e}")))
}

/// The certificates `sslrootcert` names.
fn root_store(path: &str) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    if path == "system" {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        return Ok(roots);
    }
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| unreadable("sslrootcert", path, e))?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(Error::invalid_request(format!(
            "sslrootcert={path} in the database URL holds no certificate that parses"
        )));
    }
    Ok(roots)
}

/// The verifier of the modes that do not check the host's name: `verify-ca` (`chain`: the
/// server's chain must lead to a trusted root) and `prefer` or `require` without roots (no
/// chain: the certificate is taken as it comes, libpq's meaning of these modes: they protect
/// against eavesdropping, not against an impostor). Either way the handshake's signatures are
/// checked against the certificate presented.
#[derive(Debug)]
struct NameUnchecked {
    chain: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for NameUnchecked {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else { return Ok(ServerCertVerified::assertion()) };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
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
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The names of libpq's TLS parameters this module reads.
const TLS_PARAMS: &[&str] = &["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// Takes libpq's TLS parameters out of `url` (a `postgres://` URL's query, or the words of a
/// `key=value` string), giving back the rest for tokio-postgres.
fn take_tls_params(url: &str) -> Result<(String, TlsParams)> {
    let mut params = TlsParams::default();
    let mut put = |key: &str, value: String| -> Result<()> {
        let slot = match key {
            "sslmode" => &mut params.mode,
            "sslrootcert" => &mut params.root_cert,
            "sslcert" => &mut params.cert,
            _ => &mut params.key,
        };
        if slot.replace(value).is_some() {
            return Err(Error::invalid_request(format!("the database URL gives {key} twice")));
        }
        Ok(())
    };
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        // The query starts at the first `?` after the credentials (a password may hold one).
        let authority = url.find('@').map_or(url.find("://").map_or(0, |i| i + 3), |at| at + 1);
        let Some(mark) = url[authority..].find('?').map(|i| authority + i) else {
            return Ok((url.to_owned(), params));
        };
        let (base, query) = (&url[..mark], &url[mark + 1..]);
        let mut kept = Vec::new();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if TLS_PARAMS.contains(&key) {
                let value = percent_encoding::percent_decode_str(value)
                    .decode_utf8()
                    .map_err(|_| Error::invalid_request(format!("{key} in the database URL is not UTF-8")))?;
                put(key, value.into_owned())?;
            } else {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
        return Ok((rest, params));
    }
    let names_tls = url.split_whitespace().any(|w| w.split_once('=').is_some_and(|(k, _)| TLS_PARAMS.contains(&k)));
    if !names_tls {
        return Ok((url.to_owned(), params));
    }
    if url.contains(['\'', '\\']) {
        return Err(Error::invalid_request(
            "a database connection string with quoted values and TLS parameters: give it as a postgres:// URL",
        ));
    }
    let mut kept = Vec::new();
    for word in url.split_whitespace() {
        match word.split_once('=') {
            Some((key, value)) if TLS_PARAMS.contains(&key) => put(key, value.to_owned())?,
            _ => kept.push(word),
        }
    }
    Ok((kept.join(" "), params))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_parameters_leave_the_url_and_the_rest_stays_as_written() {
        let (rest, p) = take_tls_params(
            "postgres://app@db.example:5432/tenantry?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(rest, "postgres://app@db.example:5432/tenantry?application_name=x");
        assert_eq!(p.mode.as_deref(), Some("verify-full"));
        assert_eq!(p.root_cert.as_deref(), Some("/etc/ca.pem"));
        let (rest, p) = take_tls_params("postgres://app@h/db?sslmode=require").unwrap();
        assert_eq!((rest.as_str(), p.mode.as_deref()), ("postgres://app@h/db", Some("require")));
        let (rest, p) = take_tls_params("host=h user=app sslmode=verify-ca sslrootcert=/ca.pem dbname=d").unwrap();
        assert_eq!(rest, "host=h user=app dbname=d");
        assert_eq!((p.mode.as_deref(), p.root_cert.as_deref()), (Some("verify-ca"), Some("/ca.pem")));
        let (rest, p) = take_tls_params("postgres://app:pa?ss@h/db?sslmode=require&connect_timeout=5").unwrap();
        assert_eq!(
            (rest.as_str(), p.mode.as_deref()),
            ("postgres://app:pa?ss@h/db?connect_timeout=5", Some("require"))
        );
        let (rest, p) = take_tls_params("postgres://app@h/db").unwrap();
        assert_eq!((rest.as_str(), p), ("postgres://app@h/db", TlsParams::default()));
        assert!(take_tls_params("postgres://h/db?sslmode=require&sslmode=disable").is_err());
    }

    #[test]
    fn each_mode_is_read_as_libpq_reads_it() {
        let mode = |url: &str| -> Result<Mode> {
            let (rest, p) = take_tls_params(url)?;
            let parsed: tokio_postgres::Config = rest.parse().unwrap();
            p.mode(parsed.get_ssl_mode())
        };
        assert_eq!(mode("postgres://h/d").unwrap(), Mode::Prefer);
        assert_eq!(mode("postgres://h/d?sslmode=disable").unwrap(), Mode::Disable);
        assert_eq!(mode("postgres://h/d?sslmode=verify-ca").unwrap(), Mode::VerifyCa);
        assert_eq!(mode("postgres://h/d?sslrootcert=system").unwrap(), Mode::VerifyFull);
        assert_eq!(mode("postgres://u:p?ss@h/d?sslmode=require").unwrap(), Mode::Require, "a ? in the password");
        assert_eq!(mode("host=h sslmode=require").unwrap(), Mode::Require);
        let refused = mode("postgres://h/d?sslmode=allow").unwrap_err();
        assert!(refused.message.contains("allow is not offered"), "{}", refused.message);
    }

    #[test]
    fn verification_without_roots_and_half_a_client_certificate_are_refused() {
        let missing = Target::parse("postgres://h/d?sslmode=verify-full").err().unwrap();
        assert!(missing.message.contains("need sslrootcert"), "{}", missing.message);
        let half = Target::parse("postgres://h/d?sslcert=/c.pem").err().unwrap();
        assert!(half.message.contains("give both"), "{}", half.message);
        let absent = Target::parse("postgres://h/d?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem").err().unwrap();
        assert!(absent.message.contains("cannot be read as PEM"), "{}", absent.message);
        let system = Target::parse("postgres://h/d?sslrootcert=system").unwrap();
        assert_eq!(system.config.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
        for weak in ["require", "verify-ca", "prefer"] {
            let refused = Target::parse(&format!("postgres://h/d?sslrootcert=system&sslmode={weak}")).err().unwrap();
            assert!(refused.message.contains("needs sslmode=verify-full"), "{weak}: {}", refused.message);
        }
        let socket = Target::parse("postgres://app@/db?host=/run/postgresql&sslmode=verify-full").unwrap();
        assert_eq!(socket.config.get_ssl_mode(), tokio_postgres::config::SslMode::Disable, "no TLS over a socket");
        let by_address = Target::parse("postgres://app@/db?hostaddr=10.0.0.5").unwrap();
        assert_eq!(by_address.config.get_hosts(), [tokio_postgres::config::Host::Tcp("10.0.0.5".into())]);
        let quoted = Target::parse("host=h password='a b' sslmode=require").err().unwrap();
        assert!(quoted.message.contains("give it as a postgres:// URL"), "{}", quoted.message);
        let untouched = take_tls_params("host=h password='a  b'").unwrap().0;
        assert_eq!(untouched, "host=h password='a  b'");
    }
}
