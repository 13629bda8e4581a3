//! A server span carried from the response future into the response body.

use crate::span::Started;
use opentelemetry::ContextGuard;

/// Owns a started span until it is ended explicitly or dropped (a cancelled
/// request or an abandoned body still ends its span).
#[derive(Debug)]
pub(crate) struct OpenSpan(Option<Started>);

impl OpenSpan {
    pub(crate) fn new(started: Started) -> OpenSpan {
        OpenSpan(Some(started))
    }

    /// Makes the span's context current on this thread until the guard
    /// drops; `None` when there is nothing to make current.
    pub(crate) fn attach(&self) -> Option<ContextGuard> {
        self.0
            .as_ref()
            .and_then(Started::context)
            .map(|cx| cx.clone().attach())
    }

    /// The span, while it is open.
    pub(crate) fn started(&self) -> Option<&Started> {
        self.0.as_ref()
    }

    /// Moves the span out, leaving this value closed.
    pub(crate) fn take(&mut self) -> OpenSpan {
        OpenSpan(self.0.take())
    }

    /// Marks the span as failed with a static `error.type` and ends it.
    pub(crate) fn fail(&mut self, error_type: &'static str) {
        if let Some(started) = &self.0 {
            started.set_error(error_type);
        }
        self.end();
    }

    /// Ends the span now; later calls do nothing.
    pub(crate) fn end(&mut self) {
        if let Some(started) = self.0.take() {
            started.end();
        }
    }
}

impl Drop for OpenSpan {
    fn drop(&mut self) {
        self.end();
    }
}
