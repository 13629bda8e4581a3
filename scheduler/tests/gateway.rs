//! The gateway over loopback with fake vLLM pods: routing by load and by
//! prefix-cache hits (fed real KV events over ZMQ), P/D headers, errors,
//! streaming and the exported span tree.

mod common;

use common::{EventPublisher, FakePod, Gateway, endpoint, wait_until};
use futures_util::StreamExt as _;
use llmd_runtime::testing::{attribute, capture};
use llmd_scheduler::tokenize::{LocalTokenizer, Prompt};
use opentelemetry::Value;
use serde_json::json;

const QUEUE_ONLY: &str = "\
apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: decode-filter
- type: queue-scorer
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: decode-filter
  - pluginRef: queue-scorer
  - pluginRef: max-score-picker
";

const PD_SAMPLE: &str = include_str!("fixtures/pd-epp-config.yaml");

fn client() -> reqwest::Client {
    llmd_scheduler::app::http_client().unwrap()
}

async fn complete(gateway: &Gateway, body: serde_json::Value) -> reqwest::Response {
    client()
        .post(gateway.url("/v1/completions"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn served_by(gateway: &Gateway, body: serde_json::Value) -> String {
    let response = complete(gateway, body).await;
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.unwrap();
    answer["pod"].as_str().unwrap().to_owned()
}

fn waiting_seen(gateway: &Gateway, pod: &FakePod) -> u64 {
    let snapshot = gateway.app.gateway().pool.snapshot();
    let endpoint = snapshot
        .endpoints()
        .iter()
        .find(|e| e.spec().address == pod.addr)
        .unwrap();
    endpoint.load().waiting
}

#[tokio::test]
async fn routing_follows_load() {
    let (a, b) = (FakePod::start("a").await, FakePod::start("b").await);
    let gateway = Gateway::start(
        &[endpoint(&a, None, None), endpoint(&b, None, None)],
        Some(QUEUE_ONLY),
        |_| {},
    )
    .await;
    gateway.wait_ready(2).await;
    a.set_waiting(10);
    wait_until("a's queue is scraped", || waiting_seen(&gateway, &a) == 10).await;
    for _ in 0..5 {
        assert_eq!(
            served_by(&gateway, json!({"model": "m", "prompt": "hi"})).await,
            "b"
        );
    }
    a.set_waiting(0);
    b.set_waiting(10);
    wait_until("b's queue is scraped", || {
        waiting_seen(&gateway, &b) == 10 && waiting_seen(&gateway, &a) == 0
    })
    .await;
    for _ in 0..5 {
        assert_eq!(
            served_by(&gateway, json!({"model": "m", "prompt": "hi"})).await,
            "a"
        );
    }
}

/// Publishes until the gateway's index has taken the blocks in.
async fn feed(
    gateway: &Gateway,
    publisher: &mut EventPublisher,
    pod: &FakePod,
    tokens: &[u32],
    first_hash: u64,
) {
    let indexer = gateway.app.prefix_cache().unwrap().indexer().clone();
    let before = indexer.ingest_stats().blocks_stored;
    for _ in 0..2000 {
        publisher.store(pod.addr, "m", tokens, 16, first_hash);
        if indexer.ingest_stats().blocks_stored > before {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("KV events were never ingested");
}

#[tokio::test]
async fn routing_follows_prefix_cache_hits() {
    let (a, b) = (FakePod::start("a").await, FakePod::start("b").await);
    let (mut pa, mut pb) = (EventPublisher::bind(), EventPublisher::bind());
    let tokenizer_dir = common::TempDir::new();
    common::write_tokenizer(&tokenizer_dir.0);
    let dir = tokenizer_dir.0.clone();
    let gateway = Gateway::start(
        &[
            endpoint(&a, None, Some(pa.port)),
            endpoint(&b, None, Some(pb.port)),
        ],
        None,
        |o| o.tokenizers.push(("m".to_owned(), dir)),
    )
    .await;
    gateway.wait_ready(2).await;

    let prompt: Vec<u32> = (100..164).collect();
    feed(&gateway, &mut pb, &b, &prompt, 1000).await;
    for _ in 0..5 {
        assert_eq!(
            served_by(&gateway, json!({"model": "m", "prompt": prompt})).await,
            "b"
        );
    }

    let messages = json!([{"role": "user", "content": (0..80).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ")}]);
    let tokens = LocalTokenizer::from_dir(&tokenizer_dir.0)
        .unwrap()
        .encode(&Prompt::Chat(messages.clone()))
        .unwrap();
    assert!(tokens.len() >= 64, "{}", tokens.len());
    feed(&gateway, &mut pa, &a, &tokens, 5000).await;
    for _ in 0..5 {
        let response = client()
            .post(gateway.url("/v1/chat/completions"))
            .json(&json!({"model": "m", "messages": messages}))
            .send()
            .await
            .unwrap();
        let answer: serde_json::Value = response.json().await.unwrap();
        assert_eq!(answer["pod"], "a");
    }
    assert_eq!(a.seen().last().unwrap().path, "/v1/chat/completions");
}

#[tokio::test]
async fn pd_header_is_set_only_when_the_decider_disaggregates() {
    let (prefill, decode) = (FakePod::start("p").await, FakePod::start("d").await);
    let mut publisher = EventPublisher::bind();
    let gateway = Gateway::start(
        &[
            endpoint(&prefill, Some("prefill"), None),
            endpoint(&decode, Some("decode"), Some(publisher.port)),
        ],
        Some(PD_SAMPLE),
        |_| {},
    )
    .await;
    gateway.wait_ready(2).await;
    let header = |pod: &FakePod| {
        let seen = pod.seen();
        let headers = &seen.last().unwrap().headers;
        let [legacy, renamed] = llmd_runtime::routing::PREFILLER_HEADERS
            .map(|name| headers.get(name).map(|v| v.to_str().unwrap().to_owned()));
        assert_eq!(
            legacy, renamed,
            "both spellings carry the target, as llm-d's endpoint picker writes them"
        );
        legacy
    };

    assert_eq!(
        served_by(
            &gateway,
            json!({"model": "m", "prompt": [1, 2, 3, 4, 5, 6, 7, 8]})
        )
        .await,
        "d"
    );
    assert_eq!(
        header(&decode),
        None,
        "a short prompt is not worth a prefill pod"
    );

    let long: Vec<u32> = (0..64).collect();
    assert_eq!(
        served_by(&gateway, json!({"model": "m", "prompt": long})).await,
        "d"
    );
    assert_eq!(header(&decode), Some(prefill.addr.to_string()));
    assert!(
        prefill.seen().is_empty(),
        "the gateway never calls the prefill pod itself"
    );

    feed(&gateway, &mut publisher, &decode, &long, 77).await;
    assert_eq!(
        served_by(&gateway, json!({"model": "m", "prompt": long})).await,
        "d"
    );
    assert_eq!(
        header(&decode),
        None,
        "the prompt is cached on the decode pod"
    );

    let metrics = client()
        .get(gateway.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("llmd_scheduler_decisions_total{decision=\"prefill_decode\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("llmd_scheduler_decisions_total{decision=\"decode_only\"} 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("llmd_scheduler_pods_ready 2\n"),
        "{metrics}"
    );
}

async fn expect_error(response: reqwest::Response, code: u16) {
    assert_eq!(response.status(), code);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["object"], "error", "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["param"], "", "{body}");
    assert!(
        body["type"].is_string() && body["message"].is_string(),
        "{body}"
    );
}

#[tokio::test]
async fn every_error_path_answers_vllm_style_json() {
    let ok = FakePod::start("ok").await;
    let cold = FakePod::start("cold").await;
    cold.metrics_up
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let broken = FakePod::start("broken").await;
    let entries = [
        endpoint(&ok, None, None),
        format!("- address: {}\n  model: cold\n", cold.addr),
        format!(
            "- address: {}\n  model: broken\n  sidecarPort: {closed_port}\n",
            broken.addr
        ),
    ];
    let gateway = Gateway::start(&entries, Some(QUEUE_ONLY), |o| o.body_limit = 1024).await;
    gateway.wait_ready(2).await;
    let client = client();
    let post = |body: Vec<u8>| {
        client
            .post(gateway.url("/v1/completions"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    expect_error(post(b"{not json".to_vec()).await.unwrap(), 400).await;
    expect_error(post(br#"{"prompt":"x"}"#.to_vec()).await.unwrap(), 400).await;
    expect_error(
        post(br#"{"model":"nope","prompt":"x"}"#.to_vec())
            .await
            .unwrap(),
        404,
    )
    .await;
    expect_error(
        post(br#"{"model":"cold","prompt":"x"}"#.to_vec())
            .await
            .unwrap(),
        503,
    )
    .await;
    expect_error(
        post(br#"{"model":"broken","prompt":"x"}"#.to_vec())
            .await
            .unwrap(),
        502,
    )
    .await;
    let big = format!(r#"{{"model":"m","prompt":"{}"}}"#, "x".repeat(2000));
    expect_error(post(big.into_bytes()).await.unwrap(), 413).await;
    assert!(ok.seen().is_empty() && cold.seen().is_empty() && broken.seen().is_empty());

    let models: serde_json::Value = client
        .get(gateway.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["broken", "cold", "m"]);
    assert_eq!(
        client
            .get(gateway.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn streamed_answers_pass_through_as_they_arrive() {
    let pod = FakePod::start("s").await;
    let gateway = Gateway::start(&[endpoint(&pod, None, None)], Some(QUEUE_ONLY), |_| {}).await;
    gateway.wait_ready(1).await;
    let response = complete(
        &gateway,
        json!({"model": "m", "prompt": "hi", "stream": true}),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let mut body = response.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(
        String::from_utf8_lossy(&first).contains("\"pod\":\"s\""),
        "the first chunk arrives while the pod still holds the second"
    );
    pod.release_stream.notify_one();
    let mut rest = Vec::new();
    while let Some(chunk) = body.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert!(String::from_utf8_lossy(&rest).ends_with("data: [DONE]\n\n"));
    let seen = pod.seen();
    assert_eq!(seen[0].headers["x-request-id"], request_id.as_str());
    assert_eq!(seen[0].body["stream"], true);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn spans_form_one_tree_under_gateway_request() {
    let spans = capture();
    let (prefill, decode) = (FakePod::start("p").await, FakePod::start("d").await);
    let gateway = Gateway::start(
        &[
            endpoint(&prefill, Some("prefill"), None),
            endpoint(&decode, Some("decode"), None),
        ],
        Some(PD_SAMPLE),
        |_| {},
    )
    .await;
    gateway.wait_ready(2).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let response = client()
        .post(gateway.url("/v1/completions"))
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .header("x-request-id", "req-42")
        .json(&json!({"model": "m", "prompt": (0..64).collect::<Vec<u32>>()}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap();

    let ours = || {
        spans
            .spans()
            .into_iter()
            .filter(|s| hex(&s.span_context.trace_id().to_bytes()) == trace_id)
            .collect::<Vec<_>>()
    };
    wait_until("gateway.request has ended", || {
        ours().iter().any(|s| s.name == "gateway.request")
    })
    .await;
    let all = ours();
    let named = |name: &str| all.iter().filter(|s| s.name == name).collect::<Vec<_>>();
    let root = named("gateway.request");
    assert_eq!(root.len(), 1);
    let root = root[0];
    assert_eq!(root.span_kind, opentelemetry::trace::SpanKind::Server);
    assert_eq!(hex(&root.parent_span_id.to_bytes()), caller_span);
    assert_eq!(
        attribute(root, "gen_ai.request.model"),
        Some(&Value::from("m"))
    );
    assert_eq!(
        attribute(root, "gen_ai.request.id"),
        Some(&Value::from("req-42"))
    );
    assert_eq!(
        attribute(root, "gen_ai.operation.name"),
        Some(&Value::from("text_completion"))
    );
    let root_id = root.span_context.span_id();

    for name in [
        "llm_d.epp.scorer.prefix_cache",
        "llm_d.epp.scorer.queue",
        "llm_d.epp.profile_handler.pick",
        "llm_d.epp.prerequest.pd_disaggregation",
    ] {
        let found = named(name);
        assert!(!found.is_empty(), "no {name} span");
        assert!(
            found.iter().all(|s| s.parent_span_id == root_id),
            "{name} is not a child of gateway.request"
        );
    }
    assert_eq!(
        named("llm_d.epp.scorer.prefix_cache").len(),
        2,
        "decode and prefill profiles"
    );
    let prefix_ids: Vec<_> = named("llm_d.epp.scorer.prefix_cache")
        .iter()
        .map(|s| s.span_context.span_id())
        .collect();
    let get_scores = named("llm_d.kv_cache.get_scores");
    assert_eq!(get_scores.len(), 2);
    assert!(
        get_scores
            .iter()
            .all(|s| prefix_ids.contains(&s.parent_span_id))
    );
    let get_scores_ids: Vec<_> = get_scores
        .iter()
        .map(|s| s.span_context.span_id())
        .collect();
    assert!(
        named("llm_d.kv_cache.storage.lookup")
            .iter()
            .all(|s| get_scores_ids.contains(&s.parent_span_id))
    );

    let pick = named("llm_d.epp.profile_handler.pick")[0];
    assert_eq!(
        attribute(pick, "llm_d.epp.profile_handler.decision"),
        Some(&Value::from("prefill_decode"))
    );
    assert_eq!(
        attribute(pick, "llm_d.epp.profile_handler.input_tokens"),
        Some(&Value::I64(64))
    );
    assert_eq!(
        attribute(pick, "llm_d.epp.profile_handler.selected_profile"),
        Some(&Value::from("prefill"))
    );
    assert_eq!(
        attribute(pick, "gen_ai.request.id"),
        Some(&Value::from("req-42"))
    );
    let pd = named("llm_d.epp.prerequest.pd_disaggregation")[0];
    assert_eq!(
        attribute(pd, "llm_d.epp.pd.disaggregation_used"),
        Some(&Value::Bool(true))
    );
    assert_eq!(
        attribute(pd, "llm_d.epp.pd.prefill_pod_address"),
        Some(&Value::from("127.0.0.1"))
    );
    assert_eq!(
        attribute(pd, "llm_d.epp.pd.prefill_pod_port"),
        Some(&Value::I64(i64::from(prefill.addr.port())))
    );
    assert_eq!(
        attribute(pd, "llm_d.epp.pd.reason"),
        Some(&Value::from("non_cached_above_threshold"))
    );

    for span in &all {
        for kv in &span.attributes {
            assert!(
                llmd_runtime::attributes::registry::find_key(kv.key.as_str()).is_some(),
                "{} records unregistered key {}",
                span.name,
                kv.key
            );
        }
    }

    let forwarded = decode.seen();
    let traceparent = forwarded[0].headers["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        traceparent,
        format!("00-{trace_id}-{}-01", hex(&root_id.to_bytes()))
    );
}

#[tokio::test]
async fn the_pool_file_is_reloaded_when_it_changes() {
    let (a, b) = (FakePod::start("a").await, FakePod::start("b").await);
    let gateway = Gateway::start(&[endpoint(&a, None, None)], Some(QUEUE_ONLY), |o| {
        o.reload_pool = true
    })
    .await;
    gateway.wait_ready(1).await;
    gateway.dir.write(
        "pool.yaml",
        &format!("endpoints:\n{}", endpoint(&b, None, None)),
    );
    let pool = gateway.app.gateway().pool.clone();
    wait_until("the new pool is loaded and scraped", || {
        let snapshot = pool.snapshot();
        snapshot.endpoints().len() == 1
            && snapshot.endpoints()[0].spec().address == b.addr
            && snapshot.ready_count() == 1
    })
    .await;
    assert_eq!(
        served_by(&gateway, json!({"model": "m", "prompt": "hi"})).await,
        "b"
    );
}
