//! Export to collectors behind TLS: a private CA named by the settings,
//! the system's roots refusing it, and mutual TLS, over gRPC and HTTP.

use super::tests::export_with;
use crate::telemetry::exporter::{Compression, OtlpSettings, Protocol};
use crate::telemetry::exporter_tls::{ClientIdentity, OtlpTls};
use crate::testing::otlp_receiver::OtlpReceiver;
use crate::testing::pki::TestPki;
use opentelemetry_sdk::Resource;
use std::time::Duration;

/// Trust for the test CA, with the client certificate when `identity`.
fn trusting(pki: &TestPki, identity: bool) -> OtlpTls {
    OtlpTls {
        trusted: Some(pki.ca.clone().into_bytes()),
        client: identity.then(|| ClientIdentity {
            certificate_chain: pki.client.certificate.clone().into_bytes(),
            private_key: pki.client.private_key.clone().into_bytes(),
        }),
    }
}

/// Exports one span over `protocol` to `receiver` with `tls`; the error of
/// the export, if it failed.
fn export(receiver: &OtlpReceiver, protocol: Protocol, tls: OtlpTls) -> Result<(), String> {
    let endpoint = receiver.traces_endpoint(protocol);
    assert!(endpoint.starts_with("https://127.0.0.1:"), "{endpoint}");
    let settings = OtlpSettings {
        protocol,
        endpoint,
        headers: Vec::new(),
        timeout: Duration::from_secs(10),
        compression: Compression::None,
        tls,
    };
    export_with(
        &settings,
        &Resource::builder_empty().build(),
        vec![crate::testing::sampled_span("over-tls")],
    )
}

fn a_collector_signed_by_a_private_ca_is_reached_only_when_trusted(protocol: Protocol) {
    crate::http::install_crypto_provider();
    let pki = TestPki::generate().expect("a test PKI");
    let receiver = OtlpReceiver::start_tls(pki.server_config(false).expect("a server config"))
        .expect("a receiver");
    let refused = export(&receiver, protocol, OtlpTls::default());
    assert!(
        refused.is_err(),
        "{protocol}: the system's roots accepted a test CA"
    );
    assert_eq!(receiver.span_count(), 0);
    let trusted = export(&receiver, protocol, trusting(&pki, false));
    assert_eq!(trusted, Ok(()), "{protocol}");
    assert_eq!(receiver.spans()[0].span.name, "over-tls");
}

#[test]
fn grpc_reaches_a_collector_signed_by_a_private_ca_only_when_trusted() {
    a_collector_signed_by_a_private_ca_is_reached_only_when_trusted(Protocol::Grpc);
}

#[test]
fn http_reaches_a_collector_signed_by_a_private_ca_only_when_trusted() {
    a_collector_signed_by_a_private_ca_is_reached_only_when_trusted(Protocol::HttpProtobuf);
}

fn a_collector_asking_for_a_client_certificate_takes_the_configured_one(protocol: Protocol) {
    crate::http::install_crypto_provider();
    let pki = TestPki::generate().expect("a test PKI");
    let receiver = OtlpReceiver::start_tls(pki.server_config(true).expect("a server config"))
        .expect("a receiver");
    let anonymous = export(&receiver, protocol, trusting(&pki, false));
    assert!(
        anonymous.is_err(),
        "{protocol}: let in without a certificate"
    );
    assert_eq!(receiver.span_count(), 0);
    assert_eq!(
        export(&receiver, protocol, trusting(&pki, true)),
        Ok(()),
        "{protocol}"
    );
    assert_eq!(receiver.span_count(), 1);
}

#[test]
fn grpc_presents_the_client_certificate_for_mutual_tls() {
    a_collector_asking_for_a_client_certificate_takes_the_configured_one(Protocol::Grpc);
}

#[test]
fn http_presents_the_client_certificate_for_mutual_tls() {
    a_collector_asking_for_a_client_certificate_takes_the_configured_one(Protocol::HttpJson);
}
