//! TLS to PostgreSQL. RDS refuses plain connections from PostgreSQL 15 on (`rds.force_ssl`).
//! `require` encrypts without checking the server's certificate, as libpq's mode of that name
//! does; `verify-full` checks the chain against `DATABASE_SSLROOTCERT` (for RDS, its CA bundle)
//! and the host name.

use std::{path::Path, sync::Arc};

use anyhow::Context as _;
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{CryptoProvider, aws_lc_rs, verify_tls12_signature, verify_tls13_signature},
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
};
use tokio_postgres::{Client, NoTls, config::SslMode};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{DatabaseTls, DbSslMode};

/// The connector for `tls`, or `None` for plain connections.
pub fn connector(tls: &DatabaseTls) -> anyhow::Result<Option<MakeRustlsConnect>> {
    let provider = Arc::new(aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let config = match tls.mode {
        DbSslMode::Disable => return Ok(None),
        DbSslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth(),
        DbSslMode::VerifyFull => {
            let path = tls
                .root_cert
                .as_deref()
                .context("DATABASE_SSLMODE=verify-full needs DATABASE_SSLROOTCERT")?;
            builder
                .with_root_certificates(roots(path)?)
                .with_no_client_auth()
        }
    };
    Ok(Some(MakeRustlsConnect::new(config)))
}

fn roots(path: &Path) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read {}", path.display()))?
    {
        roots.add(cert.with_context(|| format!("bad certificate in {}", path.display()))?)?;
    }
    anyhow::ensure!(!roots.is_empty(), "no certificate in {}", path.display());
    Ok(roots)
}

/// Opens one connection (migrations, database creation) and drives it in the background.
pub async fn connect(url: &str, tls: &DatabaseTls) -> anyhow::Result<Client> {
    let mut config: tokio_postgres::Config = url.parse().context("invalid DATABASE_URL")?;
    let client = match connector(tls)? {
        Some(connector) => {
            let (client, conn) = config.ssl_mode(SslMode::Require).connect(connector).await?;
            tokio::spawn(conn);
            client
        }
        None => {
            let (client, conn) = config.ssl_mode(SslMode::Disable).connect(NoTls).await?;
            tokio::spawn(conn);
            client
        }
    };
    Ok(client)
}

/// Accepts any server certificate but still checks that the handshake was signed by its key,
/// so the session is encrypted end to end with whoever holds that key.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
