//! TLS for the API listener: rustls with the ring provider, PEM files as Vault's
//! `tls_cert_file` / `tls_key_file` (PKCS#1, PKCS#8 and SEC1 keys), client certificates
//! only when `tls_client_ca_file` is configured.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// Why TLS could not be set up. Messages name the file; never key bytes.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("{path}: {reason}")]
    Pem { path: String, reason: String },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Read every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_err = |reason: String| TlsError::Pem {
        path: path.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_err("no certificate found".into()));
    }
    Ok(certs)
}

/// Read a private key (PKCS#1, PKCS#8 or SEC1) from a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Pem {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Build a server config from PEM bytes (certificate chain and key).
pub fn server_config_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: Option<&[u8]>,
) -> Result<ServerConfig, TlsError> {
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Config(format!("certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| TlsError::Config(format!("private key: {e}")))?;
    let client_roots = match client_ca_pem {
        Some(pem) => Some(
            CertificateDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| TlsError::Config(format!("client CA: {e}")))?,
        ),
        None => None,
    };
    build(certs, key, client_roots)
}

/// Build a server config from PEM files.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<ServerConfig, TlsError> {
    let certs = load_certs(cert)?;
    let key = load_key(key)?;
    let roots = client_ca.map(load_certs).transpose()?;
    build(certs, key, roots)
}

fn build(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_roots: Option<Vec<CertificateDer<'static>>>,
) -> Result<ServerConfig, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match client_roots {
        Some(roots) => {
            let mut store = RootCertStore::empty();
            for cert in roots {
                store
                    .add(cert)
                    .map_err(|e| TlsError::Config(e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider())
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    //! The fixtures in `testdata/` are throwaway self-signed test certificates.
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
            .join(name)
    }

    #[test]
    fn loads_pkcs1_pkcs8_and_sec1_keys() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        for (cert, key) in [
            ("rsa.crt", "rsa-pkcs1.key"),
            ("rsa.crt", "rsa-pkcs8.key"),
            ("ec.crt", "ec-sec1.key"),
        ] {
            let config = server_config(&fixture(cert), &fixture(key), None);
            assert!(config.is_ok(), "{key}: {:?}", config.err());
        }
    }

    #[test]
    fn mismatched_or_missing_files_are_clear_errors() {
        let err = server_config(&fixture("ec.crt"), &fixture("rsa-pkcs8.key"), None).unwrap_err();
        assert!(err.to_string().contains("TLS configuration"), "{err}");
        let err =
            server_config(&fixture("missing.crt"), &fixture("ec-sec1.key"), None).unwrap_err();
        assert!(err.to_string().contains("missing.crt"), "{err}");
    }

    #[test]
    fn client_ca_enables_client_auth() {
        let config = server_config(
            &fixture("ec.crt"),
            &fixture("ec-sec1.key"),
            Some(&fixture("rsa.crt")),
        );
        assert!(config.is_ok(), "{:?}", config.err());
    }
}
