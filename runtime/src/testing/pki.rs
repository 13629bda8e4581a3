//! A throwaway certificate authority for TLS tests: a CA, a server
//! certificate it signed for `127.0.0.1` and `localhost`, and a client
//! certificate it signed, all PEM.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use std::sync::Arc;

/// A PEM certificate and its private key.
#[derive(Clone, Debug)]
pub struct CertifiedPem {
    /// The certificate.
    pub certificate: String,
    /// Its private key.
    pub private_key: String,
}

/// A CA and the server and client certificates it signed.
#[derive(Clone, Debug)]
pub struct TestPki {
    /// The CA's certificate, which verifies the other two.
    pub ca: String,
    /// The server's certificate (for `127.0.0.1` and `localhost`).
    pub server: CertifiedPem,
    /// A client certificate, for mutual TLS.
    pub client: CertifiedPem,
}

impl TestPki {
    /// Makes a new CA and its two certificates.
    pub fn generate() -> Result<TestPki, rcgen::Error> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
        let signed = |names: Vec<String>| -> Result<CertifiedPem, rcgen::Error> {
            let key = KeyPair::generate()?;
            let certificate = CertificateParams::new(names)?.signed_by(&key, &ca)?;
            Ok(CertifiedPem {
                certificate: certificate.pem(),
                private_key: key.serialize_pem(),
            })
        };
        Ok(TestPki {
            ca: ca.pem(),
            server: signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?,
            client: signed(vec!["otlp-test-client".to_owned()])?,
        })
    }

    /// A rustls server configuration presenting the server certificate
    /// (ALPN `h2` and `http/1.1`); with `client_auth`, only clients with a
    /// certificate this CA signed are let in.
    pub fn server_config(&self, client_auth: bool) -> Result<Arc<ServerConfig>, rustls::Error> {
        let invalid = |error: rustls::pki_types::pem::Error| {
            rustls::Error::General(format!("test PKI: {error}"))
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = vec![
            CertificateDer::from_pem_slice(self.server.certificate.as_bytes()).map_err(invalid)?,
        ];
        let key =
            PrivateKeyDer::from_pem_slice(self.server.private_key.as_bytes()).map_err(invalid)?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let mut config = if client_auth {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(CertificateDer::from_pem_slice(self.ca.as_bytes()).map_err(invalid)?)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|error| rustls::Error::General(error.to_string()))?;
            builder
                .with_client_cert_verifier(verifier)
                .with_single_cert(chain, key)?
        } else {
            builder.with_no_client_auth().with_single_cert(chain, key)?
        };
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}
