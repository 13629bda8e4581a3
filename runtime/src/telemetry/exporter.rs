//! `OTEL_TRACES_EXPORTER` and the `OTEL_EXPORTER_OTLP_*` settings.

use super::env::{EnvReader, key_value_list};
use super::exporter_tls::OtlpTls;
use std::fmt;
use std::time::Duration;

/// The OTLP export timeout when none is given.
pub const DEFAULT_OTLP_TIMEOUT: Duration = Duration::from_secs(10);

/// Where finished spans go, from `OTEL_TRACES_EXPORTER`.
#[derive(Clone, Debug, PartialEq)]
pub enum ExporterSetting {
    /// `otlp` (the default): to an OpenTelemetry collector.
    Otlp(OtlpSettings),
    /// `console`: one human-readable line per span on stderr.
    Console,
    /// `none`: spans are sampled and propagated but not exported.
    None,
}

/// The OTLP transport and encoding, from `OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `grpc` (the default; llm-d exports over gRPC to port 4317).
    Grpc,
    /// `http/protobuf`.
    HttpProtobuf,
    /// `http/json`.
    HttpJson,
}

/// Everything the OTLP exporter needs.
#[derive(Clone, Debug, PartialEq)]
pub struct OtlpSettings {
    /// Transport and encoding.
    pub protocol: Protocol,
    /// The full URL spans are sent to (for HTTP, including `/v1/traces`).
    pub endpoint: String,
    /// Extra request headers (gRPC metadata).
    pub headers: Vec<(String, String)>,
    /// How long one export request may take.
    pub timeout: Duration,
    /// How request bodies are compressed.
    pub compression: Compression,
    /// Certificates that verify an `https` collector, and the client's own
    /// for mutual TLS.
    pub tls: OtlpTls,
}

/// The compression of export requests, from
/// `OTEL_EXPORTER_OTLP_(TRACES_)COMPRESSION` (any case; unset or empty is
/// `none`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// `none` (the default): requests are sent as encoded.
    None,
    /// `gzip`: gRPC messages are sent gzip-compressed (`grpc-encoding:
    /// gzip`, and gzip answers are accepted); HTTP bodies are sent
    /// gzip-compressed with `Content-Encoding: gzip`.
    Gzip,
}

impl Protocol {
    fn parse(value: &str) -> Option<Protocol> {
        match value.to_ascii_lowercase().as_str() {
            "grpc" => Some(Protocol::Grpc),
            "http/protobuf" => Some(Protocol::HttpProtobuf),
            "http/json" => Some(Protocol::HttpJson),
            _ => None,
        }
    }

    /// The endpoint used when none is configured.
    fn default_endpoint(self) -> &'static str {
        match self {
            Protocol::Grpc => "http://localhost:4317",
            Protocol::HttpProtobuf | Protocol::HttpJson => "http://localhost:4318/v1/traces",
        }
    }
}

impl Compression {
    fn parse(value: &str) -> Option<Compression> {
        match value.to_ascii_lowercase().as_str() {
            "none" => Some(Compression::None),
            "gzip" => Some(Compression::Gzip),
            _ => None,
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
        })
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
            Protocol::HttpJson => "http/json",
        })
    }
}

impl ExporterSetting {
    pub(crate) fn read<F: Fn(&str) -> Option<String>>(env: &mut EnvReader<F>) -> ExporterSetting {
        let name = env
            .get("OTEL_TRACES_EXPORTER")
            .map(|n| n.to_ascii_lowercase());
        match name.as_deref() {
            None | Some("otlp") => ExporterSetting::Otlp(OtlpSettings::read(env)),
            Some("console") => ExporterSetting::Console,
            Some("none") => ExporterSetting::None,
            Some(unknown) => {
                env.warn(
                    "OTEL_TRACES_EXPORTER",
                    unknown,
                    "unknown exporter (known: otlp, console, none); using otlp",
                );
                ExporterSetting::Otlp(OtlpSettings::read(env))
            }
        }
    }
}

impl OtlpSettings {
    /// [`OtlpSettings::headers`] as a header map (reading the environment
    /// kept only entries that are valid headers).
    pub(crate) fn header_map(&self) -> http::HeaderMap {
        self.headers
            .iter()
            .filter_map(|(name, value)| {
                Some((
                    http::HeaderName::try_from(name.as_str()).ok()?,
                    http::HeaderValue::try_from(value.as_str()).ok()?,
                ))
            })
            .collect()
    }

    fn read<F: Fn(&str) -> Option<String>>(env: &mut EnvReader<F>) -> OtlpSettings {
        let protocol = env.parse_first(
            &[
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ],
            Protocol::Grpc,
            "grpc, http/protobuf or http/json",
            Protocol::parse,
        );
        let insecure = env.bool(
            &[
                "OTEL_EXPORTER_OTLP_TRACES_INSECURE",
                "OTEL_EXPORTER_OTLP_INSECURE",
            ],
            false,
        );
        let endpoint = read_endpoint(env, protocol, insecure);
        let timeout = env.millis(
            &[
                "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
                "OTEL_EXPORTER_OTLP_TIMEOUT",
            ],
            DEFAULT_OTLP_TIMEOUT,
        );
        let headers = read_headers(env);
        let compression = env.parse_first(
            &[
                "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
                "OTEL_EXPORTER_OTLP_COMPRESSION",
            ],
            Compression::None,
            "none or gzip",
            Compression::parse,
        );
        let tls = OtlpTls::read(env);
        OtlpSettings {
            protocol,
            endpoint,
            headers,
            timeout,
            compression,
            tls,
        }
    }
}

/// The traces endpoint: the signal variable as is, else the generic one
/// with `/v1/traces` appended for HTTP, else the protocol's default. A gRPC
/// endpoint without a scheme gets `http://` when insecure, else `https://`.
fn read_endpoint<F: Fn(&str) -> Option<String>>(
    env: &mut EnvReader<F>,
    protocol: Protocol,
    insecure: bool,
) -> String {
    let default = protocol.default_endpoint();
    let Some((name, value)) = env.first(&[
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]) else {
        return default.to_owned();
    };
    let with_scheme = if protocol == Protocol::Grpc && !value.contains("://") {
        let scheme = if insecure { "http" } else { "https" };
        format!("{scheme}://{value}")
    } else {
        value.clone()
    };
    let endpoint = if name == "OTEL_EXPORTER_OTLP_ENDPOINT" && protocol != Protocol::Grpc {
        format!("{}/v1/traces", with_scheme.trim_end_matches('/'))
    } else {
        with_scheme
    };
    if is_http_url(&endpoint) {
        endpoint
    } else {
        env.warn(
            name,
            &value,
            format!("not a valid http:// or https:// URL for {protocol}; using {default}"),
        );
        default.to_owned()
    }
}

fn is_http_url(endpoint: &str) -> bool {
    endpoint.parse::<http::Uri>().is_ok_and(|uri| {
        matches!(uri.scheme_str(), Some("http" | "https"))
            && uri.host().is_some_and(|host| !host.is_empty())
    })
}

const SKIPPED_HEADER: &str = "an entry is not a valid name=value header (header values are never shown); that entry is skipped";

/// `OTEL_EXPORTER_OTLP_(TRACES_)HEADERS`; an entry that is not a valid
/// `name=value` header is skipped with a warning showing its name only.
fn read_headers<F: Fn(&str) -> Option<String>>(env: &mut EnvReader<F>) -> Vec<(String, String)> {
    let Some((name, list)) = env.first(&[
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        "OTEL_EXPORTER_OTLP_HEADERS",
    ]) else {
        return Vec::new();
    };
    let mut headers = Vec::new();
    for entry in key_value_list(&list) {
        match entry {
            Ok((key, value))
                if http::HeaderName::try_from(key.as_str()).is_ok()
                    && http::HeaderValue::try_from(value.as_str()).is_ok() =>
            {
                headers.push((key, value));
            }
            Ok((key, _)) => env.warn(name, &key, SKIPPED_HEADER),
            Err(entry) => {
                let key = entry.split_once('=').map_or("", |(key, _)| key.trim());
                env.warn(name, key, SKIPPED_HEADER);
            }
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::warning::Warning;

    /// The settings and warnings read from `pairs`.
    fn read(pairs: &[(&str, &str)]) -> (OtlpSettings, Vec<Warning>) {
        let mut env = EnvReader::new(|name: &str| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        });
        let settings = OtlpSettings::read(&mut env);
        (settings, env.into_warnings())
    }

    #[test]
    fn compression_is_none_unless_gzip_is_asked_for() {
        for pairs in [
            &[][..],
            &[("OTEL_EXPORTER_OTLP_COMPRESSION", "")],
            &[("OTEL_EXPORTER_OTLP_COMPRESSION", "none")],
            &[("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", " None ")],
        ] {
            let (settings, warnings) = read(pairs);
            assert_eq!(settings.compression, Compression::None, "{pairs:?}");
            assert!(warnings.is_empty(), "{pairs:?}: {warnings:?}");
        }
    }

    #[test]
    fn gzip_in_any_case_and_with_spaces() {
        for value in ["gzip", "GZIP", "  Gzip\t"] {
            let (settings, warnings) = read(&[("OTEL_EXPORTER_OTLP_COMPRESSION", value)]);
            assert_eq!(settings.compression, Compression::Gzip, "{value:?}");
            assert!(warnings.is_empty(), "{value:?}: {warnings:?}");
        }
    }

    #[test]
    fn an_unknown_compression_is_one_warning_and_none() {
        let (settings, warnings) = read(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd")]);
        assert_eq!(settings.compression, Compression::None);
        assert_eq!(
            warnings,
            [Warning::new(
                "OTEL_EXPORTER_OTLP_COMPRESSION",
                "zstd",
                "expected none or gzip; using none"
            )]
        );
    }

    #[test]
    fn the_signal_specific_compression_wins() {
        let (gzip, warnings) = read(&[
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip"),
        ]);
        assert_eq!(gzip.compression, Compression::Gzip);
        assert!(warnings.is_empty(), "{warnings:?}");
        let (none, warnings) = read(&[
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "none"),
        ]);
        assert_eq!(none.compression, Compression::None);
        assert!(warnings.is_empty(), "{warnings:?}");
        let (unknown, warnings) = read(&[
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "br"),
        ]);
        assert_eq!(unknown.compression, Compression::None);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(
            (warnings[0].subject, warnings[0].value.as_str()),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "br")
        );
    }
}
