//! Shared by the HTTP integration tests: real loopback servers and clients.

use axum::Router;
use std::net::SocketAddr;

/// Serves `router` on an ephemeral loopback port until the test process
/// ends; returns the bound address.
pub async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("a local address");
    tokio::spawn(async move { axum::serve(listener, router).await.expect("serve") });
    addr
}

/// A plain-HTTP client that ignores proxy settings of the environment.
pub fn client() -> reqwest::Client {
    llmd_runtime::http::install_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a reqwest client")
}

/// The header value of a parent span, in `traceparent` form.
pub fn traceparent(trace_id: &str, span_id: &str, sampled: bool) -> String {
    format!(
        "00-{trace_id}-{span_id}-{}",
        if sampled { "01" } else { "00" }
    )
}

pub const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
pub const SPAN_ID: &str = "00f067aa0ba902b7";
