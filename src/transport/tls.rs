//! TLS (AMI on 5039) with rustls: system-independent web PKI roots, an optional CA file for
//! self-signed PBX certificates, a server-name override, and an explicit `insecure` switch.
//!
//! A certificate listed in the CA file is also trusted as the server's own certificate when
//! it is marked CA:TRUE, as the one `openssl req -x509` makes for a PBX is (WebPKI refuses
//! such a certificate as an end entity; Python's ssl, and so every Python AMI library,
//! accepts it). Only that exact certificate is: its dates, its name and the handshake
//! signature are still checked, and everything else gets the full verification.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::{WebPkiServerVerifier, verify_server_name};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::server::ParsedCertificate;
use tokio_rustls::rustls::{
    self, CertificateError, ClientConfig, DigitallySignedStruct, InvalidMessage, RootCertStore,
    SignatureScheme,
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
            reason: handshake_failure(&e, name),
        })?;
    Ok(Box::new(stream))
}

/// One line that says what went wrong and what to do about it, instead of rustls' debug
/// text (`invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))`).
fn handshake_failure(e: &std::io::Error, name: &str) -> String {
    let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return format!("TLS handshake with {name}: {e}");
    };
    let advice = match tls {
        // A plain AMI port answers a TLS hello with its banner, which rustls reads as a
        // record of an unknown type.
        rustls::Error::InvalidMessage(InvalidMessage::InvalidContentType) => {
            "the server answered in plain text: a plain AMI port needs tcp://".to_owned()
        }
        rustls::Error::InvalidCertificate(cert) => certificate_advice(cert, name),
        other => format!("handshake with {name} failed: {other}"),
    };
    format!("TLS: {advice}")
}

fn certificate_advice(error: &CertificateError, name: &str) -> String {
    match error {
        CertificateError::UnknownIssuer => format!(
            "the certificate of {name} is not signed by a CA this client trusts; pass the \
             PBX's certificate (or the CA that signed it) as ca_file, or insecure=True on a \
             lab network you trust"
        ),
        CertificateError::NotValidForName => format!(
            "the server's certificate is not valid for {name}; connect by a name it carries, \
             or give that name as server_name"
        ),
        CertificateError::NotValidForNameContext { presented, .. } => format!(
            "the server's certificate is not valid for {name} (it names {}); connect by one \
             of those names, or give one as server_name",
            presented
                .iter()
                .map(|n| bare_name(n))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => format!(
            "the certificate of {name} has expired; renew it on the PBX (or check this \
             machine's clock)"
        ),
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => format!(
            "the certificate of {name} is not valid yet; check the clocks of this machine \
             and the PBX"
        ),
        _ if is_ca_as_end_entity(error) => format!(
            "{name} presented a CA certificate (CA:TRUE, as `openssl req -x509` makes) as its \
             own, and it is not in ca_file; pass that certificate as ca_file to trust it"
        ),
        other => format!("the certificate of {name} was refused: {other}"),
    }
}

/// rustls lists a certificate's names as `DnsName("pbx.lab")` or `IpAddress(127.0.0.1)`.
fn bare_name(presented: &str) -> &str {
    presented
        .split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .map_or(presented, |inner| inner.trim_matches('"'))
}

fn is_ca_as_end_entity(error: &CertificateError) -> bool {
    let CertificateError::Other(other) = error else {
        return false;
    };
    matches!(
        other.0.downcast_ref::<webpki::Error>(),
        Some(webpki::Error::CaUsedAsEndEntity)
    )
}

pub(super) fn client_config(tls: &Tls) -> Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(format!("TLS setup: {e}")))?;
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let mut pinned = Vec::new();
    if let (Some(path), false) = (&tls.ca_file, tls.insecure) {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| Error::Usage(format!("cannot read CA file {}: {e}", path.display())))?;
        for cert in certs {
            let cert =
                cert.map_err(|e| Error::Usage(format!("bad PEM in {}: {e}", path.display())))?;
            roots.add(cert.clone()).map_err(|e| {
                Error::Usage(format!("bad CA certificate in {}: {e}", path.display()))
            })?;
            pinned.push(cert);
        }
    }
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| Error::Internal(format!("TLS setup: {e}")))?;
    let verifier = CertVerifier {
        webpki,
        pinned,
        insecure: tls.insecure,
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// rustls' WebPKI verification plus the certificates of the CA file accepted as they are
/// (see the module notes); with `insecure=True`, which the caller chose explicitly (lab
/// PBXes), no certificate check at all. The handshake signature is verified either way.
#[derive(Debug)]
struct CertVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
    insecure: bool,
}

impl ServerCertVerifier for CertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        if self.insecure {
            return Ok(ServerCertVerified::assertion());
        }
        let refused = match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(verified) => return Ok(verified),
            Err(refused) => refused,
        };
        // WebPKI checks the dates before the CA flag: this objection means they were fine.
        let only_the_ca_flag =
            matches!(&refused, rustls::Error::InvalidCertificate(e) if is_ca_as_end_entity(e));
        if only_the_ca_flag && self.pinned.iter().any(|p| p == end_entity) {
            verify_server_name(&ParsedCertificate::try_from(end_entity)?, server_name)?;
            return Ok(ServerCertVerified::assertion());
        }
        Err(refused)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}
