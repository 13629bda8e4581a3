//! TLS: the listener's certificate (from `--cert-path` or self-signed) and
//! the ring crypto provider the upstream client uses.

use crate::config::ListenerTls;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A certificate that could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("cannot load {path}: {reason}")]
    Load {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The self-signed certificate could not be made.
    #[error("cannot make a self-signed certificate: {0}")]
    SelfSigned(#[from] rcgen::Error),
    /// rustls refused the certificate and key.
    #[error("invalid certificate or key: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The listener's TLS configuration, or `None` for plain HTTP.
pub fn server_config(tls: &ListenerTls) -> Result<Option<Arc<ServerConfig>>, TlsError> {
    let (certs, key) = match tls {
        ListenerTls::Off => return Ok(None),
        ListenerTls::CertDir(dir) => load_dir(dir)?,
        ListenerTls::SelfSigned => self_signed()?,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

fn load_dir(
    dir: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let cert_path = dir.join("tls.crt");
    let key_path = dir.join("tls.key");
    let load_err = |path: &Path, reason: String| TlsError::Load {
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| load_err(&cert_path, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| load_err(&cert_path, e.to_string()))?;
    if certs.is_empty() {
        return Err(load_err(&cert_path, "no certificate in file".into()));
    }
    let key =
        PrivateKeyDer::from_pem_file(&key_path).map_err(|e| load_err(&key_path, e.to_string()))?;
    Ok((certs, key))
}

fn self_signed() -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    let key = PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
    Ok((
        vec![certified.cert.der().clone()],
        PrivateKeyDer::Pkcs8(key),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_and_cert_dir_both_configure_tls() {
        assert!(server_config(&ListenerTls::Off).unwrap().is_none());
        assert!(server_config(&ListenerTls::SelfSigned).unwrap().is_some());

        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let dir = std::env::temp_dir().join(format!("pd-proxy-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tls.crt"), certified.cert.pem()).unwrap();
        std::fs::write(dir.join("tls.key"), certified.signing_key.serialize_pem()).unwrap();
        assert!(
            server_config(&ListenerTls::CertDir(dir.clone()))
                .unwrap()
                .is_some()
        );

        std::fs::write(dir.join("tls.key"), "garbage").unwrap();
        let err = server_config(&ListenerTls::CertDir(dir.clone())).unwrap_err();
        assert!(err.to_string().contains("tls.key"), "{err}");
        let err = server_config(&ListenerTls::CertDir(dir.join("missing"))).unwrap_err();
        assert!(err.to_string().contains("tls.crt"), "{err}");
    }
}
