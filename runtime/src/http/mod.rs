//! Tracing for HTTP servers and clients.
//!
//! - [`ServerTraceLayer`]: a tower layer for axum servers that traces each
//!   request with a SERVER span parented on the caller's W3C context and
//!   ended when the response body ends.
//! - [`RequestBuilderExt::inject_context`]: carries the current span's
//!   context on an outbound `reqwest` call
//!   ([`crate::propagation::inject_current`] for other clients).
//! - [`install_crypto_provider`]: the rustls provider every TLS client and
//!   server of the workspace needs.
//! - [`is_connection_refused`]: whether a client error means nothing
//!   listens at the upstream's address.
//! - [`OriginPool`]: kept-alive connections to one origin, plain or over
//!   TLS ([`upstream_tls_config`]), for a proxy's calls to its local
//!   server; [`OriginPools`], one per origin (by socket address or by
//!   authority, [`OriginKey`]), for calls to many (the scheduler's pods, the
//!   pd-proxy's prefillers), with [`json_post`].

mod body;
mod client;
mod crypto;
mod open_span;
mod origin_pool;
mod plain_http;
mod refused;
mod semconv;
mod server;
mod upstream_tls;

pub use body::TracedBody;
pub use client::RequestBuilderExt;
pub use crypto::install_crypto_provider;
pub use origin_pool::{
    DEFAULT_MAX_IDLE, OriginError, OriginKey, OriginPool, OriginPools, PooledBody,
};
pub use plain_http::json_post;
pub use refused::is_connection_refused;
pub use semconv::server_error_type;
pub use server::{ResponseFuture, ServerTrace, ServerTraceLayer};
pub use upstream_tls::upstream_tls_config;
