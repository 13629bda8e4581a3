//! TLS towards the collector, from the PEM files named by
//! `OTEL_EXPORTER_OTLP_(TRACES_)CERTIFICATE`,
//! `OTEL_EXPORTER_OTLP_(TRACES_)CLIENT_CERTIFICATE` and
//! `OTEL_EXPORTER_OTLP_(TRACES_)CLIENT_KEY`. The files are read and checked
//! once, with the rest of the settings; a file that cannot be read or holds
//! no PEM of the expected kind is a warning, and the exporter goes on
//! without it.

use super::env::EnvReader;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;

/// TLS material for an `https` collector.
#[derive(Clone, Default, PartialEq)]
pub struct OtlpTls {
    /// PEM certificates that alone are trusted to verify the collector
    /// (`OTEL_EXPORTER_OTLP_CERTIFICATE`); the system's roots when `None`.
    pub trusted: Option<Vec<u8>>,
    /// The client's certificate and key, for mutual TLS.
    pub client: Option<ClientIdentity>,
}

/// A client certificate chain and its private key, both PEM.
#[derive(Clone, PartialEq)]
pub struct ClientIdentity {
    /// The certificate chain (`OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`).
    pub certificate_chain: Vec<u8>,
    /// The private key (`OTEL_EXPORTER_OTLP_CLIENT_KEY`).
    pub private_key: Vec<u8>,
}

impl fmt::Debug for OtlpTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpTls")
            .field("trusted_pem_bytes", &self.trusted.as_ref().map(Vec::len))
            .field("client", &self.client)
            .finish()
    }
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("certificate_chain_pem_bytes", &self.certificate_chain.len())
            .field("private_key", &"<redacted>")
            .finish()
    }
}

/// What a PEM file must hold.
#[derive(Clone, Copy)]
enum PemKind {
    Certificates,
    PrivateKey,
}

impl PemKind {
    fn found_in(self, pem: &[u8]) -> bool {
        match self {
            PemKind::Certificates => {
                let mut certificates = CertificateDer::pem_slice_iter(pem);
                certificates.next().is_some_and(|first| first.is_ok())
                    && certificates.all(|next| next.is_ok())
            }
            PemKind::PrivateKey => PrivateKeyDer::from_pem_slice(pem).is_ok(),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            PemKind::Certificates => "no PEM certificate",
            PemKind::PrivateKey => "no PEM private key",
        }
    }
}

impl OtlpTls {
    pub(crate) fn read<F: Fn(&str) -> Option<String>>(env: &mut EnvReader<F>) -> OtlpTls {
        let trusted = read_pem(
            env,
            &[
                "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
                "OTEL_EXPORTER_OTLP_CERTIFICATE",
            ],
            PemKind::Certificates,
            "the collector is verified against the system's roots",
        );
        const NO_CLIENT_CERTIFICATE: &str = "no client certificate is sent";
        let certificate_chain = read_pem(
            env,
            &[
                "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            ],
            PemKind::Certificates,
            NO_CLIENT_CERTIFICATE,
        );
        let private_key = read_pem(
            env,
            &[
                "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
                "OTEL_EXPORTER_OTLP_CLIENT_KEY",
            ],
            PemKind::PrivateKey,
            NO_CLIENT_CERTIFICATE,
        );
        let client = match (certificate_chain, private_key) {
            (Some((_, certificate_chain)), Some((_, private_key))) => Some(ClientIdentity {
                certificate_chain,
                private_key,
            }),
            (Some((name, _)), None) | (None, Some((name, _))) => {
                let path = env.get(name).unwrap_or_default();
                env.warn(
                    name,
                    &path,
                    format!(
                        "a client certificate needs both the certificate and the key; {NO_CLIENT_CERTIFICATE}"
                    ),
                );
                None
            }
            (None, None) => None,
        };
        OtlpTls {
            trusted: trusted.map(|(_, pem)| pem),
            client,
        }
    }
}

/// The contents of the PEM file named by the first set variable of
/// `names`, with that variable's name, when it holds `kind`; otherwise a
/// warning ending in `fallback`.
fn read_pem<F: Fn(&str) -> Option<String>>(
    env: &mut EnvReader<F>,
    names: &[&'static str],
    kind: PemKind,
    fallback: &str,
) -> Option<(&'static str, Vec<u8>)> {
    let (name, path) = env.first(names)?;
    match std::fs::read(&path) {
        Ok(pem) if kind.found_in(&pem) => Some((name, pem)),
        Ok(_) => {
            env.warn(
                name,
                &path,
                format!("{} in the file; {fallback}", kind.describe()),
            );
            None
        }
        Err(error) => {
            env.warn(
                name,
                &path,
                format!("cannot read the file ({error}); {fallback}"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::Warning;
    use crate::testing::pki::TestPki;
    use std::path::PathBuf;

    fn read(pairs: &[(&str, String)]) -> (OtlpTls, Vec<Warning>) {
        let mut env = EnvReader::new(|name: &str| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.clone())
        });
        let tls = OtlpTls::read(&mut env);
        (tls, env.into_warnings())
    }

    /// A directory of PEM files for one test: the test CA's certificate,
    /// the client's certificate and key, and a file of no PEM at all.
    struct Files {
        dir: PathBuf,
        pki: TestPki,
    }

    impl Files {
        fn new(test: &str) -> Files {
            let dir = std::env::temp_dir()
                .join(format!("llmd-exporter-tls-{test}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let pki = TestPki::generate().unwrap();
            std::fs::write(dir.join("ca.pem"), &pki.ca).unwrap();
            std::fs::write(dir.join("client.pem"), &pki.client.certificate).unwrap();
            std::fs::write(dir.join("client.key"), &pki.client.private_key).unwrap();
            std::fs::write(dir.join("not-pem.txt"), "not a certificate").unwrap();
            Files { dir, pki }
        }

        fn path(&self, name: &str) -> String {
            self.dir.join(name).display().to_string()
        }
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn nothing_set_is_the_system_roots_and_no_client_certificate() {
        let (tls, warnings) = read(&[]);
        assert_eq!(tls, OtlpTls::default());
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn the_named_files_are_read_the_signal_specific_ones_first() {
        let files = Files::new("read");
        let (tls, warnings) = read(&[
            (
                "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
                files.path("ca.pem"),
            ),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", files.path("missing.pem")),
            (
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                files.path("client.pem"),
            ),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", files.path("client.key")),
        ]);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(tls.trusted, Some(files.pki.ca.clone().into_bytes()));
        let client = tls.client.expect("a client identity");
        assert_eq!(
            client.certificate_chain,
            files.pki.client.certificate.as_bytes()
        );
        assert_eq!(client.private_key, files.pki.client.private_key.as_bytes());
        let shown = format!("{client:?}");
        assert!(
            !shown.contains("PRIVATE KEY") && shown.contains("<redacted>"),
            "{shown}"
        );
    }

    #[test]
    fn an_unreadable_or_non_pem_file_is_a_warning_and_left_out() {
        let files = Files::new("bad");
        for (file, says) in [
            ("missing.pem", "cannot read the file"),
            ("not-pem.txt", "no PEM certificate in the file"),
            ("client.key", "no PEM certificate in the file"),
        ] {
            let (tls, warnings) = read(&[("OTEL_EXPORTER_OTLP_CERTIFICATE", files.path(file))]);
            assert_eq!(tls.trusted, None, "{file}");
            assert_eq!(warnings.len(), 1, "{file}: {warnings:?}");
            let warning = warnings[0].to_string();
            assert!(
                warning.contains("OTEL_EXPORTER_OTLP_CERTIFICATE")
                    && warning.contains(says)
                    && warning.contains("system's roots"),
                "{warning}"
            );
        }
        let (tls, warnings) = read(&[("OTEL_EXPORTER_OTLP_CLIENT_KEY", files.path("client.pem"))]);
        assert_eq!(tls.client, None);
        assert!(
            warnings[0].to_string().contains("no PEM private key"),
            "{warnings:?}"
        );
    }

    #[test]
    fn a_client_certificate_without_its_key_is_a_warning_and_not_sent() {
        let files = Files::new("half");
        let (tls, warnings) = read(&[(
            "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
            files.path("client.pem"),
        )]);
        assert_eq!(tls.client, None);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let warning = warnings[0].to_string();
        assert!(
            warning.contains("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE")
                && warning.contains("needs both"),
            "{warning}"
        );
    }
}
