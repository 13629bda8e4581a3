//! OTLP/gRPC: one unary `TraceService/Export` call per batch over a tonic
//! channel, the request body already encoded (and gzip-compressed by tonic
//! when configured).

use super::response::ExportTraceServiceResponse;
use super::{SendError, USER_AGENT};
use crate::telemetry::exporter::{Compression, OtlpSettings};
use crate::telemetry::exporter_tls::OtlpTls;
use bytes::{Buf, BufMut, Bytes};
use http::uri::PathAndQuery;
use std::time::Duration;
use tonic::Code;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::MetadataMap;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// The gRPC method every batch is sent to.
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// A lazily connecting channel to the collector and the metadata sent with
/// every call.
pub(crate) struct GrpcTransport {
    client: tonic::client::Grpc<Channel>,
    metadata: MetadataMap,
}

impl GrpcTransport {
    /// Builds the channel (it connects on first use, so a collector that
    /// is not up yet is not an error here). With gzip compression, every
    /// message is sent compressed and gzip answers are accepted. Must run
    /// inside a tokio runtime.
    pub(crate) fn new(settings: &OtlpSettings) -> Result<GrpcTransport, String> {
        let invalid = |error: tonic::transport::Error| {
            format!("invalid gRPC endpoint {}: {error}", settings.endpoint)
        };
        let mut endpoint = Endpoint::from_shared(settings.endpoint.clone())
            .map_err(invalid)?
            .user_agent(USER_AGENT)
            .map_err(invalid)?
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout);
        if settings.endpoint.starts_with("https://") {
            endpoint = endpoint
                .tls_config(tls_config(&settings.tls))
                .map_err(invalid)?;
        }
        let mut client = tonic::client::Grpc::new(endpoint.connect_lazy());
        if settings.compression == Compression::Gzip {
            client = client
                .send_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Gzip);
        }
        Ok(GrpcTransport {
            client,
            metadata: MetadataMap::from_headers(settings.header_map()),
        })
    }

    /// Sends one encoded request.
    pub(crate) async fn send(&self, body: Bytes) -> Result<ExportTraceServiceResponse, SendError> {
        let mut client = self.client.clone();
        client.ready().await.map_err(|error| {
            SendError::retryable(format!("cannot reach the collector: {error}"))
        })?;
        let mut request = tonic::Request::new(body);
        *request.metadata_mut() = self.metadata.clone();
        client
            .unary(request, PathAndQuery::from_static(EXPORT_PATH), ExportCodec)
            .await
            .map(tonic::Response::into_inner)
            .map_err(status_error)
    }
}

/// The TLS configuration of an `https` endpoint: the given certificates
/// alone, or the system's roots, verify the collector; a client identity
/// is presented when one is given.
fn tls_config(tls: &OtlpTls) -> ClientTlsConfig {
    let config = match &tls.trusted {
        Some(pem) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)),
        None => ClientTlsConfig::new().with_native_roots(),
    };
    match &tls.client {
        Some(client) => config.identity(Identity::from_pem(
            &client.certificate_chain,
            &client.private_key,
        )),
        None => config,
    }
}

/// A failed call; the codes the OTLP specification lists as transient are
/// retried. The status message is not shown: a collector may echo request
/// details (such as credentials) in it.
fn status_error(status: tonic::Status) -> SendError {
    let mut description = format!("gRPC status {:?}", status.code());
    let mut cause = std::error::Error::source(&status);
    if cause.is_none() {
        description.push_str(" from the collector");
    }
    // Raised by the transport itself: connection refused, DNS, TLS.
    let mut last = String::new();
    while let Some(error) = cause {
        let text = error.to_string();
        // Layers of the transport often repeat their inner error's text.
        if text != last {
            description.push_str(": ");
            description.push_str(&text);
        }
        last = text;
        cause = error.source();
    }
    let retry_delay = retry_delay(status.details());
    match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => SendError::retryable(description).after(retry_delay),
        // Only when the collector says recovery is possible (RetryInfo).
        Code::ResourceExhausted if retry_delay.is_some() => {
            SendError::retryable(description).after(retry_delay)
        }
        _ => SendError::permanent(description),
    }
}

/// The type URL of `google.rpc.RetryInfo` in a status's details.
const RETRY_INFO: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// `google.rpc.Status`, as carried in `grpc-status-details-bin`: only its
/// details.
#[derive(Clone, PartialEq, prost::Message)]
struct StatusDetails {
    #[prost(message, repeated, tag = "3")]
    details: Vec<AnyDetail>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
struct AnyDetail {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "bytes", tag = "2")]
    value: Bytes,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

/// The pause a collector asks for with a `google.rpc.RetryInfo` in the
/// status details, if it sent one (a negative delay counts as none asked).
fn retry_delay(details: &[u8]) -> Option<Duration> {
    let status = <StatusDetails as prost::Message>::decode(details).ok()?;
    let info = status
        .details
        .into_iter()
        .find(|detail| detail.type_url == RETRY_INFO)?;
    let delay = <RetryInfo as prost::Message>::decode(info.value)
        .ok()?
        .retry_delay
        .unwrap_or_default();
    let seconds = u64::try_from(delay.seconds).ok()?;
    let nanos = u32::try_from(delay.nanos).ok()?;
    Some(Duration::new(seconds, 0) + Duration::from_nanos(u64::from(nanos)))
}

/// Sends pre-encoded request bytes and decodes the collector's answer.
struct ExportCodec;

impl Codec for ExportCodec {
    type Encode = Bytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = ExportCodec;
    type Decoder = ExportCodec;

    fn encoder(&mut self) -> ExportCodec {
        ExportCodec
    }

    fn decoder(&mut self) -> ExportCodec {
        ExportCodec
    }
}

impl Encoder for ExportCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for ExportCodec {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut DecodeBuf<'_>,
    ) -> Result<Option<ExportTraceServiceResponse>, tonic::Status> {
        let body = src.copy_to_bytes(src.remaining());
        ExportTraceServiceResponse::decode(body)
            .map(Some)
            .map_err(|error| tonic::Status::internal(format!("bad export response: {error}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn details_with_retry_info(seconds: i64, nanos: i32) -> Bytes {
        let info = RetryInfo {
            retry_delay: Some(ProtoDuration { seconds, nanos }),
        };
        let status = StatusDetails {
            details: vec![
                AnyDetail {
                    type_url: "type.googleapis.com/google.rpc.DebugInfo".to_owned(),
                    value: Bytes::from_static(b"\x0a\x01x"),
                },
                AnyDetail {
                    type_url: RETRY_INFO.to_owned(),
                    value: prost::Message::encode_to_vec(&info).into(),
                },
            ],
        };
        prost::Message::encode_to_vec(&status).into()
    }

    #[test]
    fn resource_exhausted_is_retried_only_with_retry_info_and_after_its_delay() {
        let plain = status_error(tonic::Status::new(Code::ResourceExhausted, "quota"));
        assert!(!plain.retryable);
        let details = details_with_retry_info(2, 500_000_000);
        let asked = status_error(tonic::Status::with_details(
            Code::ResourceExhausted,
            "quota",
            details,
        ));
        assert!(asked.retryable);
        assert_eq!(asked.after, Some(Duration::from_millis(2_500)));
        let unavailable = status_error(tonic::Status::with_details(
            Code::Unavailable,
            "",
            details_with_retry_info(1, 0),
        ));
        assert_eq!(unavailable.after, Some(Duration::from_secs(1)));
    }

    #[test]
    fn unreadable_or_negative_retry_info_asks_for_nothing() {
        assert_eq!(retry_delay(b""), None);
        assert_eq!(retry_delay(b"\xff\xff"), None);
        assert_eq!(retry_delay(&details_with_retry_info(-1, 0)), None);
        assert_eq!(
            retry_delay(&details_with_retry_info(0, 0)),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn transient_codes_are_retried_and_messages_are_not_shown() {
        for code in [Code::Unavailable, Code::DeadlineExceeded] {
            let error = status_error(tonic::Status::new(code, "token=secret"));
            assert!(error.retryable, "{code:?}");
            assert!(
                !error.description.contains("secret"),
                "{}",
                error.description
            );
        }
        for code in [
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::Unimplemented,
        ] {
            assert!(
                !status_error(tonic::Status::new(code, "")).retryable,
                "{code:?}"
            );
        }
    }
}
