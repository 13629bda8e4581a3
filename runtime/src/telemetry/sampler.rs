//! `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`.

use super::env::EnvReader;
use opentelemetry_sdk::trace::Sampler;
use std::fmt;

/// The sampling ratio when none is given: llm-d samples 10% of new traces.
pub const DEFAULT_RATIO: f64 = 0.1;

/// The sampler chosen by `OTEL_TRACES_SAMPLER`, with its ratio.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SamplerSetting {
    /// `always_on`: every span.
    AlwaysOn,
    /// `always_off`: no span.
    AlwaysOff,
    /// `traceidratio`: this fraction of traces, ignoring the parent.
    TraceIdRatio(f64),
    /// `parentbased_always_on`: follow the parent; roots are sampled.
    ParentBasedAlwaysOn,
    /// `parentbased_always_off`: follow the parent; roots are not sampled.
    ParentBasedAlwaysOff,
    /// `parentbased_traceidratio` (the default, ratio 0.1): follow the
    /// parent; this fraction of roots is sampled.
    ParentBasedTraceIdRatio(f64),
}

impl Default for SamplerSetting {
    fn default() -> Self {
        SamplerSetting::ParentBasedTraceIdRatio(DEFAULT_RATIO)
    }
}

impl SamplerSetting {
    /// The SDK sampler for this setting.
    pub fn sampler(&self) -> Sampler {
        match *self {
            SamplerSetting::AlwaysOn => Sampler::AlwaysOn,
            SamplerSetting::AlwaysOff => Sampler::AlwaysOff,
            SamplerSetting::TraceIdRatio(ratio) => Sampler::TraceIdRatioBased(ratio),
            SamplerSetting::ParentBasedAlwaysOn => {
                Sampler::ParentBased(Box::new(Sampler::AlwaysOn))
            }
            SamplerSetting::ParentBasedAlwaysOff => {
                Sampler::ParentBased(Box::new(Sampler::AlwaysOff))
            }
            SamplerSetting::ParentBasedTraceIdRatio(ratio) => {
                Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)))
            }
        }
    }

    pub(crate) fn read<F: Fn(&str) -> Option<String>>(env: &mut EnvReader<F>) -> SamplerSetting {
        let name = env
            .get("OTEL_TRACES_SAMPLER")
            .map(|n| n.to_ascii_lowercase());
        let needs_ratio = matches!(
            name.as_deref(),
            None | Some("traceidratio" | "parentbased_traceidratio")
        );
        // The argument is read only by the ratio samplers (as the spec says).
        let ratio = if needs_ratio {
            env.parse_first(
                &["OTEL_TRACES_SAMPLER_ARG"],
                DEFAULT_RATIO,
                "a number between 0 and 1",
                |value| {
                    value
                        .parse::<f64>()
                        .ok()
                        .filter(|r| (0.0..=1.0).contains(r))
                },
            )
        } else {
            DEFAULT_RATIO
        };
        match name.as_deref() {
            None | Some("parentbased_traceidratio") => {
                SamplerSetting::ParentBasedTraceIdRatio(ratio)
            }
            Some("traceidratio") => SamplerSetting::TraceIdRatio(ratio),
            Some("always_on") => SamplerSetting::AlwaysOn,
            Some("always_off") => SamplerSetting::AlwaysOff,
            Some("parentbased_always_on") => SamplerSetting::ParentBasedAlwaysOn,
            Some("parentbased_always_off") => SamplerSetting::ParentBasedAlwaysOff,
            Some(unknown) => {
                let fallback = SamplerSetting::default();
                env.warn(
                    "OTEL_TRACES_SAMPLER",
                    unknown,
                    format!(
                        "unknown sampler (known: always_on, always_off, traceidratio, \
                         parentbased_always_on, parentbased_always_off, \
                         parentbased_traceidratio); using {fallback}"
                    ),
                );
                fallback
            }
        }
    }
}

impl fmt::Display for SamplerSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SamplerSetting::AlwaysOn => f.write_str("always_on"),
            SamplerSetting::AlwaysOff => f.write_str("always_off"),
            SamplerSetting::TraceIdRatio(ratio) => write!(f, "traceidratio with ratio {ratio}"),
            SamplerSetting::ParentBasedAlwaysOn => f.write_str("parentbased_always_on"),
            SamplerSetting::ParentBasedAlwaysOff => f.write_str("parentbased_always_off"),
            SamplerSetting::ParentBasedTraceIdRatio(ratio) => {
                write!(f, "parentbased_traceidratio with ratio {ratio}")
            }
        }
    }
}
