//! The response body of a traced request: it keeps the server span open
//! until the last frame is sent, so streamed (SSE) responses are timed to
//! their end rather than to their headers.

use super::open_span::OpenSpan;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

/// `error.type` of a span whose response body failed mid-stream.
const BODY_ERROR: &str = "response_body";

pin_project_lite::pin_project! {
    /// A response body that ends its request's server span after the last
    /// frame, on error, or when dropped unfinished. The span's context is
    /// current while the body is polled, so stream stages can record on it
    /// (for example with [`crate::span::add_event_current`]).
    #[derive(Debug)]
    pub struct TracedBody<B> {
        #[pin]
        inner: B,
        span: OpenSpan,
    }
}

impl<B> TracedBody<B> {
    pub(crate) fn new(inner: B, span: OpenSpan) -> TracedBody<B> {
        TracedBody { inner, span }
    }
}

impl<B: Body> Body for TracedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        task: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        let _attached = this.span.attach();
        let poll = this.inner.as_mut().poll_frame(task);
        match &poll {
            Poll::Ready(None) => this.span.end(),
            Poll::Ready(Some(Err(_))) => this.span.fail(BODY_ERROR),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.span.end(),
            Poll::Ready(Some(Ok(_))) | Poll::Pending => {}
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
