//! A problem found while starting telemetry: reported, never fatal.

use std::fmt;

/// One problem with the telemetry setup, with the fallback that was used
/// instead. Telemetry never stops the service: every bad setting becomes
/// one of these and the service keeps serving.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// What the problem is about: an environment variable name, or a
    /// component such as `span export` or `logging`.
    pub subject: &'static str,
    /// The offending value (empty when there is none to show; header values
    /// are never shown, they often hold credentials).
    pub value: String,
    /// What is wrong and which fallback is used.
    pub message: String,
}

impl Warning {
    pub(crate) fn new(
        subject: &'static str,
        value: impl Into<String>,
        message: impl Into<String>,
    ) -> Warning {
        Warning {
            subject,
            value: value.into(),
            message: message.into(),
        }
    }

    /// Writes the warning to the log.
    pub(crate) fn log(&self) {
        tracing::warn!(target: "llmd_runtime::telemetry", "{self}");
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}: {}", self.subject, self.message)
        } else {
            write!(f, "{}={:?}: {}", self.subject, self.value, self.message)
        }
    }
}
