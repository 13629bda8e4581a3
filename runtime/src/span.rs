//! Starting, entering and ending spans: what `#[traced_span]` and the HTTP
//! layers expand to.
//!
//! The path is built so that a span that will not be recorded costs next to
//! nothing: when telemetry is off, or the parent is a valid span that is not
//! sampled and the sampler respects that, [`start`] returns without touching
//! the SDK, without evaluating attribute expressions and without changing
//! the current context (so outbound calls still carry the parent's context,
//! with the sampled flag 0).

use crate::error::ErrorType;
use crate::state::{self, Installed};
use opentelemetry::trace::{SpanBuilder, SpanId, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, ContextGuard, KeyValue};
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

pub use opentelemetry::trace::{SpanKind, SpanRef};

/// The static description of a span: its name and kind.
#[derive(Debug)]
pub struct SpanMeta {
    name: &'static str,
    kind: SpanKind,
    later_attributes: usize,
}

impl SpanMeta {
    /// Describes a span.
    pub const fn new(name: &'static str, kind: SpanKind) -> SpanMeta {
        SpanMeta {
            name,
            kind,
            later_attributes: 0,
        }
    }

    /// Declares that code the span's starter does not see records about
    /// `count` more attributes on it, so that the span's attribute list is
    /// made with room for them instead of growing and moving. Read by
    /// [`crate::http::ServerTraceLayer`], whose span the application's
    /// handlers record on; `#[traced_span]` counts the `record!` keys of
    /// its own body instead.
    pub const fn with_later_attributes(mut self, count: usize) -> SpanMeta {
        self.later_attributes = count;
        self
    }

    /// The span's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// The attributes expected after the start, as declared with
    /// [`SpanMeta::with_later_attributes`].
    pub const fn later_attributes(&self) -> usize {
        self.later_attributes
    }
}

/// The outcome of [`start`].
#[derive(Debug)]
#[must_use = "a started span must be entered, instrumented or ended"]
pub enum Started {
    /// Nothing is recorded and the current context is left as it is.
    Skipped,
    /// Nothing is recorded, but this context (an explicit parent) becomes
    /// current, so outbound calls carry it.
    Adopted(Context),
    /// A span was started; it is the active span of this context and is
    /// ended by this value.
    Owned(Context),
}

/// Starts a span of `meta` under `parent`, or under the current context
/// when `parent` is `None`. `attributes` is called only when the span is
/// recorded.
#[inline]
pub fn start<A, F>(meta: &'static SpanMeta, parent: Option<&Context>, attributes: F) -> Started
where
    F: FnOnce() -> A,
    A: IntoIterator<Item = KeyValue> + Into<Vec<KeyValue>>,
{
    let Some(installed) = state::installed() else {
        return match parent {
            Some(parent) => Started::Adopted(parent.clone()),
            None => Started::Skipped,
        };
    };
    match parent {
        Some(parent) => start_under(installed, meta, parent, true, attributes),
        None => {
            Context::map_current(|current| start_under(installed, meta, current, false, attributes))
        }
    }
}

#[inline]
fn start_under<A, F>(
    installed: &Installed,
    meta: &'static SpanMeta,
    parent: &Context,
    explicit: bool,
    attributes: F,
) -> Started
where
    F: FnOnce() -> A,
    A: IntoIterator<Item = KeyValue> + Into<Vec<KeyValue>>,
{
    let parent_span = parent.span();
    let psc = parent_span.span_context();
    let follows_parent = psc.is_valid() && installed.respects_unsampled_parent;
    if follows_parent && !psc.is_sampled() {
        return if explicit {
            Started::Adopted(parent.clone())
        } else {
            Started::Skipped
        };
    }
    start_recorded(installed, meta, parent, follows_parent, attributes)
}

/// Starts a span on the SDK. When the sampler follows a sampled parent the
/// span will be recorded, so the attributes go in the builder (the SDK's
/// cheapest path), as the list the span keeps: an array becomes it in one
/// move, a `Vec` (made with room for later attributes) is it, where
/// `SpanBuilder::with_attributes` would collect either again. Otherwise
/// they are evaluated only once the sampler has decided to record.
///
/// Kept out of line: inlined, its frame (the builder) would be set up in
/// the context lookup that unsampled spans also run (12 more instructions
/// for them, against 4 fewer here).
#[inline(never)]
fn start_recorded<A, F>(
    installed: &Installed,
    meta: &'static SpanMeta,
    parent: &Context,
    follows_sampled_parent: bool,
    attributes: F,
) -> Started
where
    F: FnOnce() -> A,
    A: IntoIterator<Item = KeyValue> + Into<Vec<KeyValue>>,
{
    let mut builder = SpanBuilder::from_name(meta.name).with_kind(meta.kind.clone());
    if follows_sampled_parent {
        builder.attributes = Some(attributes().into());
        let span = installed.tracer.build_with_context(builder, parent);
        return Started::Owned(parent.with_span(span));
    }
    let mut span = installed.tracer.build_with_context(builder, parent);
    if opentelemetry::trace::Span::is_recording(&span) {
        opentelemetry::trace::Span::set_attributes(&mut span, attributes());
    }
    Started::Owned(parent.with_span(span))
}

impl Started {
    /// The context that is current inside the span, if it differs from the
    /// caller's.
    pub fn context(&self) -> Option<&Context> {
        match self {
            Started::Skipped => None,
            Started::Adopted(cx) | Started::Owned(cx) => Some(cx),
        }
    }

    /// Whether the span is recorded (attributes set on it are exported).
    pub fn is_recording(&self) -> bool {
        match self {
            Started::Owned(cx) => cx.span().span_context().is_sampled(),
            _ => false,
        }
    }

    /// Makes the span current on this thread until the returned guard drops,
    /// which also ends the span. For synchronous code only.
    #[inline]
    pub fn enter(self) -> Entered {
        match self {
            Started::Skipped => Entered {
                owned: None,
                _guard: None,
            },
            Started::Adopted(cx) => Entered {
                owned: None,
                _guard: Some(cx.attach()),
            },
            Started::Owned(cx) => Entered {
                owned: Some(cx.span().span_context().span_id()),
                _guard: Some(cx.attach()),
            },
        }
    }

    /// Makes the span current while `future` is polled, and ends it when the
    /// future completes or is dropped.
    pub fn instrument<F: Future>(self, future: F) -> Instrumented<F, Ignore> {
        self.instrument_recording(future)
    }

    /// Like [`Started::instrument`], and records the output with `R` (for
    /// example [`RecordErr`]) before the span ends.
    pub fn instrument_recording<F, R>(self, future: F) -> Instrumented<F, R>
    where
        F: Future,
        R: RecordOutput<F::Output>,
    {
        Instrumented {
            inner: future,
            started: self,
            record: PhantomData,
        }
    }

    /// Records `output` with `R` on the span.
    pub fn record_output<R: RecordOutput<O>, O>(&self, output: &O) {
        if let Started::Owned(cx) = self {
            R::record(output, &cx.span());
        }
    }

    /// Sets attributes on the span, if it is recorded.
    pub fn set_attributes<A, F>(&self, attributes: F)
    where
        F: FnOnce() -> A,
        A: IntoIterator<Item = KeyValue>,
    {
        if let Started::Owned(cx) = self
            && self.is_recording()
        {
            cx.span().set_attributes(attributes());
        }
    }

    /// Marks the span as failed with a static `error.type`.
    pub fn set_error(&self, error_type: &'static str) {
        if let Started::Owned(cx) = self {
            mark_error(&cx.span(), error_type);
        }
    }

    /// Ends the span now. [`Entered`] and [`Instrumented`] end it themselves;
    /// a `Started` that is simply dropped ends its span when the last clone
    /// of its context goes.
    pub fn end(mut self) {
        self.finish();
    }

    #[inline]
    fn finish(&mut self) {
        if let Started::Owned(cx) = self {
            end(&cx.span());
            *self = Started::Skipped;
        }
    }
}

/// Ends `span`, marking it failed with `error.type = "panic"` when the
/// thread is unwinding.
fn end(span: &SpanRef<'_>) {
    if std::thread::panicking() {
        mark_error(span, "panic");
    }
    span.end();
}

/// Marks `span` as failed: status Error and `error.type`, both the static
/// label, never an error message.
pub fn mark_error(span: &SpanRef<'_>, error_type: &'static str) {
    span.set_attribute(KeyValue::new("error.type", error_type));
    span.set_status(Status::error(error_type));
}

/// A span made current on this thread by [`Started::enter`].
///
/// The context is attached as is (not cloned); the span is reached through
/// the current context, and only if it is still the one this guard entered.
#[derive(Debug)]
pub struct Entered {
    owned: Option<SpanId>,
    _guard: Option<ContextGuard>,
}

impl Entered {
    /// Records `output` with `R` on the span.
    #[inline]
    pub fn record_output<R: RecordOutput<O>, O>(&self, output: &O) {
        self.with_span(|span| R::record(output, span));
    }

    /// Runs `body` in the span, records its output with `R` (for example
    /// [`RecordErr`]) and ends the span. What a sync `#[traced_span(err)]`
    /// function expands to: `?` and `return` in the body end up in the
    /// recorded output.
    #[inline]
    pub fn run<R, O, F>(self, body: F) -> O
    where
        F: FnOnce() -> O,
        R: RecordOutput<O>,
    {
        let output = body();
        self.record_output::<R, O>(&output);
        output
    }

    #[inline]
    fn with_span(&self, f: impl FnOnce(&SpanRef<'_>)) {
        if let Some(id) = self.owned {
            Context::map_current(|cx| {
                let span = cx.span();
                if span.span_context().span_id() == id {
                    f(&span);
                }
            });
        }
    }
}

impl Drop for Entered {
    #[inline]
    fn drop(&mut self) {
        // End the span before the guard restores the caller's context.
        self.with_span(end);
    }
}

/// Records a function's output on its span.
#[diagnostic::on_unimplemented(
    message = "`err` needs the function to return `Result<_, E>` with `E: llmd_runtime::ErrorType`, not `{O}`",
    label = "this output cannot be recorded"
)]
pub trait RecordOutput<O> {
    /// Records `output` on `span`.
    fn record(output: &O, span: &SpanRef<'_>);
}

/// Records nothing.
#[derive(Debug)]
pub enum Ignore {}

impl<O> RecordOutput<O> for Ignore {
    #[inline]
    fn record(_: &O, _: &SpanRef<'_>) {}
}

/// On `Err(e)`, sets status Error and `error.type` from [`ErrorType`].
#[derive(Debug)]
pub enum RecordErr {}

impl<T, E: ErrorType> RecordOutput<Result<T, E>> for RecordErr {
    #[inline]
    fn record(output: &Result<T, E>, span: &SpanRef<'_>) {
        if let Err(error) = output {
            mark_error(span, error.error_type());
        }
    }
}

pin_project_lite::pin_project! {
    /// A future whose span is current while it is polled, and ended when it
    /// completes or is dropped (so cancelled and panicking futures still
    /// export their span).
    #[must_use = "futures do nothing unless polled"]
    pub struct Instrumented<F, R> {
        #[pin]
        inner: F,
        started: Started,
        record: PhantomData<fn() -> R>,
    }

    impl<F, R> PinnedDrop for Instrumented<F, R> {
        fn drop(this: Pin<&mut Self>) {
            this.project().started.finish();
        }
    }
}

impl<F, R> Future for Instrumented<F, R>
where
    F: Future,
    R: RecordOutput<F::Output>,
{
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, task: &mut TaskContext<'_>) -> Poll<F::Output> {
        let this = self.project();
        let Some(cx) = this.started.context() else {
            return this.inner.poll(task);
        };
        let _attached = cx.clone().attach();
        let unwind = EndOnUnwind(this.started);
        let poll = this.inner.poll(task);
        if let Poll::Ready(output) = &poll {
            unwind.0.record_output::<R, F::Output>(output);
            unwind.0.finish();
        }
        poll
    }
}

/// Ends the span if the inner poll panics, so the span is not lost.
struct EndOnUnwind<'a>(&'a mut Started);

impl Drop for EndOnUnwind<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.finish();
        }
    }
}

/// Sets attributes on the current span, if it is recorded. What `record!`
/// expands to; `attributes` is called only for a recorded span.
#[inline]
pub fn record_current<A, F>(attributes: F)
where
    F: FnOnce() -> A,
    A: IntoIterator<Item = KeyValue>,
{
    with_recorded_current(|span| span.set_attributes(attributes()));
}

/// Adds an event to the current span, if it is recorded. What `event!`
/// expands to; `attributes` is called only for a recorded span.
#[inline]
pub fn add_event_current<A, F>(name: &'static str, attributes: F)
where
    F: FnOnce() -> A,
    A: IntoIterator<Item = KeyValue>,
{
    with_recorded_current(|span| span.add_event(name, attributes().into_iter().collect()));
}

/// Marks the current span as failed (status Error and `error.type`), if it
/// is recorded; for failures found in the middle of a span's body.
#[inline]
pub fn mark_current_error(error_type: &'static str) {
    with_recorded_current(|span| mark_error(span, error_type));
}

/// Runs `f` on the current span if it is recorded (sampled); does nothing,
/// cheaply, otherwise.
#[inline]
fn with_recorded_current(f: impl FnOnce(&SpanRef<'_>)) {
    if !state::enabled() {
        return;
    }
    Context::map_current(|cx| {
        let span = cx.span();
        if span.span_context().is_sampled() {
            f(&span);
        }
    });
}

/// An explicit parent for [`start`]: a [`Context`], a reference to one, or
/// an `Option` of either (`None` means the current context).
#[diagnostic::on_unimplemented(
    message = "`parent = ..` needs a `Context`, a `&Context` or an `Option` of either, not `{Self}`",
    label = "not a parent context"
)]
pub trait ParentContext {
    /// The parent, if one is given.
    fn as_parent(&self) -> Option<&Context>;
}

impl ParentContext for Context {
    #[inline]
    fn as_parent(&self) -> Option<&Context> {
        Some(self)
    }
}

impl<T: ParentContext + ?Sized> ParentContext for &T {
    #[inline]
    fn as_parent(&self) -> Option<&Context> {
        (**self).as_parent()
    }
}

impl<T: ParentContext> ParentContext for Option<T> {
    #[inline]
    fn as_parent(&self) -> Option<&Context> {
        self.as_ref().and_then(ParentContext::as_parent)
    }
}

/// The attributes of a span declared without any.
#[inline(always)]
pub fn no_attributes() -> [KeyValue; 0] {
    []
}

/// The attributes of a span start, in a list with room for `later` more,
/// so that attributes recorded after the start (`record!`, a response
/// status) do not make the span's list grow and move.
#[inline]
pub fn attributes_with_room<const N: usize>(pairs: [KeyValue; N], later: usize) -> Vec<KeyValue> {
    let mut list = Vec::with_capacity(N + later);
    list.extend(pairs);
    list
}

/// Forces the output type of an async block, so that `?` in an
/// instrumented async body converts errors into the function's error type.
#[doc(hidden)]
#[inline(always)]
pub fn typed_future<T, F: Future<Output = T>>(future: F) -> F {
    future
}
