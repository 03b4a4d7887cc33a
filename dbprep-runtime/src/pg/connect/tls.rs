//! TLS as libpq's `sslmode` means it, on rustls with the ring provider
//! (feature `tls`).
//!
//! tokio-postgres knows only `disable`, `prefer` and `require`, and its TLS
//! adapters verify the certificate fully even under `require`. Here:
//!
//! | sslmode | encryption | certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `allow`, `prefer` | if the server offers it | not verified |
//! | `require` | always | not verified |
//! | `verify-ca` | always | chain checked against the root certificates |
//! | `verify-full` | always | chain and host name checked |
//!
//! Roots come from `sslrootcert` (a PEM file) or else the system's store.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::config::SslMode as DriverSslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::pg::error::{Error, Result};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS if the server insists (treated as `prefer`).
    Allow,
    /// TLS if the server offers it, without verification (libpq's default).
    #[default]
    Prefer,
    /// TLS always, without verification.
    Require,
    /// TLS always; the chain must lead to a trusted root.
    VerifyCa,
    /// TLS always; the chain and the host name are checked.
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(Error::config(format!(
                    "sslmode {other:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                )))
            }
        })
    }
}

/// The TLS settings of a connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    /// The mode.
    pub mode: SslMode,
    /// A PEM file of root certificates (`sslrootcert`).
    pub root_cert: Option<PathBuf>,
}

impl Tls {
    /// The mode tokio-postgres should negotiate for these settings.
    pub fn driver_mode(&self) -> DriverSslMode {
        match self.mode {
            SslMode::Disable => DriverSslMode::Disable,
            SslMode::Allow | SslMode::Prefer => DriverSslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => DriverSslMode::Require,
        }
    }

    /// The connector that verifies as the mode says.
    ///
    /// # Errors
    ///
    /// An unreadable or empty root certificate file, or no usable system
    /// roots for `verify-ca`/`verify-full`.
    pub fn connector(&self) -> Result<MakeRustlsConnect> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match self.mode {
            SslMode::Disable | SslMode::Allow | SslMode::Prefer | SslMode::Require => Arc::new(
                AcceptAnyCertificate(provider.signature_verification_algorithms),
            ),
            SslMode::VerifyCa | SslMode::VerifyFull => {
                let roots = Arc::new(self.roots()?);
                let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                    .build()
                    .map_err(|e| {
                        Error::config_caused(
                            format!("cannot build the certificate verifier: {e}"),
                            e,
                        )
                    })?;
                if self.mode == SslMode::VerifyCa {
                    Arc::new(ChainOnly(webpki))
                } else {
                    webpki
                }
            }
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::config_caused(format!("TLS: {e}"), e))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }

    fn roots(&self) -> Result<RootCertStore> {
        let mut roots = RootCertStore::empty();
        match &self.root_cert {
            Some(path) => {
                let shown = path.display();
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| {
                        Error::config_caused(format!("cannot read sslrootcert {shown}: {e}"), e)
                    })?
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| {
                        Error::config_caused(
                            format!("sslrootcert {shown} is not a PEM file of certificates: {e}"),
                            e,
                        )
                    })?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(Error::config(format!(
                        "sslrootcert {shown} holds no usable certificate"
                    )));
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    return Err(Error::config(
                        "no system root certificates found: give sslrootcert (PGSSLROOTCERT) for verify-ca/verify-full",
                    ));
                }
            }
        }
        Ok(roots)
    }
}

/// `require` and below: encrypt, but accept any certificate (libpq's
/// behaviour). Handshake signatures are still checked.
#[derive(Debug)]
struct AcceptAnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// `verify-ca`: the full check, except that the certificate need not name
/// the host.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
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

/// The connection settings and TLS settings of the environment, as
/// [`config::from_vars`](crate::pg::connect::config::from_vars) reads them, plus
/// `sslmode` and `sslrootcert` from `DATABASE_URL` (taken out of it before
/// tokio-postgres parses it: it knows neither `verify-ca` nor
/// `verify-full`), else `PGSSLMODE` and `PGSSLROOTCERT`.
///
/// # Errors
///
/// As `from_vars`, and an unknown sslmode.
pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<(tokio_postgres::Config, Tls)> {
    let url = var("DATABASE_URL");
    let (url, url_mode, url_root) = match &url {
        Some(url) => {
            let (rest, params) = take_params(url, &["sslmode", "sslrootcert"]);
            (Some(rest), params[0].clone(), params[1].clone())
        }
        None => (None, None, None),
    };
    let mode = match url_mode.or_else(|| var("PGSSLMODE")) {
        Some(mode) => mode.parse()?,
        None => SslMode::default(),
    };
    let tls = Tls {
        mode,
        root_cert: url_root.or_else(|| var("PGSSLROOTCERT")).map(PathBuf::from),
    };
    let mut config = crate::pg::connect::config::from_vars(|name| {
        if name == "DATABASE_URL" {
            url.clone()
        } else {
            var(name)
        }
    })?;
    config.ssl_mode(tls.driver_mode());
    Ok((config, tls))
}

/// Remove `names` from a connection string (URL query or key=value
/// words), returning what is left and the values taken, in `names` order.
fn take_params(url: &str, names: &[&str]) -> (String, Vec<Option<String>>) {
    let mut values = vec![None; names.len()];
    let mut take = |pair: &str| -> bool {
        let Some((key, value)) = pair.split_once('=') else {
            return false;
        };
        match names.iter().position(|n| *n == key) {
            Some(i) => {
                values[i] = Some(value.to_owned());
                true
            }
            None => false,
        }
    };
    if url.contains("://") {
        let Some((base, query)) = url.split_once('?') else {
            return (url.to_owned(), values);
        };
        let kept: Vec<&str> = query.split('&').filter(|pair| !take(pair)).collect();
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        (rest, values)
    } else {
        let kept: Vec<&str> = url.split_whitespace().filter(|pair| !take(pair)).collect();
        (kept.join(" "), values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::connect::config::tests::vars;

    #[test]
    fn verify_modes_are_read_from_the_url_and_the_environment() {
        let (config, tls) = from_vars(vars(&[(
            "DATABASE_URL",
            "postgres://u@db/app?sslmode=verify-full&sslrootcert=/ca.pem&application_name=x",
        )]))
        .unwrap();
        assert_eq!(
            tls,
            Tls {
                mode: SslMode::VerifyFull,
                root_cert: Some("/ca.pem".into())
            }
        );
        assert_eq!(config.get_ssl_mode(), DriverSslMode::Require);
        assert_eq!(config.get_application_name(), Some("x"));
        let (_, tls) = from_vars(vars(&[
            ("PGSSLMODE", "verify-ca"),
            ("PGSSLROOTCERT", "/r.pem"),
        ]))
        .unwrap();
        assert_eq!(tls.mode, SslMode::VerifyCa);
        assert!(from_vars(vars(&[("PGSSLMODE", "sometimes")])).is_err());
    }
}
