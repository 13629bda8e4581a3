//! End to end, real processes: every request path through one shared stack
//! (scheduler gateway, two pd-proxies, a prefill and two decode simulated
//! vLLM pods) exporting at `parentbased_traceidratio` 1.0 to an OTLP gRPC
//! receiver in this test. Each trace must be one trace id from the gateway
//! to vLLM with the parent links and attributes of ARCHITECTURE.md.

mod support;

use llmd_runtime::testing::otlp_receiver::OtlpReceiver;
use llmd_tests::client::{ChatOutcome, ChatRequest};
use llmd_tests::collect;
use llmd_tests::sampling::Sampling;
use llmd_tests::shape::{Expectation, RequestPath};
use llmd_tests::stack::{Pod, Stack, services};
use llmd_tests::trace_tree::{Node, TraceTree};
use std::sync::{Mutex, OnceLock};
use support::{TraceParent, WAIT};

struct Shared {
    receiver: OtlpReceiver,
    runtime: tokio::runtime::Runtime,
    gateway: String,
    model: String,
    long_words: usize,
    prefill: Pod,
    stack: Mutex<Stack>,
}

/// One stack for every test of this file (its processes exit with the test
/// binary: they watch their stdin).
fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let receiver = OtlpReceiver::start().expect("receiver");
        let stack = support::start_stack("e2e-paths", &receiver, Sampling::ratio(1.0), 2);
        Shared {
            runtime: support::runtime(),
            gateway: stack.gateway_url(),
            model: stack.model().to_owned(),
            long_words: support::long_words(&stack),
            prefill: stack.prefill_pod().cloned().expect("a prefill pod"),
            stack: Mutex::new(stack),
            receiver,
        }
    })
}

impl Shared {
    fn send(&self, request: &ChatRequest) -> ChatOutcome {
        let answer = support::send(&self.runtime, &self.gateway, request);
        assert!(answer.succeeded(), "{answer:?}");
        answer
    }

    fn trace(&self, request: &ChatRequest, expected: Expectation) -> TraceTree {
        let id = request.request_id.as_deref().expect("a request id");
        collect::wait_for_request(&self.receiver, id, &expected, WAIT)
            .unwrap_or_else(|mismatch| panic!("trace of {id}: {mismatch}"))
    }
}

fn one<'t>(tree: &'t TraceTree, name: &str) -> &'t Node {
    let found = tree.named(name);
    assert_eq!(found.len(), 1, "one {name} expected in\n{}", tree.render());
    found[0]
}

fn text(node: &Node, key: &str) -> String {
    node.attribute_text(key)
        .unwrap_or_else(|| panic!("{} lacks {key}", node.span.name()))
}

fn number(node: &Node, key: &str) -> f64 {
    node.attribute_number(key)
        .unwrap_or_else(|| panic!("{} lacks {key}", node.span.name()))
}

/// The vLLM span under `parent`.
fn vllm_under(parent: &Node) -> &Node {
    let found = parent.children_named("llm_request");
    assert_eq!(
        found.len(),
        1,
        "one llm_request under {}",
        parent.span.name()
    );
    found[0]
}

/// What every request's trace has, whatever the path.
fn assert_common(shared: &Shared, tree: &TraceTree, answer: &ChatOutcome, request: &ChatRequest) {
    let root = &tree.roots[0];
    assert!(
        root.span.parent_span_id().is_empty(),
        "the gateway starts the trace"
    );
    assert_eq!(number(root, "http.response.status_code"), 200.0);
    let pick = one(tree, "llm_d.epp.profile_handler.pick");
    assert_eq!(text(pick, "gen_ai.request.model"), shared.model);
    assert_eq!(pick.attribute_text("gen_ai.request.id"), request.request_id);
    let usage = answer.usage.expect("usage in the answer");
    assert_eq!(
        number(pick, "llm_d.epp.profile_handler.input_tokens"),
        usage.prompt_tokens as f64
    );
    let proxy = one(tree, "llm_d.pd_proxy.request");
    assert_eq!(
        text(proxy, "llm_d.pd_proxy.request_path"),
        "/v1/chat/completions"
    );
    assert_eq!(text(proxy, "llm_d.pd_proxy.connector"), "nixlv2");
    let scores = one(tree, "llm_d.kv_cache.get_scores");
    assert_eq!(
        number(scores, "llm_d.kv_cache.pod_count"),
        2.0,
        "two decode candidates"
    );
    assert!(number(scores, "llm_d.kv_cache.block_keys.count") >= 0.0);
    let decoded = tree
        .named("llm_request")
        .into_iter()
        .find(|n| n.service().starts_with(services::DECODE_PREFIX))
        .expect("a decode llm_request");
    assert_eq!(
        number(decoded, "gen_ai.usage.completion_tokens"),
        usage.completion_tokens as f64
    );
    assert_eq!(
        number(decoded, "gen_ai.usage.prompt_tokens"),
        usage.prompt_tokens as f64
    );
    assert!(number(decoded, "gen_ai.latency.time_to_first_token") >= 0.0);
    assert!(number(decoded, "gen_ai.latency.e2e") >= 0.0);
}

#[test]
fn decode_only_requests_are_one_trace_from_the_gateway_to_the_decode_pod() {
    let shared = shared();
    for stream in [false, true] {
        let request = support::request(&shared.model, "short", 8, stream);
        let answer = shared.send(&request);
        let expected = Expectation {
            path: RequestPath::DecodeOnly,
            streaming: stream,
            prefix_hit: false,
        };
        let tree = shared.trace(&request, expected);
        assert_common(shared, &tree, &answer, &request);
        let proxy = one(&tree, "llm_d.pd_proxy.request");
        assert_eq!(text(proxy, "llm_d.pd_proxy.disaggregation_used"), "false");
        assert!(
            tree.named("llm_d.pd_proxy.decode").is_empty(),
            "no P/D legs"
        );
        assert_eq!(
            text(
                one(&tree, "llm_d.epp.prerequest.pd_disaggregation"),
                "llm_d.epp.pd.reason"
            ),
            "input_below_threshold"
        );
        assert!(
            vllm_under(proxy)
                .service()
                .starts_with(services::DECODE_PREFIX)
        );
    }
}

#[test]
fn pd_requests_run_the_prefill_pod_then_the_decode_pod_under_the_pd_proxy() {
    let shared = shared();
    for stream in [true, false] {
        let request = support::request(&shared.model, "pd", shared.long_words, stream);
        let answer = shared.send(&request);
        let expected = Expectation {
            path: RequestPath::PrefillDecode,
            streaming: stream,
            prefix_hit: false,
        };
        let tree = shared.trace(&request, expected);
        assert_common(shared, &tree, &answer, &request);
        let pre = one(&tree, "llm_d.epp.prerequest.pd_disaggregation");
        assert_eq!(
            text(pre, "llm_d.epp.pd.prefill_pod_port"),
            shared.prefill.vllm.port().to_string()
        );
        let proxy = one(&tree, "llm_d.pd_proxy.request");
        assert_eq!(text(proxy, "llm_d.pd_proxy.disaggregation_used"), "true");
        for key in [
            "llm_d.pd_proxy.true_ttft_ms",
            "llm_d.pd_proxy.total_duration_ms",
            "llm_d.pd_proxy.coordinator_overhead_ms",
        ] {
            assert!(number(proxy, key) >= 0.0, "{key}");
        }
        let prefill = one(&tree, "llm_d.pd_proxy.prefill");
        assert_eq!(number(prefill, "llm_d.pd_proxy.prefill.status_code"), 200.0);
        assert_eq!(
            text(prefill, "llm_d.pd_proxy.prefill_target"),
            shared.prefill.vllm.to_string()
        );
        assert_eq!(
            prefill.attribute_text("llm_d.pd_proxy.request_id"),
            request.request_id
        );
        let prefilled = vllm_under(prefill);
        assert_eq!(prefilled.service(), services::PREFILL);
        assert_eq!(
            number(prefilled, "gen_ai.usage.completion_tokens"),
            1.0,
            "prefill makes one token"
        );
        let decode = one(&tree, "llm_d.pd_proxy.decode");
        assert!(number(decode, "llm_d.pd_proxy.decode.duration_ms") >= 0.0);
        assert!(
            vllm_under(decode)
                .service()
                .starts_with(services::DECODE_PREFIX)
        );
    }
}

/// A long prompt nothing has cached: the P/D path.
const NOT_CACHED: Expectation = Expectation {
    path: RequestPath::PrefillDecode,
    streaming: false,
    prefix_hit: false,
};

/// Sends `first` (a long prompt not cached yet: P/D), then the same request
/// under a new id made from `label`, which must be a prefix-cache hit served
/// decode-only by the pod that decoded `first`; gives the repeat, its
/// answer and its trace.
fn repeat_hits_the_same_decode_pod(
    shared: &Shared,
    first: &ChatRequest,
    label: &str,
) -> (ChatRequest, ChatOutcome, TraceTree) {
    shared.send(first);
    let pd = shared.trace(first, NOT_CACHED);
    let again = ChatRequest {
        request_id: Some(support::unique(label)),
        ..first.clone()
    };
    let answer = shared.send(&again);
    let hit = shared.trace(
        &again,
        Expectation {
            path: RequestPath::DecodeOnly,
            streaming: false,
            prefix_hit: true,
        },
    );
    assert_eq!(
        decode_pod(&hit),
        decode_pod(&pd),
        "routed to the pod holding the prefix"
    );
    (again, answer, hit)
}

#[test]
fn a_repeated_long_prompt_hits_the_decode_pods_prefix_cache_and_skips_prefill() {
    let shared = shared();
    let first = support::request(&shared.model, "again", shared.long_words, false);
    let (again, answer, hit) = repeat_hits_the_same_decode_pod(shared, &first, "again");
    assert_common(shared, &hit, &answer, &again);
    let scores = one(&hit, "llm_d.kv_cache.get_scores");
    assert!(number(scores, "llm_d.kv_cache.blocks_found") > 0.0);
    assert_eq!(
        text(
            one(&hit, "llm_d.kv_cache.storage.lookup"),
            "llm_d.kv_cache.lookup.cache_hit"
        ),
        "true"
    );
    assert_eq!(
        text(
            one(&hit, "llm_d.epp.prerequest.pd_disaggregation"),
            "llm_d.epp.pd.reason"
        ),
        "cached_prefix_sufficient"
    );
}

/// The service name of the decode pod that served the traced request.
fn decode_pod(tree: &TraceTree) -> Option<String> {
    tree.named("llm_request")
        .into_iter()
        .map(|n| n.service().to_owned())
        .find(|s| s.starts_with(services::DECODE_PREFIX))
}

#[test]
fn a_cache_salt_keeps_prefix_hits_among_requests_of_the_same_salt() {
    let shared = shared();
    let first = ChatRequest {
        cache_salt: Some("tenant-a".to_owned()),
        ..support::request(&shared.model, "salted", shared.long_words, false)
    };
    repeat_hits_the_same_decode_pod(shared, &first, "salted-again");
    for (label, salt) in [("other-salt", Some("tenant-b")), ("unsalted", None)] {
        let other = ChatRequest {
            request_id: Some(support::unique(label)),
            cache_salt: salt.map(str::to_owned),
            ..first.clone()
        };
        shared.send(&other);
        shared.trace(&other, NOT_CACHED);
    }
}

#[test]
fn an_incoming_sampled_traceparent_is_continued_by_every_process() {
    let shared = shared();
    let parent = TraceParent::new(true);
    let mut request = support::request(&shared.model, "parented", shared.long_words, true);
    request.traceparent = Some(parent.header());
    shared.send(&request);
    let expected = Expectation {
        path: RequestPath::PrefillDecode,
        streaming: true,
        prefix_hit: false,
    };
    let tree = collect::wait_for_trace(&shared.receiver, &parent.trace_id, &expected, WAIT)
        .unwrap_or_else(|mismatch| panic!("{mismatch}"));
    assert_eq!(
        tree.roots[0].span.parent_span_id(),
        parent.span_id,
        "the caller's span is the parent"
    );
    let services: std::collections::BTreeSet<&str> =
        tree.nodes().iter().map(|n| n.service()).collect();
    assert!(services.contains(services::SCHEDULER) && services.contains(services::PD_PROXY));
    assert!(services.contains(services::PREFILL));
}

#[test]
fn an_unsampled_traceparent_suppresses_the_spans_of_every_process() {
    let shared = shared();
    let parent = TraceParent::new(false);
    let mut request = support::request(&shared.model, "unsampled", shared.long_words, false);
    request.traceparent = Some(parent.header());
    shared.send(&request);
    let stack = shared
        .stack
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    support::export_barrier(&stack, &shared.receiver, &shared.runtime);
    let leaked: Vec<String> = shared
        .receiver
        .spans()
        .iter()
        .filter(|s| s.trace_id() == parent.trace_id)
        .map(|s| format!("{} from {:?}", s.name(), s.service_name))
        .collect();
    assert!(
        leaked.is_empty(),
        "spans of an unsampled trace were exported: {leaked:?}"
    );
}

#[test]
fn prompt_text_never_reaches_the_collector() {
    let shared = shared();
    let secret = support::unique("zebra-quokka-marmalade");
    let request = ChatRequest {
        stream: true,
        max_tokens: 4,
        request_id: Some(support::unique("private")),
        ..ChatRequest::new(
            &shared.model,
            &format!(
                "{secret} {}",
                llmd_tests::demo::prompt(&secret, "private", shared.long_words)
            ),
        )
    };
    shared.send(&request);
    shared.trace(
        &request,
        Expectation {
            path: RequestPath::PrefillDecode,
            streaming: true,
            prefix_hit: false,
        },
    );
    let stack = shared
        .stack
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    support::export_barrier(&stack, &shared.receiver, &shared.runtime);
    assert!(!shared.receiver.requests().is_empty());
    assert!(
        !shared.receiver.raw_bytes_contain(secret.as_bytes()),
        "the prompt's text was exported"
    );
}
