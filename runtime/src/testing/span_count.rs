//! Counting the spans of OTLP trace exports without decoding them, for a
//! receiver that stands in for a collector in benchmarks: it should take
//! as little of the machine as it can from the processes being measured.
//!
//! The skeleton messages below declare only the fields on the path to the
//! spans (`ExportTraceServiceRequest.resource_spans` → `ResourceSpans.
//! scope_spans` → `ScopeSpans.spans`); prost skips every other field
//! without looking into it, and each span stays an undecoded byte slice of
//! the request.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};
use tonic::codec::CompressionEncoding;
use tonic::server::NamedService;
use tonic_prost::ProstCodec;

/// The gRPC path of the OTLP trace export call.
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// `ExportTraceServiceRequest`, down to its spans.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct ExportSkeleton {
    #[prost(message, repeated, tag = "1")]
    resource_spans: Vec<ResourceSkeleton>,
}

/// `ResourceSpans`, down to its spans.
#[derive(Clone, PartialEq, Message)]
struct ResourceSkeleton {
    #[prost(message, repeated, tag = "2")]
    scope_spans: Vec<ScopeSkeleton>,
}

/// `ScopeSpans`, with its spans left encoded.
#[derive(Clone, PartialEq, Message)]
struct ScopeSkeleton {
    #[prost(bytes = "bytes", repeated, tag = "2")]
    spans: Vec<Bytes>,
}

impl ExportSkeleton {
    /// How many spans the export carries, over all its resources and
    /// scopes.
    pub(crate) fn span_count(&self) -> usize {
        self.resource_spans
            .iter()
            .flat_map(|resource| &resource.scope_spans)
            .map(|scope| scope.spans.len())
            .sum()
    }
}

/// The OTLP gRPC `TraceService` of a counting receiver: every export
/// (plain or gzip-compressed) is decoded as an [`ExportSkeleton`] and its
/// span count handed to `count`.
#[derive(Clone)]
pub(crate) struct CountingTraceService<F> {
    count: F,
}

impl<F: Fn(usize) + Clone + Send + 'static> CountingTraceService<F> {
    /// Hands each export's span count to `count`.
    pub(crate) fn new(count: F) -> CountingTraceService<F> {
        CountingTraceService { count }
    }
}

impl<F> NamedService for CountingTraceService<F> {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

impl<F> tower_service::Service<http::Request<tonic::body::Body>> for CountingTraceService<F>
where
    F: Fn(usize) + Clone + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = futures_util::future::BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        if request.uri().path() != EXPORT_PATH {
            let status = tonic::Status::unimplemented("only TraceService/Export is served");
            return Box::pin(ready(Ok(status.into_http())));
        }
        let export = Export(self.count.clone());
        Box::pin(async move {
            let codec = ProstCodec::<ExportTraceServiceResponse, ExportSkeleton>::default();
            let mut grpc =
                tonic::server::Grpc::new(codec).accept_compressed(CompressionEncoding::Gzip);
            Ok(grpc.unary(export, request).await)
        })
    }
}

/// One export call: counts, then answers with an empty success.
struct Export<F>(F);

impl<F: Fn(usize)> tower_service::Service<tonic::Request<ExportSkeleton>> for Export<F> {
    type Response = tonic::Response<ExportTraceServiceResponse>;
    type Error = tonic::Status;
    type Future = Ready<Result<Self::Response, tonic::Status>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), tonic::Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: tonic::Request<ExportSkeleton>) -> Self::Future {
        (self.0)(request.get_ref().span_count());
        ready(Ok(tonic::Response::new(
            ExportTraceServiceResponse::default(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn span(name: &str) -> Span {
        Span {
            name: name.to_owned(),
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            attributes: vec![KeyValue {
                key: "gen_ai.request.model".to_owned(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue("m".to_owned())),
                }),
                ..KeyValue::default()
            }],
            ..Span::default()
        }
    }

    fn scope(spans: usize) -> ScopeSpans {
        ScopeSpans {
            spans: (0..spans).map(|i| span(&format!("s{i}"))).collect(),
            ..ScopeSpans::default()
        }
    }

    #[test]
    fn counts_the_spans_of_every_resource_and_scope() {
        let export = ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    resource: Some(Resource::default()),
                    scope_spans: vec![scope(2), scope(0), scope(3)],
                    ..ResourceSpans::default()
                },
                ResourceSpans {
                    scope_spans: vec![scope(4)],
                    ..ResourceSpans::default()
                },
            ],
        };
        let skeleton = ExportSkeleton::decode(export.encode_to_vec().as_slice()).unwrap();
        assert_eq!(skeleton.span_count(), 9);
        assert_eq!(ExportSkeleton::default().span_count(), 0);
    }

    #[test]
    fn a_malformed_export_is_an_error() {
        assert!(ExportSkeleton::decode(&[0x0a, 0x05, 0x12][..]).is_err());
    }
}
