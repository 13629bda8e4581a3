//! Builds plugins from an [`EndpointPickerConfig`]: known types, their
//! parameters (unknown ones are errors naming the plugin), and profiles.

use super::Profile;
use super::decider::PrefixBasedPdDecider;
use super::filters::RoleFilter;
use super::picker::MaxScorePicker;
use super::profile_handler::PdProfileHandler;
use super::scorers::{DEFAULT_LOAD_THRESHOLD, ScorerKind, WeightedScorer};
use crate::config::{ConfigError, EndpointPickerConfig, PluginSpec};
use crate::kv_index::{PrefixCache, PrefixCacheSettings};
use crate::scheduler::{Handler, Scheduler};
use llmd_runtime::Identifier;
use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use std::collections::HashMap;
use std::sync::Arc;

/// Every plugin type this scheduler implements.
pub const PLUGIN_TYPES: &[&str] = &[
    "decode-filter",
    "prefill-filter",
    "precise-prefix-cache-scorer",
    "prefix-cache-scorer",
    "queue-scorer",
    "kv-cache-utilization-scorer",
    "load-aware-scorer",
    "max-score-picker",
    "prefix-based-pd-decider",
    "pd-profile-handler",
    "single-profile-handler",
    "prefill-header-handler",
];

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NoParameters {}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LoadAwareParameters {
    threshold: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PickerParameters {
    max_num_of_endpoints: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DeciderParameters {
    #[serde(default)]
    non_cached_tokens: i64,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PdHandlerParameters {
    decode_profile: Option<String>,
    prefill_profile: Option<String>,
    /// Accepted for compatibility: prefix state always comes from the prefix scorer.
    #[serde(rename = "prefixPluginType")]
    _prefix_plugin_type: Option<IgnoredAny>,
    /// Accepted for compatibility, as `prefixPluginType`.
    #[serde(rename = "prefixPluginName")]
    _prefix_plugin_name: Option<IgnoredAny>,
    primary_port: Option<i64>,
    decider_plugin_name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PrefillHeaderParameters {
    prefill_profile: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TokenProcessorConfig {
    block_size: Option<usize>,
    hash_seed: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PodDiscoveryConfig {
    socket_port: Option<u16>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct KvEventsConfig {
    discover_pods: Option<bool>,
    pod_discovery_config: Option<PodDiscoveryConfig>,
    topic_filter: Option<String>,
    /// Accepted for compatibility; every pod has its own subscriber task.
    #[serde(rename = "concurrency")]
    _concurrency: Option<IgnoredAny>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RedisConfig {
    /// `redis://host:port/db`.
    address: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct KvBlockIndexConfig {
    redis_config: Option<RedisConfig>,
    /// Accepted for compatibility; no effect here.
    #[serde(rename = "enableMetrics")]
    _enable_metrics: Option<IgnoredAny>,
    /// Accepted for compatibility; no effect here.
    #[serde(rename = "metricsLoggingInterval")]
    _metrics_logging_interval: Option<IgnoredAny>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct IndexerConfig {
    token_processor_config: Option<TokenProcessorConfig>,
    kv_block_index_config: Option<KvBlockIndexConfig>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PrecisePrefixParameters {
    token_processor_config: Option<TokenProcessorConfig>,
    kv_events_config: Option<KvEventsConfig>,
    indexer_config: Option<IndexerConfig>,
}

/// The sample configurations' `prefix-cache-scorer`; served by the same
/// KV-event index as the precise scorer.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PrefixCacheParameters {
    block_size_tokens: Option<usize>,
    hash_block_size: Option<usize>,
    /// Accepted for compatibility: the index keeps what the pods report.
    #[serde(rename = "maxPrefixBlocksToMatch")]
    _max_prefix_blocks_to_match: Option<IgnoredAny>,
    /// Accepted for compatibility, as `maxPrefixBlocksToMatch`.
    #[serde(rename = "lruCapacityPerServer")]
    _lru_capacity_per_server: Option<IgnoredAny>,
    /// Accepted for compatibility, as `maxPrefixBlocksToMatch`.
    #[serde(rename = "autoTune")]
    _auto_tune: Option<IgnoredAny>,
}

fn parameters<T: DeserializeOwned + Default>(spec: &PluginSpec) -> Result<T, ConfigError> {
    match &spec.parameters {
        None | Some(serde_yaml_ng::Value::Null) => Ok(T::default()),
        Some(value) => serde_yaml_ng::from_value(value.clone())
            .map_err(|e| invalid_parameters(spec, e.to_string())),
    }
}

fn invalid_parameters(spec: &PluginSpec, message: String) -> ConfigError {
    ConfigError::Parameters {
        name: spec.instance_name().to_owned(),
        plugin_type: spec.plugin_type.clone(),
        message,
    }
}

fn check_type(spec: &PluginSpec) -> Result<(), ConfigError> {
    if PLUGIN_TYPES.contains(&spec.plugin_type.as_str()) {
        Ok(())
    } else {
        Err(ConfigError::UnknownType {
            name: spec.instance_name().to_owned(),
            plugin_type: spec.plugin_type.clone(),
        })
    }
}

fn is_prefix_scorer(plugin_type: &str) -> bool {
    matches!(
        plugin_type,
        "precise-prefix-cache-scorer" | "prefix-cache-scorer"
    )
}

/// Checks every plugin's type and parameters, and returns the settings of
/// the KV block index when a prefix scorer is configured.
pub fn prefix_cache_settings(
    config: &EndpointPickerConfig,
) -> Result<Option<PrefixCacheSettings>, ConfigError> {
    let mut found: Option<PrefixCacheSettings> = None;
    for spec in &config.plugins {
        check_type(spec)?;
        validate_parameters(spec)?;
        let settings = match spec.plugin_type.as_str() {
            "precise-prefix-cache-scorer" => precise_settings(spec, parameters(spec)?)?,
            "prefix-cache-scorer" => {
                let p: PrefixCacheParameters = parameters(spec)?;
                PrefixCacheSettings {
                    block_size: p.block_size_tokens.or(p.hash_block_size).unwrap_or(16),
                    ..PrefixCacheSettings::default()
                }
            }
            _ => continue,
        };
        if settings.block_size == 0 {
            return Err(invalid_parameters(
                spec,
                "blockSize must be positive".to_owned(),
            ));
        }
        match &found {
            Some(previous) if *previous != settings => {
                return Err(invalid_parameters(
                    spec,
                    "prefix scorers disagree on the index settings (block size, seed, events port, redis)".to_owned(),
                ));
            }
            _ => found = Some(settings),
        }
    }
    Ok(found)
}

fn precise_settings(
    spec: &PluginSpec,
    p: PrecisePrefixParameters,
) -> Result<PrefixCacheSettings, ConfigError> {
    let defaults = PrefixCacheSettings::default();
    let indexer = p.indexer_config.unwrap_or_default();
    let processor = p
        .token_processor_config
        .or(indexer.token_processor_config)
        .unwrap_or_default();
    let hash_seed = match processor.hash_seed.as_deref().map(str::trim) {
        None | Some("") => 0,
        Some(seed) => seed.parse::<u64>().map_err(|_| {
            invalid_parameters(
                spec,
                format!("hashSeed {seed:?} must be an unsigned integer"),
            )
        })?,
    };
    let events = p.kv_events_config.unwrap_or_default();
    if events.discover_pods == Some(false) {
        return Err(invalid_parameters(
            spec,
            "kvEventsConfig.discoverPods: false is not supported; the scheduler subscribes to every pod".to_owned(),
        ));
    }
    Ok(PrefixCacheSettings {
        block_size: processor.block_size.unwrap_or(defaults.block_size),
        hash_seed,
        events_port: events
            .pod_discovery_config
            .and_then(|d| d.socket_port)
            .unwrap_or(defaults.events_port),
        redis_url: indexer
            .kv_block_index_config
            .and_then(|c| c.redis_config)
            .map(|r| r.address),
        topic_filter: events.topic_filter.unwrap_or(defaults.topic_filter),
    })
}

/// Parses each type's parameters once, so that unknown parameters are
/// reported whatever the plugin is used for.
fn validate_parameters(spec: &PluginSpec) -> Result<(), ConfigError> {
    match spec.plugin_type.as_str() {
        "load-aware-scorer" => parameters::<LoadAwareParameters>(spec).map(drop),
        "max-score-picker" => parameters::<PickerParameters>(spec).map(drop),
        "prefix-based-pd-decider" => parameters::<DeciderParameters>(spec).map(drop),
        "pd-profile-handler" => parameters::<PdHandlerParameters>(spec).map(drop),
        "prefill-header-handler" => parameters::<PrefillHeaderParameters>(spec).map(drop),
        "precise-prefix-cache-scorer" => parameters::<PrecisePrefixParameters>(spec).map(drop),
        "prefix-cache-scorer" => parameters::<PrefixCacheParameters>(spec).map(drop),
        _ => parameters::<NoParameters>(spec).map(drop),
    }
}

/// Builds the scheduler described by `config`. `index` serves the prefix
/// scorers; it must be given when the configuration has one (see
/// [`prefix_cache_settings`]).
pub fn build(
    config: &EndpointPickerConfig,
    index: Option<Arc<PrefixCache>>,
) -> Result<Scheduler, ConfigError> {
    prefix_cache_settings(config)?;
    let mut by_name: HashMap<&str, &PluginSpec> = HashMap::new();
    for spec in &config.plugins {
        if by_name.insert(spec.instance_name(), spec).is_some() {
            return Err(ConfigError::Invalid(format!(
                "plugin name {:?} is used twice",
                spec.instance_name()
            )));
        }
    }
    let mut profiles = Vec::new();
    for profile in &config.scheduling_profiles {
        profiles.push(build_profile(profile, &by_name, index.as_ref())?);
    }
    if profiles.is_empty() {
        return Err(ConfigError::Invalid(
            "schedulingProfiles is empty".to_owned(),
        ));
    }
    let handler = build_handler(config, &by_name, &profiles)?;
    Ok(Scheduler::new(profiles, handler))
}

fn build_profile(
    profile: &crate::config::ProfileSpec,
    by_name: &HashMap<&str, &PluginSpec>,
    index: Option<&Arc<PrefixCache>>,
) -> Result<Profile, ConfigError> {
    let mut built = Profile {
        name: profile.name.clone(),
        filters: Vec::new(),
        scorers: Vec::new(),
        picker: MaxScorePicker::default(),
    };
    let mut has_picker = false;
    for reference in &profile.plugins {
        let spec = by_name.get(reference.plugin_ref.as_str()).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "profile {:?} references undefined plugin {:?}",
                profile.name, reference.plugin_ref
            ))
        })?;
        let weight = reference.weight.unwrap_or(1.0);
        if !weight.is_finite() || weight < 0.0 {
            return Err(ConfigError::Invalid(format!(
                "profile {:?}: weight of {:?} must be a non-negative number",
                profile.name, reference.plugin_ref
            )));
        }
        let scorer = |kind| WeightedScorer {
            name: Identifier::new(spec.instance_name()),
            weight,
            kind,
        };
        match spec.plugin_type.as_str() {
            "decode-filter" => built.filters.push(RoleFilter::Decode),
            "prefill-filter" => built.filters.push(RoleFilter::Prefill),
            "queue-scorer" => built.scorers.push(scorer(ScorerKind::Queue)),
            "kv-cache-utilization-scorer" => {
                built.scorers.push(scorer(ScorerKind::KvCacheUtilization))
            }
            "load-aware-scorer" => {
                let p: LoadAwareParameters = parameters(spec)?;
                let threshold = p
                    .threshold
                    .filter(|t| *t > 0)
                    .map_or(DEFAULT_LOAD_THRESHOLD, |t| t as u64);
                built
                    .scorers
                    .push(scorer(ScorerKind::LoadAware { threshold }));
            }
            t if is_prefix_scorer(t) => {
                let index = index.cloned().ok_or_else(|| {
                    invalid_parameters(
                        spec,
                        "no KV block index is available for the prefix scorer".to_owned(),
                    )
                })?;
                built
                    .scorers
                    .push(scorer(ScorerKind::PrefixCache { cache: index }));
            }
            "max-score-picker" => {
                if has_picker {
                    return Err(ConfigError::Invalid(format!(
                        "profile {:?} has two pickers",
                        profile.name
                    )));
                }
                has_picker = true;
                let p: PickerParameters = parameters(spec)?;
                built.picker = MaxScorePicker {
                    max_endpoints: p.max_num_of_endpoints.unwrap_or(1).max(1),
                };
            }
            other => {
                return Err(ConfigError::Invalid(format!(
                    "profile {:?}: plugin {:?} of type {other} cannot run in a profile",
                    profile.name, reference.plugin_ref
                )));
            }
        }
    }
    Ok(built)
}

fn build_handler(
    config: &EndpointPickerConfig,
    by_name: &HashMap<&str, &PluginSpec>,
    profiles: &[Profile],
) -> Result<Handler, ConfigError> {
    let handlers: Vec<&PluginSpec> = config
        .plugins
        .iter()
        .filter(|p| p.plugin_type.ends_with("-profile-handler"))
        .collect();
    let profile_index = |name: &str| profiles.iter().position(|p| p.name == name);
    match handlers.as_slice() {
        [] => single_handler(profiles),
        [spec] if spec.plugin_type == "single-profile-handler" => single_handler(profiles),
        [spec] => {
            let p: PdHandlerParameters = parameters(spec)?;
            if p.primary_port.is_some_and(|port| port != 0) {
                return Err(invalid_parameters(
                    spec,
                    "primaryPort (data parallel) is not supported".to_owned(),
                ));
            }
            let decode_profile = p.decode_profile.unwrap_or_else(|| "decode".to_owned());
            let prefill_profile = prefill_profile_name(config, p.prefill_profile)?;
            let decider_name = p
                .decider_plugin_name
                .unwrap_or_else(|| "prefix-based-pd-decider".to_owned());
            let decider_spec = by_name
                .get(decider_name.as_str())
                .filter(|d| d.plugin_type == "prefix-based-pd-decider")
                .ok_or_else(|| invalid_parameters(spec, format!("deciderPluginName {decider_name:?} is not a prefix-based-pd-decider plugin")))?;
            let d: DeciderParameters = parameters(decider_spec)?;
            let non_cached_tokens = usize::try_from(d.non_cached_tokens).map_err(|_| {
                invalid_parameters(
                    decider_spec,
                    "nonCachedTokens cannot be negative".to_owned(),
                )
            })?;
            let (Some(decode), Some(prefill)) = (
                profile_index(&decode_profile),
                profile_index(&prefill_profile),
            ) else {
                return Err(invalid_parameters(
                    spec,
                    format!("profiles {decode_profile:?} and {prefill_profile:?} must both exist"),
                ));
            };
            Ok(Handler::Pd {
                handler: PdProfileHandler {
                    decode_profile,
                    prefill_profile,
                    decider: PrefixBasedPdDecider { non_cached_tokens },
                },
                decode,
                prefill,
            })
        }
        _ => Err(ConfigError::Invalid(
            "more than one profile handler is configured".to_owned(),
        )),
    }
}

fn single_handler(profiles: &[Profile]) -> Result<Handler, ConfigError> {
    if profiles.len() == 1 {
        Ok(Handler::Single)
    } else {
        Err(ConfigError::Invalid(format!(
            "{} scheduling profiles need pd-profile-handler; single-profile-handler runs exactly one",
            profiles.len()
        )))
    }
}

/// The prefill profile: the handler's parameter, else the header handler's,
/// else `prefill`.
fn prefill_profile_name(
    config: &EndpointPickerConfig,
    from_handler: Option<String>,
) -> Result<String, ConfigError> {
    if let Some(name) = from_handler {
        return Ok(name);
    }
    for spec in config
        .plugins
        .iter()
        .filter(|p| p.plugin_type == "prefill-header-handler")
    {
        let p: PrefillHeaderParameters = parameters(spec)?;
        if let Some(name) = p.prefill_profile {
            return Ok(name);
        }
    }
    Ok("prefill".to_owned())
}
