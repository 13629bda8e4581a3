//! The P/D flows against fake prefill and decode servers: what each server
//! receives and what the client gets back.

mod common;

use common::*;
use llmd_pd_proxy::KvConnector;
use serde_json::{Value, json};

#[tokio::test]
async fn decode_only_is_a_pure_pass_through() {
    let decoder = Fake::start(decoder()).await;
    let proxy = start_proxy(config(&decoder)).await;
    let body = chat_body(true);
    let response = post(&proxy, "/v1/chat/completions?trace=1", None, &body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = sse_events(&response.text().await.unwrap());
    assert_eq!(events.len(), 4);
    assert_eq!(
        events[3]["usage"]["prompt_tokens_details"],
        Value::Null,
        "no rewrite without prefill"
    );

    let seen = decoder.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(
        seen[0].body,
        body.to_string().as_bytes(),
        "body forwarded byte for byte"
    );
    assert!(seen[0].header("x-prefiller-host-port").is_none());
}

#[tokio::test]
async fn pass_through_keeps_its_decoder_connection_alive() {
    let decoder = Fake::start(decoder()).await;
    let proxy = start_proxy(config(&decoder)).await;
    for stream in [false, true, false, true, false] {
        chat_ok(&proxy, None, stream).await;
    }
    assert_eq!(decoder.seen().len(), 5);
    assert_eq!(
        decoder.connections(),
        1,
        "sequential requests, streamed or not, share one decoder connection"
    );
}

#[tokio::test]
async fn other_routes_and_methods_go_to_the_decoder_unchanged() {
    let decoder = Fake::start(always(http::StatusCode::OK, json!({"data": [{"id": "m"}]}))).await;
    let proxy = start_proxy(config(&decoder)).await;
    let response = client()
        .get(format!("http://{}/v1/models?x=1", proxy.address()))
        .header("authorization", "Bearer k")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap()["data"][0]["id"],
        "m"
    );
    let response = client()
        .get(format!("http://{}/v1/chat/completions", proxy.address()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = decoder.seen();
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("GET", "/v1/models")
    );
    assert_eq!(seen[0].header("authorization"), Some("Bearer k"));
    assert_eq!(
        (seen[1].method.as_str(), seen[1].path.as_str()),
        ("GET", "/v1/chat/completions")
    );

    let health = client()
        .get(format!("http://{}/health", proxy.address()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let not_allowed = client()
        .post(format!("http://{}/health", proxy.address()))
        .send()
        .await
        .unwrap();
    assert_eq!(not_allowed.status(), 405);
    assert_eq!(not_allowed.headers()["allow"], "GET,HEAD");
    assert_eq!(decoder.seen().len(), 2, "health is answered by the proxy");
}

#[tokio::test]
async fn nixlv2_non_streaming_runs_prefill_then_decode() {
    let prefill = Fake::start(prefiller()).await;
    let decoder = Fake::start(decoder()).await;
    let proxy = start_proxy(config(&decoder)).await;
    let mut body = chat_body(false);
    body["max_completion_tokens"] = json!(40);
    let raw = body.to_string().replacen('{', "{\"seed\":1.50e0,", 1);
    let response = post_raw(
        &proxy,
        "/v1/chat/completions",
        Some(&format!("http://{}", prefill.host_port())),
        raw,
    )
    .await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "Hello world");
    assert_eq!(
        answer["usage"]["prompt_tokens_details"]["cached_tokens"], 48,
        "the prefiller's cached tokens are reported"
    );

    let p = &prefill.seen()[0];
    assert_eq!(p.path, "/v1/chat/completions");
    let pbody = p.json();
    assert_eq!(
        pbody["kv_transfer_params"],
        json!({"do_remote_decode": true, "do_remote_prefill": false, "remote_engine_id": null,
               "remote_block_ids": null, "remote_host": null, "remote_port": null})
    );
    assert_eq!(pbody["stream"], false);
    assert!(pbody.get("stream_options").is_none());
    assert_eq!(pbody["max_tokens"], 1);
    assert_eq!(pbody["max_completion_tokens"], 1);
    assert_eq!(pbody["vendor_extension"], body["vendor_extension"]);
    assert!(p.header("x-prefiller-host-port").is_none());

    let d = &decoder.seen()[0];
    let dbody = d.json();
    assert_eq!(dbody["kv_transfer_params"], prefiller_params());
    assert_eq!(dbody["max_tokens"], 50);
    assert_eq!(dbody["max_completion_tokens"], 40);
    assert_eq!(dbody["stream"], false);
    assert_eq!(dbody["stream_options"], body["stream_options"]);
    assert_eq!(dbody["messages"], body["messages"]);
    let text = String::from_utf8(d.body.to_vec()).unwrap();
    assert!(
        text.starts_with("{\"seed\":1.50e0,"),
        "untouched members keep their exact text and order: {text}"
    );

    let request_id = p.header("x-request-id").expect("prefill has a request id");
    assert_eq!(
        d.header("x-request-id"),
        Some(request_id),
        "same id on both legs"
    );
    assert_eq!(request_id.len(), 36, "generated when the client sent none");
}

#[tokio::test]
async fn llm_ds_renamed_prefill_header_runs_the_flow_and_reaches_no_upstream() {
    use llmd_runtime::routing::{PREFILLER_HEADER, PREFILLER_HEADERS};
    let prefill = Fake::start(prefiller()).await;
    let decoder = Fake::start(decoder()).await;
    let proxy = start_proxy(config(&decoder)).await;
    let response = client()
        .post(format!("http://{}/v1/chat/completions", proxy.address()))
        .header(PREFILLER_HEADER, prefill.host_port())
        .body(chat_body(false).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap();
    let (prefills, decodes) = (prefill.seen(), decoder.seen());
    assert_eq!((prefills.len(), decodes.len()), (1, 1), "a P/D request");
    for seen in [&prefills[0], &decodes[0]] {
        for name in PREFILLER_HEADERS {
            assert!(seen.header(name).is_none(), "{name} reached {}", seen.path);
        }
    }
}

/// Sends `count` P/D requests naming both prefillers to a proxy with or
/// without prefiller sampling; returns how many prefills each received.
async fn prefills_per_target(sampling: bool, count: usize) -> (usize, usize) {
    let first = Fake::start(prefiller()).await;
    let second = Fake::start(prefiller()).await;
    let decoder = Fake::start(decoder()).await;
    let mut config = config(&decoder);
    config.prefiller_sampling = sampling;
    let proxy = start_proxy(config).await;
    let targets = format!("{}, {}", first.host_port(), second.host_port());
    for _ in 0..count {
        chat_ok(&proxy, Some(&targets), false).await;
    }
    assert_eq!(decoder.seen().len(), count);
    (first.seen().len(), second.seen().len())
}

#[tokio::test]
async fn prefiller_sampling_spreads_prefills_over_the_listed_targets() {
    assert_eq!(
        prefills_per_target(false, 10).await,
        (10, 0),
        "without sampling, the first target"
    );
    // Each of 40 draws picks either target: all on one has a chance of 2^-39.
    let (first, second) = prefills_per_target(true, 40).await;
    assert_eq!(first + second, 40);
    assert!(first > 0 && second > 0, "{first} and {second}");
}

#[tokio::test]
async fn pd_legs_keep_their_connections_alive_and_name_each_upstream_as_host() {
    let prefill = Fake::start(prefiller()).await;
    let decoder = Fake::start(decoder()).await;
    let proxy = start_proxy(config(&decoder)).await;
    let target = prefill.host_port();
    for stream in [false, true, false, true] {
        chat_ok(&proxy, Some(&target), stream).await;
    }
    assert_eq!((prefill.seen().len(), decoder.seen().len()), (4, 4));
    assert_eq!(
        (prefill.connections(), decoder.connections()),
        (1, 1),
        "sequential P/D requests share one connection to each upstream"
    );
    assert_eq!(prefill.seen()[0].header("host"), Some(target.as_str()));
    assert_eq!(
        decoder.seen()[0].header("host"),
        Some(decoder.host_port().as_str())
    );
}

#[tokio::test]
async fn nixlv2_streaming_passes_events_through_with_cached_tokens() {
    let prefill = Fake::start(prefiller()).await;
    let decoder = Fake::start(decoder()).await;
    let proxy = start_proxy(config(&decoder)).await;
    let response = client()
        .post(format!("http://{}/v1/chat/completions", proxy.address()))
        .header(
            "x-prefiller-host-port",
            format!("{}, 10.9.9.9:8000", prefill.host_port()),
        )
        .header("x-request-id", "client-id-1")
        .body(chat_body(true).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = sse_events(&response.text().await.unwrap());
    assert_eq!(events.len(), 4);
    assert_eq!(events[1]["choices"][0]["delta"]["content"], "Hello");
    assert_eq!(
        events[3]["usage"]["prompt_tokens_details"]["cached_tokens"],
        48
    );
    assert_eq!(events[3]["usage"]["prompt_tokens"], 64);

    assert_eq!(prefill.seen()[0].json()["stream"], false);
    let d = &decoder.seen()[0];
    assert_eq!(d.json()["stream"], true);
    assert_eq!(d.json()["stream_options"], json!({"include_usage": true}));
    assert_eq!(
        prefill.seen()[0].header("x-request-id"),
        Some("client-id-1")
    );
    assert_eq!(d.header("x-request-id"), Some("client-id-1"));
}

#[tokio::test]
async fn completions_and_responses_use_their_token_limit_fields() {
    let prefill = Fake::start(prefiller()).await;
    let decoder = Fake::start(decoder()).await;
    let proxy = start_proxy(config(&decoder)).await;
    let body = json!({"model": "m", "prompt": "p", "max_tokens": 9});
    assert_eq!(
        post(&proxy, "/v1/completions", Some(&prefill.host_port()), &body)
            .await
            .status(),
        200
    );
    let body = json!({"model": "m", "input": "p", "max_output_tokens": 9});
    assert_eq!(
        post(&proxy, "/v1/responses", Some(&prefill.host_port()), &body)
            .await
            .status(),
        200
    );
    let seen = prefill.seen();
    assert_eq!(seen[0].path, "/v1/completions");
    assert_eq!(seen[0].json()["max_tokens"], 1);
    assert!(seen[0].json().get("max_completion_tokens").is_none());
    assert_eq!(seen[1].path, "/v1/responses");
    assert_eq!(seen[1].json()["max_output_tokens"], 1);
    assert_eq!(decoder.seen()[1].json()["max_output_tokens"], 9);
}

#[tokio::test]
async fn shared_storage_prefills_with_one_token_then_decodes_the_original() {
    let prefill = Fake::start(prefiller()).await;
    let decoder = Fake::start(decoder()).await;
    let proxy = start_with_connector(&decoder, KvConnector::SharedStorage).await;
    let body = chat_body(true);
    let response = post(
        &proxy,
        "/v1/chat/completions",
        Some(&prefill.host_port()),
        &body,
    )
    .await;
    assert_eq!(response.status(), 200);
    let events = sse_events(&response.text().await.unwrap());
    assert_eq!(
        events[3]["usage"]["prompt_tokens_details"],
        Value::Null,
        "no cached-token rewrite"
    );

    let pbody = prefill.seen()[0].json();
    assert_eq!(pbody["max_tokens"], 1);
    assert_eq!(pbody["stream"], true, "shared-storage leaves stream as is");
    assert!(pbody.get("kv_transfer_params").is_none());
    assert!(pbody.get("cache_hit_threshold").is_none());
    assert_eq!(
        decoder.seen()[0].body,
        body.to_string().as_bytes(),
        "the decoder gets the original"
    );
}

/// A decoder that refuses the first request of each kind with the
/// `cache_threshold` finish reason, and answers normally afterwards.
fn thresholded_decoder(refuse_first: bool) -> Behaviour {
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let normal = decoder();
    std::sync::Arc::new(move |seen: &Seen| {
        let first = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
        if !(refuse_first && first) {
            return normal(seen);
        }
        let refused = json!({"id": "c0", "choices": [{"index": 0, "delta": {}, "message": {"role": "assistant", "content": ""}, "finish_reason": "cache_threshold"}]});
        if seen.json()["stream"] == json!(true) {
            Reply::Sse(vec![refused])
        } else {
            Reply::Json(http::StatusCode::OK, refused)
        }
    })
}

#[tokio::test]
async fn shared_storage_decodes_first_when_a_cache_hit_threshold_is_set() {
    for stream in [false, true] {
        let prefill = Fake::start(prefiller()).await;
        let decoder = Fake::start(thresholded_decoder(true)).await;
        let proxy = start_with_connector(&decoder, KvConnector::SharedStorage).await;
        let mut body = chat_body(stream);
        body["cache_hit_threshold"] = json!(0.8);
        let response = post(
            &proxy,
            "/v1/chat/completions",
            Some(&prefill.host_port()),
            &body,
        )
        .await;
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        assert!(
            !text.contains("cache_threshold"),
            "the refused answer never reaches the client"
        );
        assert!(text.contains("Hello"), "stream={stream}: {text}");

        let seen = decoder.seen();
        assert_eq!(
            seen.len(),
            2,
            "decode first, then decode again after the prefill"
        );
        assert_eq!(seen[0].json()["cache_hit_threshold"], 0.8);
        assert_eq!(seen[1].json()["cache_hit_threshold"], 0);
        let pbody = prefill.seen()[0].json();
        assert_eq!(pbody["cache_hit_threshold"], 0);
        assert_eq!(pbody["max_tokens"], 1);

        let hit = Fake::start(thresholded_decoder(false)).await;
        let proxy = start_with_connector(&hit, KvConnector::SharedStorage).await;
        let response = post(
            &proxy,
            "/v1/chat/completions",
            Some(&prefill.host_port()),
            &body,
        )
        .await;
        assert!(response.text().await.unwrap().contains("Hello"));
        assert_eq!(hit.seen().len(), 1);
        assert_eq!(
            prefill.seen().len(),
            1,
            "no prefill when the decoder had enough cache"
        );
    }
}

#[tokio::test]
async fn sglang_sends_one_body_with_bootstrap_fields_to_both() {
    let prefill = Fake::start(prefiller()).await;
    let decoder = Fake::start(decoder()).await;
    let proxy = start_with_connector(&decoder, KvConnector::SgLang).await;
    let response = post_pd_chat(&proxy, &prefill, false).await;
    assert_eq!(response.status(), 200);
    let dbody = decoder.seen()[0].json();
    assert_eq!(dbody["bootstrap_host"], "127.0.0.1");
    assert_eq!(dbody["bootstrap_port"], 8998);
    assert!(dbody["bootstrap_room"].as_i64().unwrap() >= 0);
    assert_eq!(dbody["max_tokens"], 50);
    let pbody = wait_for(|| prefill.seen().first().map(|s| s.json())).await;
    assert_eq!(pbody, dbody, "the same body goes to both");
}

#[tokio::test]
async fn data_parallel_header_routes_to_the_rank() {
    let (rank0, rank1) = Fake::start_pair(
        always(http::StatusCode::OK, json!({"rank": 0})),
        always(http::StatusCode::OK, json!({"rank": 1})),
    )
    .await;
    let proxy = start_data_parallel_proxy(&rank0).await;
    let rank1_port = proxy.addresses()[1].port();
    let via_header = client()
        .post(format!("http://{}/v1/completions", proxy.address()))
        .header(
            "x-data-parallel-host-port",
            format!("10.0.0.1:{rank1_port}"),
        )
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(via_header.json::<Value>().await.unwrap()["rank"], 1);
    let direct = post(&proxy, "/v1/completions", None, &json!({})).await;
    assert_eq!(direct.json::<Value>().await.unwrap()["rank"], 0);
    let on_rank1 = client()
        .post(format!("http://{}/v1/completions", proxy.addresses()[1]))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(on_rank1.json::<Value>().await.unwrap()["rank"], 1);
    let unknown = client()
        .post(format!("http://{}/v1/completions", proxy.address()))
        .header("x-data-parallel-host-port", "10.0.0.1:1")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_vllm_error(unknown, 400).await;
    assert_eq!(rank1.seen().len(), 2);
}

/// A two-rank proxy; its listeners need two consecutive free ports.
async fn start_data_parallel_proxy(rank0: &Fake) -> llmd_pd_proxy::Proxy {
    for _ in 0..50 {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let mut c = config(rank0);
        c.data_parallel_size = 2;
        c.port = port;
        if let Ok(proxy) = llmd_pd_proxy::Proxy::start(c).await {
            return proxy;
        }
    }
    panic!("no two consecutive free ports for the proxy");
}

async fn wait_for<T>(mut probe: impl FnMut() -> Option<T>) -> T {
    for _ in 0..500 {
        if let Some(found) = probe() {
            return found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("condition not met in time");
}

/// Shutdown closes kept-alive connections that are idle instead of waiting
/// for their clients to close them.
#[tokio::test]
async fn shutdown_does_not_wait_for_idle_kept_alive_connections() {
    let decoder = Fake::start(decoder()).await;
    let proxy = start_proxy(config(&decoder)).await;
    let client = client();
    let url = format!("http://{}/v1/chat/completions", proxy.address());
    for _ in 0..2 {
        let response = client
            .post(&url)
            .body(chat_body(false).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap();
    }
    assert!(
        proxy.shutdown(std::time::Duration::from_secs(60)).await,
        "the idle connection held the shutdown"
    );
    drop(client);
}
