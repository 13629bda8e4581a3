//! `ServerTraceLayer`: the SERVER span of each request, its parent,
//! attributes and status, and its end at the end of the response body.

mod http_support;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::routing::get;
use bytes::Bytes;
use futures_util::stream;
use http_body_util::BodyExt;
use http_support::{SPAN_ID, TRACE_ID, client, serve, traceparent};
use llmd_runtime::Identifier;
use llmd_runtime::attributes::{key_value, kind};
use llmd_runtime::http::ServerTraceLayer;
use llmd_runtime::propagation;
use llmd_runtime::span::{self, SpanMeta};
use llmd_runtime::testing::{attribute, capture, capture_with, without_telemetry};
use opentelemetry::Value;
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceId};
use opentelemetry_sdk::trace::{Sampler, SpanData};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tower::{Layer, ServiceExt};

static REQUEST: SpanMeta = SpanMeta::new("llm_d.test.request", SpanKind::Server);
const NAME: &str = "llm_d.test.request";

fn text(value: &'static str) -> Value {
    Value::from(value)
}

/// A handler that awaits before it records, so the span must travel with
/// the future across the await.
async fn item() -> &'static str {
    tokio::task::yield_now().await;
    span::record_current(|| {
        [key_value::<kind::Str, _>(
            "gen_ai.request.model",
            Identifier::new("test-model"),
        )]
    });
    "item"
}

async fn busy() -> (StatusCode, &'static str) {
    (StatusCode::SERVICE_UNAVAILABLE, "busy")
}

/// Echoes the `traceparent` an outbound call from the handler would carry.
async fn outbound_traceparent() -> String {
    let mut headers = HeaderMap::new();
    propagation::inject_current(&mut headers);
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_owned()
}

fn app() -> Router {
    Router::new()
        .route("/items/{id}", get(item))
        .route("/busy", get(busy))
        .route("/outbound", get(outbound_traceparent))
        .layer(ServerTraceLayer::new(&REQUEST))
}

fn assert_no_attribute_mentions(span: &SpanData, secrets: &[&str]) {
    for kv in &span.attributes {
        let shown = format!("{}={:?}", kv.key, kv.value);
        for secret in secrets {
            assert!(!shown.contains(secret), "{shown} leaks {secret}");
        }
    }
}

#[tokio::test]
async fn server_span_is_parented_on_the_caller_and_carries_http_attributes() {
    let cap = capture();
    let addr = serve(app()).await;
    let body = client()
        .get(format!("http://{addr}/items/zq81x?secret=hunter2"))
        .header("traceparent", traceparent(TRACE_ID, SPAN_ID, true))
        .header("authorization", "Bearer token-xyz")
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    assert_eq!(body, "item");

    let span = cap.one(NAME);
    assert_eq!(span.span_kind, SpanKind::Server);
    assert_eq!(
        span.span_context.trace_id(),
        TraceId::from_hex(TRACE_ID).expect("hex")
    );
    assert_eq!(span.parent_span_id, SpanId::from_hex(SPAN_ID).expect("hex"));
    assert!(span.parent_span_is_remote);
    assert_eq!(span.status, Status::Unset);
    assert_eq!(attribute(&span, "http.request.method"), Some(&text("GET")));
    assert_eq!(attribute(&span, "http.route"), Some(&text("/items/{id}")));
    assert_eq!(
        attribute(&span, "http.response.status_code"),
        Some(&Value::I64(200))
    );
    assert_eq!(attribute(&span, "url.scheme"), Some(&text("http")));
    assert_eq!(attribute(&span, "server.address"), Some(&text("127.0.0.1")));
    assert_eq!(
        attribute(&span, "server.port"),
        Some(&Value::I64(i64::from(addr.port())))
    );
    assert_eq!(
        attribute(&span, "gen_ai.request.model"),
        Some(&text("test-model"))
    );
    assert_eq!(attribute(&span, "error.type"), None);
    assert_no_attribute_mentions(
        &span,
        &["zq81x", "secret", "hunter2", "Bearer", "token-xyz"],
    );
}

#[tokio::test]
async fn server_error_sets_error_status_with_the_status_code() {
    let cap = capture();
    let addr = serve(app()).await;
    let response = client()
        .get(format!("http://{addr}/busy"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 503);
    assert_eq!(response.text().await.expect("body"), "busy");

    let span = cap.one(NAME);
    assert_eq!(span.status, Status::error("503"));
    assert_eq!(attribute(&span, "error.type"), Some(&text("503")));
    assert_eq!(
        attribute(&span, "http.response.status_code"),
        Some(&Value::I64(503))
    );
    assert_eq!(
        span.parent_span_id,
        SpanId::INVALID,
        "no traceparent: a root span"
    );
}

#[tokio::test]
async fn unmatched_path_has_no_route_and_is_not_an_error() {
    let cap = capture();
    let addr = serve(app()).await;
    let response = client()
        .get(format!("http://{addr}/nowhere/x"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 404);
    response.bytes().await.expect("body");

    let span = cap.one(NAME);
    assert_eq!(attribute(&span, "http.route"), None);
    assert_eq!(
        attribute(&span, "http.response.status_code"),
        Some(&Value::I64(404))
    );
    assert_eq!(span.status, Status::Unset);
    assert_no_attribute_mentions(&span, &["nowhere"]);
}

#[tokio::test]
async fn malformed_traceparent_starts_a_new_root_trace() {
    let cap = capture();
    let addr = serve(app()).await;
    let malformed = format!("00-{}-{SPAN_ID}-01", TRACE_ID.to_uppercase());
    let response = client()
        .get(format!("http://{addr}/items/1"))
        .header("traceparent", malformed)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    response.bytes().await.expect("body");

    let span = cap.one(NAME);
    assert_eq!(span.parent_span_id, SpanId::INVALID);
    assert!(span.span_context.is_valid());
    assert_ne!(
        span.span_context.trace_id(),
        TraceId::from_hex(TRACE_ID).expect("hex")
    );
    assert_eq!(span.status, Status::Unset);
}

#[tokio::test]
async fn disabled_telemetry_still_makes_the_incoming_context_current() {
    let _off = without_telemetry();
    let addr = serve(app()).await;
    let incoming = traceparent(TRACE_ID, SPAN_ID, true);
    let seen = client()
        .get(format!("http://{addr}/outbound"))
        .header("traceparent", &incoming)
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    assert_eq!(seen, incoming);
}

#[tokio::test]
async fn local_address_and_tls_scheme_are_used_when_the_request_names_no_host() {
    let cap = capture();
    let local = "10.1.2.3:8443".parse().expect("socket address");
    let router = Router::new()
        .route("/items/{id}", get(item))
        .layer(ServerTraceLayer::new(&REQUEST).tls().local_addr(local));
    let request = Request::get("/items/1")
        .body(Body::empty())
        .expect("request");
    let response = router.clone().oneshot(request).await.expect("infallible");
    response.into_body().collect().await.expect("body");
    let span = cap.one(NAME);
    assert_eq!(attribute(&span, "url.scheme"), Some(&text("https")));
    assert_eq!(attribute(&span, "server.address"), Some(&text("10.1.2.3")));
    assert_eq!(attribute(&span, "server.port"), Some(&Value::I64(8443)));

    cap.clear();
    let request = Request::get("/items/1")
        .header("host", "gateway.example")
        .body(Body::empty())
        .expect("request");
    let response = router.oneshot(request).await.expect("infallible");
    response.into_body().collect().await.expect("body");
    let span = cap.one(NAME);
    assert_eq!(
        attribute(&span, "server.address"),
        Some(&text("gateway.example"))
    );
    assert_eq!(attribute(&span, "server.port"), Some(&Value::I64(443)));
}

/// Chunks a streaming handler sends, one per message on the channel; each
/// one is produced while the body is polled and adds an event to the
/// current span.
type Chunks = Arc<Mutex<Option<mpsc::Receiver<&'static str>>>>;

async fn stream_chunks(State(chunks): State<Chunks>) -> Body {
    let receiver = chunks.lock().expect("lock").take();
    Body::from_stream(stream::unfold(receiver, |receiver| async move {
        let mut receiver = receiver?;
        let chunk = receiver.recv().await?;
        span::add_event_current("llm_d.pd_proxy.first_token", Vec::new);
        Some((
            Ok::<_, Infallible>(Bytes::from_static(chunk.as_bytes())),
            Some(receiver),
        ))
    }))
}

fn streaming_app() -> (Router, mpsc::Sender<&'static str>) {
    let (sender, receiver) = mpsc::channel(4);
    let router = Router::new()
        .route("/stream", get(stream_chunks))
        .with_state(Arc::new(Mutex::new(Some(receiver))))
        .layer(ServerTraceLayer::new(&REQUEST));
    (router, sender)
}

#[tokio::test]
async fn span_stays_open_while_the_body_streams_and_ends_after_the_last_chunk() {
    let cap = capture();
    let (router, sender) = streaming_app();
    let addr = serve(router).await;
    sender.send("data: 1\n\n").await.expect("send");
    let mut response = client()
        .get(format!("http://{addr}/stream"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let first = response
        .chunk()
        .await
        .expect("read")
        .expect("a first chunk");
    assert_eq!(&first[..], b"data: 1\n\n");
    assert!(
        cap.named(NAME).is_empty(),
        "the span ended before the body did"
    );

    sender.send("data: [DONE]\n\n").await.expect("send");
    drop(sender);
    let mut rest = Vec::new();
    while let Some(chunk) = response.chunk().await.expect("read") {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(rest, b"data: [DONE]\n\n");

    let span = cap.one(NAME);
    assert_eq!(
        span.events.len(),
        2,
        "one event per chunk, both inside the span"
    );
    assert_eq!(
        attribute(&span, "http.response.status_code"),
        Some(&Value::I64(200))
    );
    assert_eq!(span.status, Status::Unset);
}

#[tokio::test]
async fn dropping_an_unfinished_body_ends_the_span() {
    let cap = capture();
    let (router, sender) = streaming_app();
    sender.send("data: 1\n\n").await.expect("send");
    let request = Request::get("/stream")
        .body(Body::empty())
        .expect("request");
    let mut body = router
        .oneshot(request)
        .await
        .expect("infallible")
        .into_body();
    let first = body.frame().await.expect("a frame").expect("a data frame");
    assert!(first.is_data());
    assert!(
        cap.named(NAME).is_empty(),
        "open while the body is unfinished"
    );

    drop(body);
    let span = cap.one(NAME);
    assert_eq!(span.events.len(), 1);
}

#[tokio::test]
async fn body_error_mid_stream_marks_the_span_failed() {
    let cap = capture();
    let router = Router::new()
        .route(
            "/broken",
            get(|| async {
                Body::from_stream(stream::iter([
                    Ok(Bytes::from_static(b"data: 1\n\n")),
                    Err(std::io::Error::other("upstream reset")),
                ]))
            }),
        )
        .layer(ServerTraceLayer::new(&REQUEST));
    let request = Request::get("/broken")
        .body(Body::empty())
        .expect("request");
    let body = router
        .oneshot(request)
        .await
        .expect("infallible")
        .into_body();
    assert!(body.collect().await.is_err());

    let span = cap.one(NAME);
    assert_eq!(span.status, Status::error("response_body"));
    assert_eq!(attribute(&span, "error.type"), Some(&text("response_body")));
    assert_no_attribute_mentions(&span, &["upstream reset"]);
}

#[tokio::test]
async fn service_failure_without_a_response_marks_the_span_failed() {
    let cap = capture();
    let service =
        ServerTraceLayer::new(&REQUEST).layer(tower::service_fn(|_: Request<Body>| async {
            Err::<axum::response::Response, _>(std::io::Error::other("connection refused"))
        }));
    let request = Request::get("/").body(Body::empty()).expect("request");
    assert!(service.oneshot(request).await.is_err());

    let span = cap.one(NAME);
    assert_eq!(span.status, Status::error("_OTHER"));
    assert_eq!(attribute(&span, "http.response.status_code"), None);
}

#[tokio::test]
async fn a_named_route_is_recorded_without_axum_routing() {
    let cap = capture();
    let service = ServerTraceLayer::new(&REQUEST)
        .route("/v1/completions")
        .layer(tower::service_fn(|_: Request<Body>| async {
            Ok::<_, Infallible>(axum::response::Response::new(Body::empty()))
        }));
    let request = Request::post("/v1/completions?secret=hunter2")
        .body(Body::empty())
        .expect("request");
    service.oneshot(request).await.expect("infallible");

    let span = cap.one(NAME);
    assert_eq!(
        attribute(&span, "http.route"),
        Some(&text("/v1/completions"))
    );
    assert_eq!(attribute(&span, "http.request.method"), Some(&text("POST")));
    assert_no_attribute_mentions(&span, &["hunter2"]);
}

/// A server that routes by itself, tracing each request with
/// `ServerTraceLayer::trace_with`: the routed model goes into the span's
/// start list and then to the handler, which echoes it in a header; calls
/// of the attribute closure are counted.
async fn traced_with(
    layer: &ServerTraceLayer,
    request: Request<Body>,
    built: &AtomicUsize,
) -> axum::response::Response<llmd_runtime::http::TracedBody<Body>> {
    let routed = Identifier::new("routed-model");
    let response = layer
        .trace_with(
            request,
            routed,
            |model, list| {
                built.fetch_add(1, Ordering::Relaxed);
                list.extend(llmd_runtime::attributes!(
                    gen_ai.request.model = model.clone(),
                    llm_d.pd_proxy.disaggregation_used = false,
                ));
            },
            |_, model| async move {
                let mut response = axum::response::Response::new(Body::empty());
                response
                    .headers_mut()
                    .insert("x-model", model.as_str().parse().expect("a header value"));
                Ok::<_, Infallible>(response)
            },
        )
        .await;
    response.expect("infallible")
}

/// A completion request from a caller whose trace is `sampled` or not.
fn completion_request(sampled: bool) -> Request<Body> {
    Request::post("/v1/completions")
        .header("traceparent", traceparent(TRACE_ID, SPAN_ID, sampled))
        .body(Body::empty())
        .expect("request")
}

#[tokio::test]
async fn trace_with_puts_the_callers_attributes_in_the_start_list() {
    let cap = capture_with(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
    let layer = ServerTraceLayer::new(&REQUEST).route("/v1/completions");
    let built = AtomicUsize::new(0);
    let response = traced_with(&layer, completion_request(true), &built).await;
    assert_eq!(response.headers()["x-model"], "routed-model");

    let span = cap.one(NAME);
    assert_eq!(built.load(Ordering::Relaxed), 1);
    assert_eq!(
        attribute(&span, "gen_ai.request.model"),
        Some(&text("routed-model"))
    );
    assert_eq!(
        attribute(&span, "llm_d.pd_proxy.disaggregation_used"),
        Some(&Value::Bool(false))
    );
    assert_eq!(
        attribute(&span, "http.route"),
        Some(&text("/v1/completions"))
    );
    assert_eq!(
        attribute(&span, "http.response.status_code"),
        Some(&Value::I64(200))
    );

    // An unsampled caller: no span, and the closure is never called.
    cap.clear();
    let response = traced_with(&layer, completion_request(false), &built).await;
    assert_eq!(response.headers()["x-model"], "routed-model");
    assert!(cap.spans().is_empty());
    assert_eq!(built.load(Ordering::Relaxed), 1);
}
