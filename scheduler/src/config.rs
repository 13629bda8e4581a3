//! The llm-d `EndpointPickerConfig` file: plugin instances and the
//! scheduling profiles that use them.
//!
//! ```yaml
//! apiVersion: llm-d.ai/v1alpha1
//! kind: EndpointPickerConfig
//! plugins:
//! - type: queue-scorer
//! - {type: decode-filter, name: decode}
//! schedulingProfiles:
//! - name: default
//!   plugins:
//!   - pluginRef: decode
//!   - pluginRef: queue-scorer
//!     weight: 2
//! ```
//!
//! Parsing only checks the file's shape; [`crate::plugins::build`] turns it
//! into plugins and rejects unknown types and parameters.

use serde::Deserialize;
use std::path::Path;

/// API versions accepted: llm-d's and the Gateway API Inference Extension's.
pub const API_VERSIONS: &[&str] = &[
    "llm-d.ai/v1alpha1",
    "inference.networking.x-k8s.io/v1alpha1",
];

/// The only kind accepted.
pub const KIND: &str = "EndpointPickerConfig";

/// The configuration used when none is given: decode pods scored on
/// prefix-cache hits, queue depth and KV-cache utilisation.
pub const DEFAULT_CONFIG: &str = "\
apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: decode-filter
- type: precise-prefix-cache-scorer
- type: queue-scorer
- type: kv-cache-utilization-scorer
- type: max-score-picker
- type: single-profile-handler
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: decode-filter
  - pluginRef: precise-prefix-cache-scorer
    weight: 3
  - pluginRef: queue-scorer
    weight: 2
  - pluginRef: kv-cache-utilization-scorer
    weight: 2
  - pluginRef: max-score-picker
";

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read scheduler config {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML is malformed or has the wrong shape.
    #[error("scheduler config: {0}")]
    Syntax(String),
    /// `apiVersion` or `kind` is not the expected one.
    #[error("scheduler config: {field} {found:?} is not supported (expected {expected})")]
    Header {
        /// `apiVersion` or `kind`.
        field: &'static str,
        /// The value found.
        found: String,
        /// What is accepted.
        expected: String,
    },
    /// A plugin type that does not exist.
    #[error("scheduler config: plugin {name:?} has unknown type {plugin_type:?}")]
    UnknownType {
        /// The plugin's name.
        name: String,
        /// The type given.
        plugin_type: String,
    },
    /// A plugin's parameters do not fit its type.
    #[error("scheduler config: plugin {name:?} ({plugin_type}): {message}")]
    Parameters {
        /// The plugin's name.
        name: String,
        /// Its type.
        plugin_type: String,
        /// What is wrong (names the offending parameter).
        message: String,
    },
    /// The plugins and profiles do not fit together.
    #[error("scheduler config: {0}")]
    Invalid(String),
}

/// The parsed file.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointPickerConfig {
    /// `apiVersion`.
    #[serde(default)]
    pub api_version: Option<String>,
    /// `kind`.
    #[serde(default)]
    pub kind: Option<String>,
    /// Feature gates; accepted for compatibility, they change nothing here.
    #[serde(default)]
    pub feature_gates: Option<serde_yaml_ng::Value>,
    /// Plugin instances.
    pub plugins: Vec<PluginSpec>,
    /// Scheduling profiles.
    pub scheduling_profiles: Vec<ProfileSpec>,
}

/// One plugin instance.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSpec {
    /// The plugin type, e.g. `queue-scorer`.
    #[serde(rename = "type")]
    pub plugin_type: String,
    /// The instance name; defaults to the type.
    #[serde(default)]
    pub name: Option<String>,
    /// Type-specific parameters.
    #[serde(default)]
    pub parameters: Option<serde_yaml_ng::Value>,
}

impl PluginSpec {
    /// The instance name (the type when no name is given).
    pub fn instance_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.plugin_type)
    }
}

/// One scheduling profile.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSpec {
    /// The profile name, e.g. `decode`.
    pub name: String,
    /// The plugins it runs, by reference.
    pub plugins: Vec<PluginRef>,
}

/// A reference from a profile to a plugin instance.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginRef {
    /// The plugin's instance name.
    pub plugin_ref: String,
    /// The weight, for scorers (default 1).
    #[serde(default)]
    pub weight: Option<f64>,
}

impl EndpointPickerConfig {
    /// Parses a configuration's text; syntax errors name line and column.
    pub fn parse(text: &str) -> Result<EndpointPickerConfig, ConfigError> {
        let config: EndpointPickerConfig =
            serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        if let Some(version) = config
            .api_version
            .as_ref()
            .filter(|v| !API_VERSIONS.contains(&v.as_str()))
        {
            return Err(ConfigError::Header {
                field: "apiVersion",
                found: version.clone(),
                expected: API_VERSIONS.join(" or "),
            });
        }
        if let Some(kind) = config.kind.as_ref().filter(|k| *k != KIND) {
            return Err(ConfigError::Header {
                field: "kind",
                found: kind.clone(),
                expected: KIND.to_owned(),
            });
        }
        Ok(config)
    }

    /// Reads and parses a configuration file.
    pub fn load(path: &Path) -> Result<EndpointPickerConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        EndpointPickerConfig::parse(&text)
    }

    /// The built-in default configuration.
    pub fn default_config() -> EndpointPickerConfig {
        // The built-in text is a constant checked by a test.
        EndpointPickerConfig::parse(DEFAULT_CONFIG).unwrap_or_else(|e| unreachable!("{e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_parses() {
        let config = EndpointPickerConfig::parse(DEFAULT_CONFIG).unwrap();
        assert_eq!(config.plugins.len(), 6);
        assert_eq!(config.scheduling_profiles[0].plugins[1].weight, Some(3.0));
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = EndpointPickerConfig::parse(
            "kind: EndpointPickerConfig\nplugins:\n- type: [\nschedulingProfiles: []\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("line 4") || err.contains("line 3"), "{err}");
        let err = EndpointPickerConfig::parse("plugins: []\nschedulingProfiles: []\nextra: 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("extra") && err.contains("line 3"), "{err}");
    }

    #[test]
    fn wrong_header_is_rejected() {
        let err =
            EndpointPickerConfig::parse("apiVersion: v2\nplugins: []\nschedulingProfiles: []\n")
                .unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Header {
                    field: "apiVersion",
                    ..
                }
            ),
            "{err}"
        );
        let err = EndpointPickerConfig::parse("kind: Pod\nplugins: []\nschedulingProfiles: []\n")
            .unwrap_err();
        assert!(
            matches!(err, ConfigError::Header { field: "kind", .. }),
            "{err}"
        );
    }
}
