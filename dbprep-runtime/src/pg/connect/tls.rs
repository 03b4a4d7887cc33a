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
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
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
    /// A PEM file with the client's certificate, then any intermediates,
    /// for servers that authenticate clients by certificate (`sslcert`).
    pub client_cert: Option<PathBuf>,
    /// The PEM file of the client certificate's private key (`sslkey`);
    /// like libpq, refused when its group or others may read it.
    pub client_key: Option<PathBuf>,
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
            .with_custom_certificate_verifier(verifier);
        let config = match self.client_identity()? {
            Some((certs, key)) => config.with_client_auth_cert(certs, key).map_err(|e| {
                let shown = |path: &Option<PathBuf>| {
                    path.as_deref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                };
                Error::config_caused(
                    format!(
                        "cannot use the client certificate {} with the key {}: {e}",
                        shown(&self.client_cert),
                        shown(&self.client_key)
                    ),
                    e,
                )
            })?,
            None => config.with_no_client_auth(),
        };
        Ok(MakeRustlsConnect::new(config))
    }

    /// The client certificate chain and key, when a certificate is given
    /// and TLS may be used (`disable` reads no file, as in libpq).
    fn client_identity(
        &self,
    ) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>> {
        let Some(cert) = self
            .client_cert
            .as_ref()
            .filter(|_| self.mode != SslMode::Disable)
        else {
            return Ok(None);
        };
        let certs = CertificateDer::pem_file_iter(cert)
            .and_then(Iterator::collect::<std::result::Result<Vec<_>, _>>)
            .map_err(|e| {
                Error::config_caused(format!("cannot read sslcert {}: {e}", cert.display()), e)
            })?;
        if certs.is_empty() {
            return Err(Error::config(format!(
                "sslcert {} holds no certificate",
                cert.display()
            )));
        }
        let Some(key) = &self.client_key else {
            return Err(Error::config(format!(
                "sslcert {} is given without its key: give sslkey (PGSSLKEY)",
                cert.display()
            )));
        };
        refuse_shared_key(key)?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
            Error::config_caused(
                format!(
                    "cannot read sslkey {} as a PEM private key: {e}",
                    key.display()
                ),
                e,
            )
        })?;
        Ok(Some((certs, key)))
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

/// A private key its group or others may read is refused, as libpq does.
fn refuse_shared_key(path: &std::path::Path) -> Result<()> {
    let metadata = std::fs::metadata(path).map_err(|e| {
        Error::config_caused(format!("cannot read sslkey {}: {e}", path.display()), e)
    })?;
    if crate::pg::connect::files::shared_with_others(&metadata) {
        return Err(Error::config(format!(
            "private key file {} has group or world access; it must have permissions u=rw (0600) or less",
            path.display()
        )));
    }
    Ok(())
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
/// `sslmode`, `sslrootcert`, `sslcert` and `sslkey` from `DATABASE_URL`
/// (taken out of it before tokio-postgres parses it: it knows neither
/// `verify-ca` nor `verify-full`, nor client certificates), else the
/// service, else `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT` and `PGSSLKEY`,
/// and last, as libpq, `~/.postgresql/postgresql.crt` and `.key` when
/// they exist.
///
/// # Errors
///
/// As `from_vars`, and an unknown sslmode.
pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<(tokio_postgres::Config, Tls)> {
    // The service's sslmode and certificates count as the variables would.
    let (url, var) = crate::pg::connect::service::overlay(var("DATABASE_URL"), var)?;
    const NAMES: [(&str, &str); 4] = [
        ("sslmode", "PGSSLMODE"),
        ("sslrootcert", "PGSSLROOTCERT"),
        ("sslcert", "PGSSLCERT"),
        ("sslkey", "PGSSLKEY"),
    ];
    let (url, mut taken) = match &url {
        Some(url) => {
            let (rest, taken) =
                crate::pg::connect::config::take_params(url, &NAMES.map(|(name, _)| name));
            (Some(rest), taken)
        }
        None => (None, vec![None; NAMES.len()]),
    };
    // Each from the connection string, else its variable.
    let mut setting = |i: usize| taken[i].take().or_else(|| var(NAMES[i].1));
    let mode = match setting(0) {
        Some(mode) => mode.parse()?,
        None => SslMode::default(),
    };
    let root_cert = setting(1).map(PathBuf::from);
    // libpq's defaults, used when the files exist.
    let home_file = |name: &str| {
        crate::pg::connect::files::in_home(&var, &format!(".postgresql/{name}"))
            .filter(|path| path.is_file())
    };
    let client_cert = setting(2)
        .map(PathBuf::from)
        .or_else(|| home_file("postgresql.crt"));
    let client_key = setting(3)
        .map(PathBuf::from)
        .or_else(|| home_file("postgresql.key"));
    let tls = Tls {
        mode,
        root_cert,
        client_cert,
        client_key,
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
                root_cert: Some("/ca.pem".into()),
                client_cert: None,
                client_key: None,
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

    #[test]
    fn client_certificate_files_are_read_unless_tls_is_disabled() {
        let missing = Tls {
            mode: SslMode::Require,
            client_cert: Some("/nonexistent/client.crt".into()),
            client_key: Some("/nonexistent/client.key".into()),
            ..Tls::default()
        };
        let Err(e) = missing.connector() else {
            panic!("a missing certificate was accepted");
        };
        assert!(
            e.to_string()
                .contains("cannot read sslcert /nonexistent/client.crt"),
            "{e}"
        );
        let disabled = Tls {
            mode: SslMode::Disable,
            ..missing
        };
        assert!(disabled.connector().is_ok());
    }
}
