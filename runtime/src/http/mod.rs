//! Tracing for HTTP servers and clients.
//!
//! - [`ServerTraceLayer`]: a tower layer for axum servers that traces each
//!   request with a SERVER span parented on the caller's W3C context and
//!   ended when the response body ends.
//! - [`RequestBuilderExt::inject_context`]: carries the current span's
//!   context on an outbound `reqwest` call
//!   ([`crate::propagation::inject_current`] for other clients).

mod body;
mod client;
mod open_span;
mod semconv;
mod server;

pub use body::TracedBody;
pub use client::RequestBuilderExt;
pub use semconv::server_error_type;
pub use server::{ResponseFuture, ServerTrace, ServerTraceLayer};
