//! The latency `ServerTraceLayer` adds to a request, against the same axum
//! app without it. The router is driven in process with `oneshot` (no
//! sockets), response body included, so the difference is the layer's own
//! cost: extraction, span start/end, attributes, context switching and the
//! body wrapper. `identity_layer` is the same app with a layer that does
//! nothing: what axum's `Router::layer` itself costs.

use axum::Router;
use axum::body::Body;
use axum::routing::post;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use llmd_runtime::http::ServerTraceLayer;
use llmd_runtime::span::SpanMeta;
use llmd_runtime::state;
use llmd_runtime::testing::install_discarding;
use opentelemetry::trace::SpanKind;
use opentelemetry_sdk::trace::Sampler;
use std::hint::black_box;
use tokio::runtime::Runtime;
use tower::ServiceExt;

static REQUEST: SpanMeta = SpanMeta::new("gateway.request", SpanKind::Server);

const SAMPLED_PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const UNSAMPLED_PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";

fn app() -> Router {
    Router::new().route("/v1/completions/{id}", post(|| async { "ok" }))
}

fn request(traceparent: &'static str) -> Request<Body> {
    Request::post("/v1/completions/7?stream=false")
        .header(http::header::HOST, "10.0.0.1:8000")
        .header("traceparent", traceparent)
        .body(Body::empty())
        .expect("a valid request")
}

/// Sends one request through `router` and reads the whole response body
/// (the server span ends with the body).
fn roundtrip(runtime: &Runtime, router: &Router, traceparent: &'static str) {
    runtime
        .block_on(async {
            let response = router
                .clone()
                .oneshot(request(traceparent))
                .await
                .expect("infallible");
            black_box(axum::body::to_bytes(response.into_body(), usize::MAX).await)
        })
        .expect("a complete body");
}

/// The latency of one request through `router`.
fn bench_latency(c: &mut Criterion, name: &str, router: &Router, traceparent: &'static str) {
    let runtime = current_thread();
    c.bench_function(name, |b| {
        b.iter(|| roundtrip(&runtime, router, traceparent))
    });
}

fn current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a tokio runtime")
}

fn server_layer(c: &mut Criterion) {
    let plain = app();
    let identity = app().layer(tower::layer::util::Identity::new());
    let traced = app().layer(ServerTraceLayer::new(&REQUEST));

    state::uninstall();
    bench_latency(c, "server_layer/without_layer", &plain, SAMPLED_PARENT);
    bench_latency(c, "server_layer/identity_layer", &identity, SAMPLED_PARENT);
    bench_latency(
        c,
        "server_layer/telemetry_disabled",
        &traced,
        SAMPLED_PARENT,
    );

    let provider = install_discarding(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
    bench_latency(c, "server_layer/not_sampled", &traced, UNSAMPLED_PARENT);
    state::uninstall();
    let _ = provider.shutdown();

    let provider = install_discarding(Sampler::AlwaysOn);
    bench_latency(c, "server_layer/sampled", &traced, SAMPLED_PARENT);
    state::uninstall();
    let _ = provider.shutdown();
}

criterion_group!(benches, server_layer);
criterion_main!(benches);
