//! TLS for the simulator: a given PEM certificate and key, or a self-signed one made by rcgen.

use std::io;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::config::Tls;

/// The acceptor and the certificate PEM clients should trust.
pub(crate) fn acceptor(tls: &Tls) -> io::Result<(TlsAcceptor, String)> {
    let (cert_pem, key_pem) = match tls {
        Tls::Pem { cert, key } => (cert.clone(), key.clone()),
        Tls::Generate => {
            let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
            let made = rcgen::generate_simple_self_signed(names).map_err(io::Error::other)?;
            (made.cert.pem(), made.signing_key.serialize_pem())
        }
    };
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("certificate: {e}")))?;
    // The key's parse error is not echoed: it could quote key material.
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "unreadable private key"))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    Ok((TlsAcceptor::from(Arc::new(config)), cert_pem))
}
