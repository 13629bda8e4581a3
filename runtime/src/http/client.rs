//! Outbound calls: carry the calling span's context to the next service.

use crate::propagation;
use ::http::HeaderMap;

/// Adds trace context to a `reqwest` request.
pub trait RequestBuilderExt {
    /// Sets `traceparent`, `tracestate` and `baggage` from the *current*
    /// context, the span making this call, replacing any value set earlier
    /// on the builder (such as an inbound header copied through). When the
    /// current context carries nothing, nothing is added.
    ///
    /// For a built `reqwest::Request` or any other `HeaderMap` (hyper,
    /// tonic metadata), use [`propagation::inject_current`].
    fn inject_context(self) -> Self;
}

impl RequestBuilderExt for reqwest::RequestBuilder {
    fn inject_context(self) -> Self {
        let mut headers = HeaderMap::new();
        propagation::inject_current(&mut headers);
        if headers.is_empty() {
            self
        } else {
            self.headers(headers)
        }
    }
}
