//! Failures: prefill errors and retries, unreachable upstreams, SSRF
//! denial, client disconnects and malformed input.

mod common;

use common::*;
use http::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A loopback port nothing listens on.
fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn prefill_4xx_is_returned_as_is_without_retry() {
    let rejection = json!({"object": "error", "message": "max_tokens too large", "type": "BadRequestError", "param": "", "code": 400});
    let prefill = Fake::start(always(StatusCode::BAD_REQUEST, rejection.clone())).await;
    let decoder = Fake::start(decoder()).await;
    let proxy = start_proxy(config(&decoder)).await;
    let response = post_pd_chat(&proxy, &prefill, false).await;
    assert_eq!(response.status(), 400);
    assert_eq!(response.json::<Value>().await.unwrap(), rejection);
    assert_eq!(prefill.seen().len(), 1, "4xx is not retried");
    assert!(
        decoder.seen().is_empty(),
        "no decode after a rejected prefill"
    );
}

#[tokio::test]
async fn prefill_5xx_is_retried_then_answered_with_a_json_error() {
    let prefill = Fake::start(always(
        StatusCode::INTERNAL_SERVER_ERROR,
        json!({"error": "boom"}),
    ))
    .await;
    let decoder = Fake::start(decoder()).await;
    let mut c = config(&decoder);
    c.prefill_retry.max_retries = 2;
    let proxy = start_proxy(c).await;
    let response = post_pd_chat(&proxy, &prefill, false).await;
    let body = assert_vllm_error(response, 502).await;
    assert!(body["message"].as_str().unwrap().contains("500"));
    assert_eq!(prefill.seen().len(), 3, "first attempt and two retries");
    assert!(decoder.seen().is_empty());
}

#[tokio::test]
async fn prefill_recovers_when_a_retry_succeeds() {
    let calls = Arc::new(AtomicUsize::new(0));
    let ok = prefiller();
    let counter = calls.clone();
    let flaky: Behaviour = Arc::new(move |seen| {
        if counter.fetch_add(1, Ordering::SeqCst) == 0 {
            Reply::Json(StatusCode::SERVICE_UNAVAILABLE, json!({}))
        } else {
            ok(seen)
        }
    });
    let prefill = Fake::start(flaky).await;
    let decoder = Fake::start(decoder()).await;
    let proxy = start_proxy(config(&decoder)).await;
    let response = post_pd_chat(&proxy, &prefill, false).await;
    assert_eq!(response.status(), 200);
    assert_eq!(prefill.seen().len(), 2);
    assert_eq!(
        decoder.seen()[0].json()["kv_transfer_params"],
        prefiller_params()
    );
}

#[tokio::test]
async fn prefill_timeout_is_retried_then_504() {
    let slow: Behaviour = Arc::new(|_| {
        Reply::Delayed(
            Duration::from_secs(5),
            Box::new(Reply::Json(StatusCode::OK, json!({}))),
        )
    });
    let prefill = Fake::start(slow).await;
    let decoder = Fake::start(decoder()).await;
    let mut c = config(&decoder);
    c.prefill_retry.max_retries = 1;
    c.prefill_retry.attempt_timeout = Duration::from_millis(100);
    let proxy = start_proxy(c).await;
    let response = post_pd_chat(&proxy, &prefill, false).await;
    assert_vllm_error(response, 504).await;
    assert_eq!(prefill.seen().len(), 2);
}

#[tokio::test]
async fn unreachable_prefiller_gets_a_json_error_after_retries() {
    let decoder = Fake::start(decoder()).await;
    let proxy = start_proxy(config(&decoder)).await;
    let target = format!("127.0.0.1:{}", dead_port());
    let response = post(
        &proxy,
        "/v1/chat/completions",
        Some(&target),
        &chat_body(false),
    )
    .await;
    let body = assert_vllm_error(response, 502).await;
    assert!(body["message"].as_str().unwrap().contains("3 attempt"));
    assert!(decoder.seen().is_empty());
}

#[tokio::test]
async fn decoder_down_is_503_and_other_decoder_failures_502() {
    let decoder = Fake::start(decoder()).await;
    let mut c = config(&decoder);
    c.vllm_port = dead_port();
    let proxy = start_proxy(c).await;
    let response = post(&proxy, "/v1/chat/completions", None, &chat_body(true)).await;
    let body = assert_vllm_error(response, 503).await;
    assert_eq!(body["type"], "ServiceUnavailable");
    let prefill = Fake::start(prefiller()).await;
    let response = post_pd_chat(&proxy, &prefill, true).await;
    assert_vllm_error(response, 503).await;

    let hangs_up = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut c = config(&decoder);
    c.vllm_port = hangs_up.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = hangs_up.accept().await {
            drop(stream);
        }
    });
    let proxy = start_proxy(c).await;
    let response = post(&proxy, "/v1/models", None, &json!({})).await;
    let body = assert_vllm_error(response, 502).await;
    assert_eq!(body["type"], "BadGateway");
}

/// A loopback listener whose accept queue is full: a connection to it is
/// never established (the kernel drops its SYNs), as with an upstream
/// behind a firewall that drops packets. Keep both values alive.
fn black_hole() -> (tokio::net::TcpListener, std::net::TcpStream) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let queued = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    (listener, queued)
}

#[tokio::test]
async fn an_unanswering_decoder_is_a_502_once_the_connect_timeout_passes() {
    let (hole, _queued) = black_hole();
    let decoder = Fake::start(decoder()).await;
    let mut c = config(&decoder);
    c.vllm_port = hole.local_addr().unwrap().port();
    c.connect_timeout = Duration::from_millis(200);
    let proxy = start_proxy(c).await;
    for path in ["/v1/chat/completions", "/v1/models"] {
        let response = tokio::time::timeout(
            UNLESS_CONNECT_TIMES_OUT,
            post(&proxy, path, None, &chat_body(false)),
        )
        .await
        .expect("the connect timeout ends the request");
        let body = assert_vllm_error(response, 502).await;
        assert_eq!(body["type"], "BadGateway", "{path}");
    }
}

#[tokio::test]
async fn an_unanswering_prefiller_is_retried_and_reported_unreachable() {
    let (hole, _queued) = black_hole();
    let decoder = Fake::start(decoder()).await;
    let mut c = config(&decoder);
    c.connect_timeout = Duration::from_millis(200);
    c.prefill_retry.max_retries = 1;
    c.prefill_retry.attempt_timeout = UNLESS_CONNECT_TIMES_OUT;
    let proxy = start_proxy(c).await;
    let target = format!("127.0.0.1:{}", hole.local_addr().unwrap().port());
    let response = tokio::time::timeout(
        UNLESS_CONNECT_TIMES_OUT,
        post(
            &proxy,
            "/v1/chat/completions",
            Some(&target),
            &chat_body(false),
        ),
    )
    .await
    .expect("the connect timeout ends each attempt");
    let body = assert_vllm_error(response, 502).await;
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("unreachable after 2 attempt"), "{message}");
    assert!(decoder.seen().is_empty());
}

#[tokio::test]
async fn ssrf_protection_refuses_unlisted_targets_without_connecting() {
    let prefill = Fake::start(prefiller()).await;
    let decoder = Fake::start(decoder()).await;
    let mut c = config(&decoder);
    c.allowed_prefill_hosts = Some(vec!["10.0.0.1".into()]);
    let proxy = start_proxy(c).await;
    let response = post_pd_chat(&proxy, &prefill, false).await;
    assert_vllm_error(response, 403).await;
    assert_eq!(prefill.connections(), 0, "no connection to the prefiller");
    assert_eq!(decoder.connections(), 0, "no connection to the decoder");

    let mut c = config(&decoder);
    c.allowed_prefill_hosts = Some(vec!["127.0.0.1".into()]);
    let proxy = start_proxy(c).await;
    let response = post_pd_chat(&proxy, &prefill, false).await;
    assert_eq!(response.status(), 200, "listed hosts are allowed");
}

#[tokio::test]
async fn client_disconnect_mid_stream_cancels_the_upstream() {
    let prefill = Fake::start(prefiller()).await;
    let decoder = Fake::start(Arc::new(|_| Reply::Endless)).await;
    let proxy = start_proxy(config(&decoder)).await;
    for prefiller in [None, Some(prefill.host_port())] {
        let before = decoder.cancelled();
        let mut response = post(
            &proxy,
            "/v1/chat/completions",
            prefiller.as_deref(),
            &chat_body(true),
        )
        .await;
        let first = response
            .chunk()
            .await
            .unwrap()
            .expect("a first event streams through");
        assert!(first.starts_with(b"data: "));
        drop(response);
        let mut waited = 0;
        while decoder.cancelled() == before && waited < 500 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            waited += 1;
        }
        assert_eq!(
            decoder.cancelled(),
            before + 1,
            "upstream stream dropped (prefiller {prefiller:?})"
        );
    }
}

#[tokio::test]
async fn malformed_input_gets_clear_4xx_errors() {
    let prefill = Fake::start(prefiller()).await;
    let decoder = Fake::start(decoder()).await;
    let mut c = config(&decoder);
    c.max_body_bytes = 1024;
    let proxy = start_proxy(c).await;
    let target = Some(prefill.host_port());
    let target = target.as_deref();

    let invalid = post_raw(
        &proxy,
        "/v1/chat/completions",
        target,
        "{\"model\": ".into(),
    )
    .await;
    let body = assert_vllm_error(invalid, 400).await;
    assert!(body["message"].as_str().unwrap().contains("not valid JSON"));

    let array = post_raw(&proxy, "/v1/chat/completions", target, "[1,2]".into()).await;
    let body = assert_vllm_error(array, 400).await;
    assert!(body["message"].as_str().unwrap().contains("JSON object"));

    let big = json!({"model": "m", "prompt": "x".repeat(2000)});
    let too_large = post(&proxy, "/v1/completions", target, &big).await;
    assert_vllm_error(too_large, 413).await;

    for bad in ["10.0.0.1:8000/x", "user@h:1", "h:notaport"] {
        let response = post(&proxy, "/v1/chat/completions", Some(bad), &chat_body(false)).await;
        let body = assert_vllm_error(response, 400).await;
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("x-prefiller-host-port")
        );
    }
    let binary = client()
        .post(format!("http://{}/v1/chat/completions", proxy.address()))
        .header(
            "x-prefiller-host-port",
            http::HeaderValue::from_bytes(b"h\xfe:1").unwrap(),
        )
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_vllm_error(binary, 400).await;

    let prefiller_garbage = Fake::start(Arc::new(|_| Reply::Sse(vec![]))).await;
    let response = post_pd_chat(&proxy, &prefiller_garbage, false).await;
    assert_vllm_error(response, 502).await;

    assert_eq!(prefill.connections(), 0);
    assert!(decoder.seen().is_empty());
}
