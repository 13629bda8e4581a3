//! The process-wide rustls crypto provider that HTTP clients need.

/// Makes ring the process's rustls crypto provider unless one is set
/// already. reqwest (built without a default provider), tonic's TLS and
/// rustls servers need one before their first TLS configuration; call
/// this before building any.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Another thread may install one first; either way one is set.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
