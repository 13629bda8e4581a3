//! The scheduler's two files: the endpoint pool and the
//! `EndpointPickerConfig`.

use super::{Pod, PodRole};
use std::fmt::Write as _;

/// The pool file: every pod with its role, its sidecar (decode pods) and
/// its KV-event publisher port.
pub fn pool_yaml(model: &str, pods: &[Pod]) -> String {
    let mut yaml = String::from("endpoints:\n");
    for pod in pods {
        let role = match pod.role {
            PodRole::Prefill => "prefill",
            PodRole::Decode => "decode",
        };
        let _ = writeln!(yaml, "- address: {}", pod.vllm);
        let _ = writeln!(yaml, "  model: {model}");
        let _ = writeln!(yaml, "  labels: {{ llm-d.ai/role: {role} }}");
        if let Some(proxy) = pod.proxy {
            let _ = writeln!(yaml, "  sidecarPort: {}", proxy.port());
        }
        let _ = writeln!(yaml, "  kvEventsPort: {}", pod.kv_events_port);
    }
    yaml
}

/// llm-d's P/D configuration: the decode profile scores prefix-cache hits
/// (from the KV-event index) and queue depth; the decider sends prompts
/// with at least `non_cached_tokens` uncached tokens to the prefill pod
/// first.
pub fn epp_config_yaml(non_cached_tokens: usize) -> String {
    format!(
        "\
apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: prefill-filter
- type: decode-filter
- type: precise-prefix-cache-scorer
- type: queue-scorer
- type: max-score-picker
- type: prefix-based-pd-decider
  parameters:
    nonCachedTokens: {non_cached_tokens}
- type: pd-profile-handler
  parameters:
    deciderPluginName: prefix-based-pd-decider
schedulingProfiles:
- name: prefill
  plugins:
  - pluginRef: prefill-filter
  - pluginRef: queue-scorer
  - pluginRef: max-score-picker
- name: decode
  plugins:
  - pluginRef: decode-filter
  - pluginRef: precise-prefix-cache-scorer
    weight: 2
  - pluginRef: queue-scorer
  - pluginRef: max-score-picker
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_lists_roles_sidecars_and_event_ports() {
        let pods = [
            Pod {
                name: "vllm-prefill".into(),
                role: PodRole::Prefill,
                vllm: "127.0.0.1:9001".parse().unwrap(),
                proxy: None,
                kv_events_port: 7001,
            },
            Pod {
                name: "vllm-decode-1".into(),
                role: PodRole::Decode,
                vllm: "127.0.0.1:9002".parse().unwrap(),
                proxy: Some("127.0.0.1:9102".parse().unwrap()),
                kv_events_port: 7002,
            },
        ];
        let yaml = pool_yaml("m", &pods);
        assert_eq!(
            yaml,
            "endpoints:\n\
             - address: 127.0.0.1:9001\n  model: m\n  labels: { llm-d.ai/role: prefill }\n  kvEventsPort: 7001\n\
             - address: 127.0.0.1:9002\n  model: m\n  labels: { llm-d.ai/role: decode }\n  sidecarPort: 9102\n  kvEventsPort: 7002\n"
        );
        assert!(epp_config_yaml(96).contains("nonCachedTokens: 96\n"));
    }
}
