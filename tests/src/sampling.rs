//! The sampler every child process gets: `OTEL_TRACES_SAMPLER` and
//! `OTEL_TRACES_SAMPLER_ARG`, parent-based ratio sampling at 1.0 unless
//! the user's environment says otherwise.

/// The sampler name used when the environment names none.
pub const DEFAULT_SAMPLER: &str = "parentbased_traceidratio";

/// The ratio used when the environment gives none: every trace, for the
/// demo.
pub const DEFAULT_RATIO: &str = "1.0";

/// `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` for the children.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sampling {
    /// `OTEL_TRACES_SAMPLER`.
    pub sampler: String,
    /// `OTEL_TRACES_SAMPLER_ARG`.
    pub arg: String,
}

impl Sampling {
    /// `parentbased_traceidratio` at `ratio`.
    pub fn ratio(ratio: f64) -> Sampling {
        Sampling {
            sampler: DEFAULT_SAMPLER.to_owned(),
            arg: format!("{ratio:?}"),
        }
    }

    /// The user's `OTEL_TRACES_SAMPLER(_ARG)` as read by `lookup`, each
    /// defaulting to `parentbased_traceidratio` / `1.0`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Sampling {
        let set = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        Sampling {
            sampler: set("OTEL_TRACES_SAMPLER").unwrap_or_else(|| DEFAULT_SAMPLER.to_owned()),
            arg: set("OTEL_TRACES_SAMPLER_ARG").unwrap_or_else(|| DEFAULT_RATIO.to_owned()),
        }
    }

    /// Whether every new trace is sampled, so every request of the demo
    /// must produce a trace.
    pub fn samples_everything(&self) -> bool {
        match self.sampler.to_ascii_lowercase().as_str() {
            "always_on" | "parentbased_always_on" => true,
            "traceidratio" | "parentbased_traceidratio" => self
                .arg
                .trim()
                .parse::<f64>()
                .is_ok_and(|ratio| ratio >= 1.0),
            _ => false,
        }
    }

    /// The environment variables.
    pub fn env(&self) -> [(String, String); 2] {
        [
            ("OTEL_TRACES_SAMPLER".to_owned(), self.sampler.clone()),
            ("OTEL_TRACES_SAMPLER_ARG".to_owned(), self.arg.clone()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_to_parent_based_ratio_one_and_user_values_win() {
        let none = Sampling::from_lookup(|_| None);
        assert_eq!(none, Sampling::ratio(1.0));
        assert!(none.samples_everything());
        let user = Sampling::from_lookup(|name| {
            (name == "OTEL_TRACES_SAMPLER_ARG").then(|| "0.1".to_owned())
        });
        assert_eq!(user.sampler, DEFAULT_SAMPLER);
        assert_eq!(user.arg, "0.1");
        assert!(!user.samples_everything());
        let off = Sampling::from_lookup(|name| {
            (name == "OTEL_TRACES_SAMPLER").then(|| "always_off".to_owned())
        });
        assert!(!off.samples_everything());
    }
}
