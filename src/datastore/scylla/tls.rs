//! Client TLS to the cluster (`GITSTORE_DATASTORE_SCYLLA_TLS*`), through rustls.
//!
//! # Trust
//! The cluster's certificates are checked against the PEM file of trusted certificates
//! the operator names (`…_TLS_CA_FILE`), or else against the operating system's trusted
//! roots. There is no switch to skip verification: a self-signed cluster certificate is
//! trusted by naming it (or the CA that signed it) as the CA file.
//!
//! # Which name is checked
//! The driver connects to the addresses the cluster announces and asks rustls to check
//! each node's certificate for that node's IP address, so without more settings the
//! certificates must carry the nodes' IP addresses as subject alternative names. Most
//! clusters' certificates name a host instead; `…_TLS_SERVER_NAME` gives that name, and
//! every node's certificate is then checked for it (chain, validity and name, exactly
//! as for the IP address, only against the configured name).
//!
//! Client certificates (mutual TLS) are not supported yet: a cluster that requires them
//! refuses the handshake, and the connection error says so.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// TLS settings of the connections to the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM file of the certificates to trust; the system's roots when `None`.
    pub ca_file: Option<PathBuf>,
    /// The name every node's certificate must carry; each node's IP address when `None`.
    pub server_name: Option<String>,
}

impl TlsSettings {
    /// The rustls client configuration these settings describe.
    ///
    /// # Errors
    /// A message naming the file or setting at fault: an unreadable or empty CA file, no
    /// usable system roots, or a server name that is no DNS name or IP address.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, String> {
        let name = self
            .server_name
            .as_ref()
            .map(|name| {
                ServerName::try_from(name.clone()).map_err(|_| {
                    format!(
                        "GITSTORE_DATASTORE_SCYLLA_TLS_SERVER_NAME {name:?} is neither a DNS \
                         name nor an IP address"
                    )
                })
            })
            .transpose()?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let roots = Arc::new(match &self.ca_file {
            Some(path) => roots_from_file(path)?,
            None => system_roots()?,
        });
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| format!("cannot use the trusted certificates for scylla TLS: {e}"))?;
        let verifier: Arc<dyn ServerCertVerifier> = match name {
            Some(name) => Arc::new(NamedServer {
                name,
                inner: webpki,
            }),
            None => webpki,
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("scylla TLS: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }
}

/// The certificates of a PEM file, as trust anchors.
fn roots_from_file(path: &Path) -> Result<RootCertStore, String> {
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| format!("cannot read the scylla TLS CA file {shown}: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "the scylla TLS CA file {shown} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        ));
    }
    let mut roots = RootCertStore::empty();
    for (index, cert) in certs.into_iter().enumerate() {
        roots.add(cert).map_err(|e| {
            format!(
                "certificate {} of the scylla TLS CA file {shown} is unusable: {e}",
                index + 1
            )
        })?;
    }
    Ok(roots)
}

/// The operating system's trusted roots.
fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (_added, _ignored) = roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let why = found
            .errors
            .first()
            .map_or_else(|| "none found".to_owned(), ToString::to_string);
        return Err(format!(
            "scylla TLS found no trusted root certificates on this system ({why}); name the \
             cluster's CA with GITSTORE_DATASTORE_SCYLLA_TLS_CA_FILE"
        ));
    }
    Ok(roots)
}

/// Checks every node's certificate for one configured name instead of the node's address.
struct NamedServer {
    name: ServerName<'static>,
    inner: Arc<WebPkiServerVerifier>,
}

impl fmt::Debug for NamedServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NamedServer")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for NamedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _node_address: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_ca_file_is_named() {
        let settings = TlsSettings {
            ca_file: Some(PathBuf::from("/nonexistent/ca.pem")),
            server_name: None,
        };
        let err = settings.client_config().unwrap_err();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let dir = std::env::temp_dir().join(format!("gitstore-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let settings = TlsSettings {
            ca_file: Some(path),
            server_name: None,
        };
        let err = settings.client_config().unwrap_err();
        std::fs::remove_dir_all(&dir).ok();
        assert!(err.contains("holds no PEM certificate"), "{err}");
        assert!(err.contains("empty.pem"), "{err}");
    }

    #[test]
    fn a_bad_server_name_is_refused() {
        let settings = TlsSettings {
            ca_file: None,
            server_name: Some("not a name!".to_owned()),
        };
        let err = settings.client_config().unwrap_err();
        assert!(err.contains("neither a DNS name"), "{err}");
    }
}
