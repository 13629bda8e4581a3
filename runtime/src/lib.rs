//! `llmd-runtime`: the telemetry foundation of llmd-rs.
//!
//! - [`attributes`]: the registry of `llm_d.*` and `gen_ai.*` keys and the
//!   value types that make span attributes metadata by construction.
//! - [`span`]: starting, entering and ending spans cheaply; what
//!   `#[traced_span]` expands to.
//! - [`state`]: the process-wide tracer those spans start on.
//! - [`ErrorType`]: the static `error.type` of an error.

pub mod attributes;
mod error;
pub mod span;
pub mod state;
#[cfg(feature = "testing")]
pub mod testing;

pub use attributes::{AttributeEnum, Identifier, Sensitive};
pub use error::ErrorType;
pub use opentelemetry::Context;
pub use opentelemetry::context::FutureExt;
