//! EndpointPickerConfig files: llm-d's sample P/D configuration loads, and
//! bad plugins, parameters and profiles are startup errors naming the culprit.

use llmd_scheduler::config::{ConfigError, EndpointPickerConfig};
use llmd_scheduler::kv_index::{PrefixCache, PrefixCacheSettings};
use llmd_scheduler::plugins::registry::{build, prefix_cache_settings};
use llmd_scheduler::scheduler::{Handler, Scheduler};
use std::sync::Arc;

fn index() -> Option<Arc<PrefixCache>> {
    Some(Arc::new(
        PrefixCache::new(&PrefixCacheSettings::default()).unwrap(),
    ))
}

fn build_text(text: &str) -> Result<Scheduler, ConfigError> {
    build(&EndpointPickerConfig::parse(text)?, index())
}

fn error(text: &str) -> String {
    build_text(text).unwrap_err().to_string()
}

#[test]
fn llm_d_sample_pd_config_loads() {
    let text = include_str!("fixtures/pd-epp-config.yaml");
    let config = EndpointPickerConfig::parse(text).unwrap();
    assert_eq!(
        prefix_cache_settings(&config).unwrap(),
        Some(PrefixCacheSettings::default())
    );
    let scheduler = build(&config, index()).unwrap();
    let names: Vec<&str> = scheduler
        .profiles()
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, ["prefill", "decode"]);
    let Handler::Pd {
        handler,
        decode,
        prefill,
    } = scheduler.handler()
    else {
        panic!("expected the P/D handler");
    };
    assert_eq!((*decode, *prefill), (1, 0));
    assert_eq!(handler.decider.non_cached_tokens, 16);
    let decode = &scheduler.profiles()[1];
    let weights: Vec<(&str, f64)> = decode
        .scorers
        .iter()
        .map(|s| (s.kind.type_name(), s.weight))
        .collect();
    assert_eq!(
        weights,
        [("precise-prefix-cache-scorer", 2.0), ("queue-scorer", 1.0)]
    );
    assert_eq!(decode.filters.len(), 1);
    assert!(scheduler.needs_tokens());
}

#[test]
fn the_default_config_builds() {
    let scheduler = build(&EndpointPickerConfig::default_config(), index()).unwrap();
    assert!(matches!(scheduler.handler(), Handler::Single));
    assert_eq!(scheduler.profiles()[0].scorers.len(), 3);
}

#[test]
fn precise_prefix_parameters_set_up_the_index() {
    let config = EndpointPickerConfig::parse(
        "plugins:
- type: precise-prefix-cache-scorer
  parameters:
    tokenProcessorConfig: {blockSize: 64, hashSeed: \"42\"}
    kvEventsConfig: {discoverPods: true, podDiscoveryConfig: {socketPort: 6000}, topicFilter: kv@}
    indexerConfig:
      kvBlockIndexConfig: {enableMetrics: true, redisConfig: {address: \"redis://127.0.0.1:6379\"}}
schedulingProfiles:
- name: default
  plugins: [{pluginRef: precise-prefix-cache-scorer, weight: 3}]
",
    )
    .unwrap();
    let settings = prefix_cache_settings(&config).unwrap().unwrap();
    assert_eq!(settings.block_size, 64);
    assert_eq!(settings.hash_seed, 42);
    assert_eq!(settings.events_port, 6000);
    assert_eq!(
        settings.redis_url.as_deref(),
        Some("redis://127.0.0.1:6379")
    );
}

const PROFILE: &str = "schedulingProfiles:\n- name: default\n  plugins: [{pluginRef: x}]\n";

#[test]
fn unknown_types_and_parameters_name_the_plugin() {
    let e = error(&format!(
        "plugins:\n- {{type: magic-scorer, name: x}}\n{PROFILE}"
    ));
    assert!(e.contains("\"x\"") && e.contains("magic-scorer"), "{e}");
    let e = error(&format!(
        "plugins:\n- {{type: queue-scorer, name: x, parameters: {{depth: 3}}}}\n{PROFILE}"
    ));
    assert!(e.contains("\"x\"") && e.contains("depth"), "{e}");
    let e = error(&format!(
        "plugins:\n- {{type: load-aware-scorer, name: x, parameters: {{threshold: many}}}}\n{PROFILE}"
    ));
    assert!(
        e.contains("\"x\"") && e.contains("load-aware-scorer"),
        "{e}"
    );
    let e = error(&format!(
        "plugins:\n- {{type: prefix-based-pd-decider, name: d, parameters: {{nonCachedTokens: 16, threshold: 2}}}}\n- {{type: queue-scorer, name: x}}\n{PROFILE}"
    ));
    assert!(e.contains("\"d\"") && e.contains("threshold"), "{e}");
}

#[test]
fn inconsistent_profiles_are_rejected() {
    let e = error(
        "plugins:\n- {type: queue-scorer}\nschedulingProfiles:\n- name: default\n  plugins: [{pluginRef: nope}]\n",
    );
    assert!(e.contains("nope"), "{e}");
    let e = error(
        "plugins:\n- {type: queue-scorer}\n- {type: queue-scorer}\nschedulingProfiles:\n- name: d\n  plugins: [{pluginRef: queue-scorer}]\n",
    );
    assert!(e.contains("twice"), "{e}");
    let e = error(
        "plugins:\n- {type: queue-scorer}\nschedulingProfiles:\n- {name: a, plugins: [{pluginRef: queue-scorer}]}\n- {name: b, plugins: [{pluginRef: queue-scorer}]}\n",
    );
    assert!(e.contains("pd-profile-handler"), "{e}");
    let e = error(
        "plugins:\n- {type: queue-scorer}\n- {type: pd-profile-handler}\n- {type: prefix-based-pd-decider}\nschedulingProfiles:\n- {name: decode, plugins: [{pluginRef: queue-scorer}]}\n",
    );
    assert!(e.contains("prefill"), "{e}");
    let e = error(
        "plugins:\n- {type: queue-scorer}\nschedulingProfiles:\n- {name: a, plugins: [{pluginRef: queue-scorer, weight: -1}]}\n",
    );
    assert!(e.contains("weight"), "{e}");
    let config = EndpointPickerConfig::parse(
        "plugins:\n- {type: precise-prefix-cache-scorer}\nschedulingProfiles:\n- {name: a, plugins: [{pluginRef: precise-prefix-cache-scorer}]}\n",
    )
    .unwrap();
    let e = build(&config, None).unwrap_err().to_string();
    assert!(
        e.contains("precise-prefix-cache-scorer") && e.contains("index"),
        "{e}"
    );
}
