//! OTLP/HTTP: one `POST` of the encoded request per batch, gzip-compressed
//! when configured.

use super::response::ExportTraceServiceResponse;
use super::{Encoding, SendError, USER_AGENT};
use crate::telemetry::exporter::{Compression, OtlpSettings};
use crate::telemetry::exporter_tls::OtlpTls;
use bytes::Bytes;
use flate2::write::GzEncoder;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, StatusCode};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// `builder` with the given certificates alone (or the system's roots)
/// verifying an `https` collector, and the client identity, if any.
fn with_tls(
    builder: reqwest::ClientBuilder,
    tls: &OtlpTls,
) -> reqwest::Result<reqwest::ClientBuilder> {
    let builder = match &tls.trusted {
        Some(pem) => builder.tls_certs_only(reqwest::Certificate::from_pem_bundle(pem)?),
        None => builder,
    };
    Ok(match &tls.client {
        Some(client) => {
            let mut identity = client.certificate_chain.clone();
            identity.push(b'\n');
            identity.extend_from_slice(&client.private_key);
            builder.identity(reqwest::Identity::from_pem(&identity)?)
        }
        None => builder,
    })
}

/// The client, URL and headers of every export request.
pub(crate) struct HttpTransport {
    client: reqwest::Client,
    url: reqwest::Url,
    headers: HeaderMap,
    encoding: Encoding,
    compression: Compression,
    /// The size of the last compressed body, to allocate the next one in
    /// one go.
    last_compressed_len: AtomicUsize,
}

impl HttpTransport {
    /// Builds the client (rustls with the ring provider).
    pub(crate) fn new(
        settings: &OtlpSettings,
        encoding: Encoding,
    ) -> Result<HttpTransport, String> {
        crate::http::install_crypto_provider();
        let url = reqwest::Url::parse(&settings.endpoint)
            .map_err(|error| format!("invalid OTLP endpoint {}: {error}", settings.endpoint))?;
        let client = with_tls(
            reqwest::Client::builder()
                .timeout(settings.timeout)
                .user_agent(USER_AGENT),
            &settings.tls,
        )
        .and_then(reqwest::ClientBuilder::build)
        .map_err(|error| format!("cannot build the HTTP client: {error}"))?;
        let mut headers = settings.header_map();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(encoding.content_type()),
        );
        if settings.compression == Compression::Gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        Ok(HttpTransport {
            client,
            url,
            headers,
            encoding,
            compression: settings.compression,
            last_compressed_len: AtomicUsize::new(0),
        })
    }

    /// How this transport's request bodies are encoded.
    pub(crate) fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// The body to send for the `encoded` request: the encoded bytes
    /// themselves, or with gzip compression their gzip stream (made once
    /// per batch, every try sends the same bytes).
    pub(crate) fn body(&self, encoded: Vec<u8>) -> std::io::Result<Bytes> {
        match self.compression {
            Compression::None => Ok(Bytes::from(encoded)),
            Compression::Gzip => {
                let capacity = self.last_compressed_len.load(Ordering::Relaxed);
                let mut gzip =
                    GzEncoder::new(Vec::with_capacity(capacity), flate2::Compression::default());
                gzip.write_all(&encoded)?;
                let compressed = gzip.finish()?;
                self.last_compressed_len
                    .store(compressed.len(), Ordering::Relaxed);
                Ok(Bytes::from(compressed))
            }
        }
    }

    /// Sends one encoded request.
    pub(crate) async fn send(&self, body: Bytes) -> Result<ExportTraceServiceResponse, SendError> {
        let response = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .body(body)
            .send()
            .await
            .map_err(|error| {
                SendError::retryable(format!(
                    "cannot reach the collector: {}",
                    error.without_url()
                ))
            })?;
        let status = response.status();
        if !status.is_success() {
            return Err(status_error(status, response.headers()));
        }
        let body = response.bytes().await.map_err(|error| {
            SendError::retryable(format!("answer cut short: {}", error.without_url()))
        })?;
        // An unreadable answer to a successful request (an empty body,
        // say) is still a success.
        Ok(match self.encoding {
            Encoding::Protobuf => ExportTraceServiceResponse::decode(body).unwrap_or_default(),
            Encoding::Json => ExportTraceServiceResponse::decode_json(&body).unwrap_or_default(),
        })
    }
}

/// A non-2xx answer: 429, 502, 503 and 504 are transient (OTLP/HTTP), and
/// a `Retry-After` given in seconds sets the pause before the next try.
fn status_error(status: StatusCode, headers: &HeaderMap) -> SendError {
    let description = format!("HTTP status {status} from the collector");
    match status.as_u16() {
        429 | 502 | 503 | 504 => {
            let after = headers
                .get(RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            SendError::retryable(description).after(after)
        }
        _ => SendError::permanent(description),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_and_gateway_errors_are_retried_after_the_asked_pause() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        let throttled = status_error(StatusCode::TOO_MANY_REQUESTS, &headers);
        assert!(throttled.retryable);
        assert_eq!(throttled.after, Some(Duration::from_secs(3)));
        for status in [502, 503, 504] {
            let status = StatusCode::from_u16(status).unwrap_or_default();
            let error = status_error(status, &HeaderMap::new());
            assert!(error.retryable && error.after.is_none(), "{status}");
        }
        for status in [400, 401, 404, 413, 500] {
            let status = StatusCode::from_u16(status).unwrap_or_default();
            assert!(!status_error(status, &headers).retryable, "{status}");
        }
    }
}
