//! `GET /metrics`: vLLM's metric names in the Prometheus text format, with
//! vLLM's `model_name` and `engine` labels.

use super::AppState;
use crate::config::SimConfig;
use crate::engine::Snapshot;
use axum::extract::State;
use axum::response::IntoResponse;
use http::header::CONTENT_TYPE;
use std::fmt::Write;

const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn handle(State(state): State<AppState>) -> impl IntoResponse {
    let text = render(state.engine.config(), &state.engine.snapshot());
    ([(CONTENT_TYPE, CONTENT_TYPE_TEXT)], text)
}

/// The exposition text for `snapshot`.
fn render(config: &SimConfig, snapshot: &Snapshot) -> String {
    let labels = format!(
        "engine=\"0\",model_name=\"{}\"",
        escape(config.served_model_name())
    );
    let c = &snapshot.counters;
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (sample_labels, value) in samples {
            let _ = writeln!(
                out,
                "{}{{{sample_labels}}} {value:?}",
                sample_name(name, kind)
            );
        }
    };
    family(
        "vllm:num_requests_running",
        "gauge",
        "Number of requests in model execution batches.",
        &[(labels.clone(), snapshot.running as f64)],
    );
    family(
        "vllm:num_requests_waiting",
        "gauge",
        "Number of requests waiting to be processed.",
        &[(labels.clone(), snapshot.waiting as f64)],
    );
    family(
        "vllm:kv_cache_usage_perc",
        "gauge",
        "KV-cache usage. 1 means 100 percent usage.",
        &[(labels.clone(), snapshot.kv_cache_usage)],
    );
    family(
        "vllm:prefix_cache_queries",
        "counter",
        "Prefix cache queries, in terms of number of queried tokens.",
        &[(labels.clone(), c.prefix_cache_queries as f64)],
    );
    family(
        "vllm:prefix_cache_hits",
        "counter",
        "Prefix cache hits, in terms of number of cached tokens.",
        &[(labels.clone(), c.prefix_cache_hits as f64)],
    );
    family(
        "vllm:prompt_tokens",
        "counter",
        "Number of prefill tokens processed.",
        &[(labels.clone(), c.prompt_tokens as f64)],
    );
    family(
        "vllm:generation_tokens",
        "counter",
        "Number of generation tokens processed.",
        &[(labels.clone(), c.generation_tokens as f64)],
    );
    family(
        "vllm:request_success",
        "counter",
        "Count of successfully processed requests.",
        &[
            (
                format!("{labels},finished_reason=\"length\""),
                c.finished_length as f64,
            ),
            (
                format!("{labels},finished_reason=\"stop\""),
                c.finished_stop as f64,
            ),
        ],
    );
    family(
        "vllm:cache_config_info",
        "gauge",
        "Information of the LLMEngine CacheConfig",
        &[(
            format!(
                "block_size=\"{}\",enable_prefix_caching=\"True\",{labels},num_gpu_blocks=\"{}\",prefix_caching_hash_algo=\"sha256_cbor\"",
                config.block_size, config.num_gpu_blocks
            ),
            1.0,
        )],
    );
    out
}

/// Counters are exposed with the `_total` suffix their family name lacks.
fn sample_name(name: &str, kind: &str) -> String {
    if kind == "counter" {
        format!("{name}_total")
    } else {
        name.to_owned()
    }
}

/// Escapes a label value (backslash, quote, newline).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::stats::CounterValues;

    #[test]
    fn metrics_use_vllm_names_labels_and_suffixes() {
        let mut config = SimConfig::new("org/m\"x");
        config.block_size = 32;
        let snapshot = Snapshot {
            running: 2,
            waiting: 1,
            kv_cache_usage: 0.25,
            counters: CounterValues {
                prefix_cache_queries: 100,
                prefix_cache_hits: 32,
                ..CounterValues::default()
            },
        };
        let text = render(&config, &snapshot);
        let labels = r#"engine="0",model_name="org/m\"x""#;
        assert!(
            text.contains(&format!("vllm:num_requests_running{{{labels}}} 2.0\n")),
            "{text}"
        );
        assert!(text.contains(&format!("vllm:num_requests_waiting{{{labels}}} 1.0\n")));
        assert!(text.contains(&format!("vllm:kv_cache_usage_perc{{{labels}}} 0.25\n")));
        assert!(text.contains("# TYPE vllm:prefix_cache_queries counter\n"));
        assert!(text.contains(&format!(
            "vllm:prefix_cache_queries_total{{{labels}}} 100.0\n"
        )));
        assert!(text.contains(&format!("vllm:prefix_cache_hits_total{{{labels}}} 32.0\n")));
        assert!(text.contains("block_size=\"32\""));
        assert!(text.contains("num_gpu_blocks=\"2048\""));
    }
}
