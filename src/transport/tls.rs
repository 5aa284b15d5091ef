//! TLS (AMI on 5039) with rustls: system-independent web PKI roots, an optional CA file for
//! self-signed PBX certificates, a server-name override, and an explicit `insecure` switch.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    self, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use super::options::Tls;
use crate::error::{Error, Result};

pub(super) async fn wrap(
    tcp: TcpStream,
    host: &str,
    tls: &Tls,
    timeout: Duration,
) -> Result<Box<dyn super::client::StreamBox>> {
    let config = client_config(tls)?;
    let name = tls.server_name.as_deref().unwrap_or(host);
    let server_name = ServerName::try_from(name.to_owned())
        .map_err(|e| Error::Usage(format!("invalid TLS server name {name:?}: {e}")))?;
    let connector = TlsConnector::from(Arc::new(config));
    let stream = tokio::time::timeout(timeout, connector.connect(server_name, tcp))
        .await
        .map_err(|_| Error::ConnectionLost {
            reason: "TLS handshake timed out".into(),
        })?
        .map_err(|e| Error::ConnectionLost {
            reason: format!("TLS handshake: {e}{}", plaintext_hint(&e)),
        })?;
    Ok(Box::new(stream))
}

/// A plain AMI port answers a TLS hello with its banner, which rustls reads as a record of an
/// unknown type: say what that most likely means.
fn plaintext_hint(e: &std::io::Error) -> &'static str {
    let plaintext = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<tokio_rustls::rustls::Error>())
        .is_some_and(|inner| {
            matches!(
                inner,
                tokio_rustls::rustls::Error::InvalidMessage(
                    tokio_rustls::rustls::InvalidMessage::InvalidContentType
                )
            )
        });
    if plaintext {
        " (the server answered in plain text: a plain AMI port needs tcp://)"
    } else {
        ""
    }
}

pub(super) fn client_config(tls: &Tls) -> Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(format!("TLS setup: {e}")))?;
    if tls.insecure {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
            .with_no_client_auth());
    }
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &tls.ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| Error::Usage(format!("cannot read CA file {}: {e}", path.display())))?;
        for cert in certs {
            let cert =
                cert.map_err(|e| Error::Usage(format!("bad PEM in {}: {e}", path.display())))?;
            roots.add(cert).map_err(|e| {
                Error::Usage(format!("bad CA certificate in {}: {e}", path.display()))
            })?;
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// `insecure=True`: the caller explicitly chose to skip verification (lab PBXes).
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
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
        rustls::crypto::verify_tls12_signature(
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
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
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
