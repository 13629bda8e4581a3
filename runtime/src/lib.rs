//! `llmd-runtime`: the telemetry foundation of llmd-rs.
//!
//! - [`attributes`]: the registry of `llm_d.*` and `gen_ai.*` keys and the
//!   value types that make span attributes metadata by construction.
//! - [`span`]: starting, entering and ending spans cheaply; what
//!   `#[traced_span]` expands to.
//! - [`state`]: the process-wide tracer those spans start on.
//! - [`propagation`]: W3C `traceparent`/`tracestate` and `baggage` over
//!   HTTP headers.
//! - [`http`]: the server tracing layer and outbound-call helpers.
//! - [`telemetry`]: one-call start-up from `OTEL_*` (sampler, exporter,
//!   bounded batch export, propagators) and trace-correlated logs.
//! - [`ErrorType`]: the static `error.type` of an error.
//!
//! # Declaring spans
//!
//! Functions are traced with `#[traced_span]` (re-exported from
//! `llmd-macros`; see `docs/traced-span.md`). Keys, names and value types are
//! checked at compile time, and attribute expressions run only for spans
//! that are recorded:
//!
//! ```
//! use llmd_runtime::{ErrorType, Identifier, record, traced_span};
//!
//! #[derive(Debug, PartialEq, ErrorType)]
//! enum PickError {
//!     NoEndpoint,
//! }
//!
//! #[traced_span(
//!     "llm_d.epp.profile_handler.pick",
//!     attrs(gen_ai.request.model = model, llm_d.epp.profile_handler.total_profiles = 2),
//!     err,
//! )]
//! fn pick(model: &Identifier, pods: &[&'static str]) -> Result<&'static str, PickError> {
//!     let chosen = pods.first().copied().ok_or(PickError::NoEndpoint)?;
//!     record!(llm_d.epp.pd.disaggregation_used = false);
//!     Ok(chosen)
//! }
//!
//! let model = Identifier::new("meta-llama/Llama-3.1-8B");
//! assert_eq!(pick(&model, &["10.0.0.7:8000"]), Ok("10.0.0.7:8000"));
//! assert!(pick(&model, &[]).is_err());
//! ```

pub mod attributes;
mod error;
pub mod http;
pub mod propagation;
mod recent;
pub mod routing;
pub mod shutdown;
pub mod span;
pub mod state;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

pub use attributes::{AttributeEnum, Identifier, Sensitive};
pub use error::ErrorType;
pub use llmd_macros::{ErrorType, attributes, event, record, traced_span};
pub use opentelemetry::Context;
pub use opentelemetry::context::FutureExt;
