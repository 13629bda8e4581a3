//! A bounded batch span processor that never slows the request path.
//!
//! `on_end` moves the span into a preallocated bounded queue with one
//! non-blocking `try_send`; when the queue is full the span is dropped and
//! counted. A dedicated thread, with its own single-threaded tokio runtime,
//! wakes every `OTEL_BSP_SCHEDULE_DELAY` (or when a batch fills up) and
//! exports the queue in batches, so a slow, dead or black-holed collector
//! costs the request path nothing and memory stays bounded by the queue
//! plus one batch in flight.

use super::config::BatchSettings;
use opentelemetry::Context;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;
use tokio::runtime::Runtime;
use tokio::sync::Notify;

/// How many spans the export pipeline has handled so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Spans the exporter accepted.
    pub exported: u64,
    /// Spans dropped because the queue was full (or export had stopped).
    pub dropped: u64,
    /// Spans lost because their export failed, timed out or was cancelled
    /// at shutdown.
    pub failed: u64,
}

/// The live counters behind [`ExportStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    exported: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> ExportStats {
        ExportStats {
            exported: self.exported.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }
}

/// How many spans are in the queue: raised by the threads that end spans,
/// lowered by the export thread as it receives them.
#[derive(Debug, Default)]
struct QueueCount(AtomicUsize);

impl QueueCount {
    /// Counts one span in and sends it with `send`, counting it back out if
    /// `send` fails; gives the count with this span when it was sent.
    ///
    /// The span is counted before it is sent: the export thread counts
    /// spans out only once it has received them, so the count never drops
    /// below zero, however the threads interleave.
    fn enqueue<E>(&self, send: impl FnOnce() -> Result<(), E>) -> Result<usize, E> {
        let count = self.0.fetch_add(1, Ordering::AcqRel) + 1;
        send().map(|()| count).inspect_err(|_| {
            self.0.fetch_sub(1, Ordering::AcqRel);
        })
    }

    /// Counts out `received` spans taken off the queue.
    fn dequeued(&self, received: usize) {
        self.0.fetch_sub(received, Ordering::AcqRel);
    }

    #[cfg(test)]
    fn get(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

/// Called with a description of the first export failure after a success
/// (or after start), so a dead collector is reported once, not per batch.
pub(crate) type FailureReport = Box<dyn Fn(String) + Send>;

enum Control {
    Flush(SyncSender<()>),
    Shutdown(SyncSender<()>),
}

/// The processor half living in the tracer provider; clones share the
/// same queue and export thread.
#[derive(Clone)]
pub(crate) struct BoundedBatchProcessor {
    spans: SyncSender<SpanData>,
    /// Spans in the queue; the span that fills a batch wakes the worker.
    queued: Arc<QueueCount>,
    batch_size: usize,
    control: Sender<Control>,
    cancel: Arc<Notify>,
    counters: Arc<Counters>,
    flush_wait: Duration,
    worker_thread: Thread,
    worker: Arc<Mutex<Option<JoinHandle<()>>>>,
}

/// How long shutdown waits for the worker after cancelling its export.
const CANCEL_GRACE: Duration = Duration::from_secs(2);

/// The shortest pause between two rounds of the worker, so that a zero
/// `OTEL_BSP_SCHEDULE_DELAY` does not spin.
const MIN_SCHEDULE_DELAY: Duration = Duration::from_millis(1);

impl BoundedBatchProcessor {
    /// Starts the export thread, building the exporter there (inside its
    /// runtime, which gRPC channels need) with `build`.
    pub(crate) fn start<E, B>(
        settings: BatchSettings,
        build: B,
        counters: Arc<Counters>,
        report_failure: FailureReport,
    ) -> Result<BoundedBatchProcessor, String>
    where
        E: SpanExporter + 'static,
        B: FnOnce() -> Result<E, String> + Send + 'static,
    {
        let (spans, span_queue) = mpsc::sync_channel(settings.max_queue_size);
        let (control, control_queue) = mpsc::channel();
        let (ready, started) = mpsc::sync_channel(1);
        let queued = Arc::new(QueueCount::default());
        let cancel = Arc::new(Notify::new());
        let worker_queued = queued.clone();
        let worker_cancel = cancel.clone();
        let worker_counters = counters.clone();
        let worker = std::thread::Builder::new()
            .name("llmd-span-export".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = ready.send(Err(format!("no export runtime: {error}")));
                        return;
                    }
                };
                let exporter = {
                    let _entered = runtime.enter();
                    build()
                };
                let exporter = match exporter {
                    Ok(exporter) => exporter,
                    Err(error) => {
                        let _ = ready.send(Err(error));
                        return;
                    }
                };
                let _ = ready.send(Ok(()));
                Worker {
                    exporter,
                    runtime,
                    spans: span_queue,
                    queued: worker_queued,
                    control: control_queue,
                    cancel: worker_cancel,
                    counters: worker_counters,
                    settings,
                    report_failure,
                    failing: false,
                    cancelled: false,
                }
                .run();
            })
            .map_err(|error| format!("cannot start the export thread: {error}"))?;
        match started.recv() {
            Ok(Ok(())) => Ok(BoundedBatchProcessor {
                spans,
                queued,
                batch_size: settings.max_export_batch_size,
                control,
                cancel,
                counters,
                flush_wait: settings.export_timeout,
                worker_thread: worker.thread().clone(),
                worker: Arc::new(Mutex::new(Some(worker))),
            }),
            Ok(Err(error)) => {
                let _ = worker.join();
                Err(error)
            }
            Err(_) => {
                let _ = worker.join();
                Err("the export thread stopped while starting".to_owned())
            }
        }
    }

    /// Hands `control` to the worker and wakes it up.
    fn send(&self, control: Control) -> OTelSdkResult {
        self.control
            .send(control)
            .map_err(|_| OTelSdkError::AlreadyShutdown)?;
        self.worker_thread.unpark();
        Ok(())
    }
}

impl fmt::Debug for BoundedBatchProcessor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedBatchProcessor")
            .field("stats", &self.counters.snapshot())
            .finish()
    }
}

impl SpanProcessor for BoundedBatchProcessor {
    fn on_start(&self, _: &mut Span, _: &Context) {}

    /// One non-blocking enqueue; the worker is woken (a syscall) only by
    /// the span that completes a batch, never per span.
    #[inline]
    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        // Full or disconnected, the span is dropped all the same.
        match self
            .queued
            .enqueue(|| self.spans.try_send(span).map_err(drop))
        {
            Ok(queued) => {
                if queued == self.batch_size {
                    self.worker_thread.unpark();
                }
            }
            Err(()) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        let (done, finished) = mpsc::sync_channel(1);
        self.send(Control::Flush(done))?;
        match finished.recv_timeout(self.flush_wait) {
            Ok(()) => Ok(()),
            Err(RecvTimeoutError::Timeout) => Err(OTelSdkError::Timeout(self.flush_wait)),
            Err(RecvTimeoutError::Disconnected) => Err(OTelSdkError::AlreadyShutdown),
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let Some(worker) = self
            .worker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return Err(OTelSdkError::AlreadyShutdown);
        };
        let (done, finished) = mpsc::sync_channel(1);
        self.send(Control::Shutdown(done))?;
        let result = match finished.recv_timeout(timeout) {
            Ok(()) => Ok(()),
            Err(RecvTimeoutError::Disconnected) => Err(OTelSdkError::AlreadyShutdown),
            Err(RecvTimeoutError::Timeout) => {
                // Abandon the export in flight (a dead collector): the worker
                // then drops what is left and stops.
                self.cancel.notify_one();
                Err(OTelSdkError::Timeout(timeout))
            }
        };
        let stopping = match result {
            Err(OTelSdkError::Timeout(_)) => finished.recv_timeout(CANCEL_GRACE).is_ok(),
            _ => true,
        };
        if stopping {
            let _ = worker.join();
        }
        result
    }
}

/// The export thread's state.
struct Worker<E> {
    exporter: E,
    runtime: Runtime,
    spans: Receiver<SpanData>,
    queued: Arc<QueueCount>,
    control: Receiver<Control>,
    cancel: Arc<Notify>,
    counters: Arc<Counters>,
    settings: BatchSettings,
    report_failure: FailureReport,
    failing: bool,
    cancelled: bool,
}

impl<E: SpanExporter> Worker<E> {
    /// Sleeps until the schedule delay passes, a batch fills up or a
    /// control request arrives, then exports everything queued.
    fn run(mut self) {
        let pause = self.settings.schedule_delay.max(MIN_SCHEDULE_DELAY);
        loop {
            std::thread::park_timeout(pause);
            let open = self.export_queued();
            while let Ok(control) = self.control.try_recv() {
                self.export_queued();
                match control {
                    Control::Flush(done) => {
                        let _ = done.send(());
                    }
                    Control::Shutdown(done) => {
                        let _ = self.exporter.shutdown();
                        let _ = done.send(());
                        return;
                    }
                }
            }
            if !open {
                return;
            }
        }
    }

    /// Exports the queue in batches until it is empty; false once every
    /// sender is gone.
    fn export_queued(&mut self) -> bool {
        let size = self.settings.max_export_batch_size;
        loop {
            let mut batch = Vec::with_capacity(size);
            let mut open = true;
            while batch.len() < size {
                match self.spans.try_recv() {
                    Ok(span) => batch.push(span),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            self.queued.dequeued(batch.len());
            let full = batch.len() == size;
            self.export(batch);
            if !full || !open {
                return open;
            }
        }
    }

    fn export(&mut self, spans: Vec<SpanData>) {
        if spans.is_empty() {
            return;
        }
        let count = spans.len() as u64;
        if self.cancelled {
            self.counters.failed.fetch_add(count, Ordering::Relaxed);
            return;
        }
        let timeout = self.settings.export_timeout;
        let exporter = &self.exporter;
        let cancel = &self.cancel;
        let outcome = self.runtime.block_on(async {
            tokio::select! {
                result = tokio::time::timeout(timeout, exporter.export(spans)) => Some(result),
                () = cancel.notified() => None,
            }
        });
        let failure = match outcome {
            Some(Ok(Ok(()))) => {
                self.counters.exported.fetch_add(count, Ordering::Relaxed);
                self.failing = false;
                return;
            }
            Some(Ok(Err(error))) => error.to_string(),
            Some(Err(_)) => format!("no answer within {} ms", timeout.as_millis()),
            None => {
                self.cancelled = true;
                "cancelled at shutdown".to_owned()
            }
        };
        self.counters.failed.fetch_add(count, Ordering::Relaxed);
        if !self.failing {
            self.failing = true;
            (self.report_failure)(failure);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::sampled_span;
    use opentelemetry::trace::{SpanContext, TraceState};
    use tokio::sync::Semaphore;

    /// An exporter that says when each export starts, finishes one only
    /// for each permit the test gives it, and counts the spans exported.
    #[derive(Debug)]
    struct Gated {
        started: Sender<()>,
        permits: Arc<Semaphore>,
        exported: Arc<AtomicUsize>,
    }

    impl SpanExporter for Gated {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            let _ = self.started.send(());
            let permit = self.permits.acquire().await;
            permit
                .map_err(|error| OTelSdkError::InternalFailure(error.to_string()))?
                .forget();
            self.exported.fetch_add(batch.len(), Ordering::Relaxed);
            Ok(())
        }
    }

    /// The test's side of a [`Gated`] exporter.
    struct Gate {
        started: Receiver<()>,
        permits: Arc<Semaphore>,
        exported: Arc<AtomicUsize>,
    }

    impl Gate {
        /// Lets every export from now on finish.
        fn open(&self) {
            self.permits.add_permits(1024);
        }

        fn exported(&self) -> usize {
            self.exported.load(Ordering::Relaxed)
        }
    }

    /// A processor exporting to a [`Gated`] exporter, and its gate (shut).
    fn gated(settings: BatchSettings) -> (BoundedBatchProcessor, Gate) {
        let (started, starts) = mpsc::channel();
        let permits = Arc::new(Semaphore::new(0));
        let exported = Arc::new(AtomicUsize::new(0));
        let exporter = Gated {
            started,
            permits: permits.clone(),
            exported: exported.clone(),
        };
        let processor = BoundedBatchProcessor::start(
            settings,
            || Ok(exporter),
            Arc::default(),
            Box::new(|_| {}),
        )
        .expect("the export thread starts");
        let gate = Gate {
            started: starts,
            permits,
            exported,
        };
        (processor, gate)
    }

    fn settings(max_queue_size: usize, max_export_batch_size: usize) -> BatchSettings {
        BatchSettings {
            max_queue_size,
            // Long enough that only a full batch or a flush wakes the worker.
            schedule_delay: Duration::from_secs(3600),
            max_export_batch_size,
            export_timeout: Duration::from_secs(30),
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_spans_and_gives_back_their_places() {
        // Batches of one: the first span wakes the worker, whose export of
        // it then waits at the gate, so the queue fills behind it.
        let (processor, gate) = gated(settings(3, 1));
        processor.on_end(sampled_span("llm_d.test.first"));
        gate.started.recv().expect("the first export starts");
        for _ in 0..5 {
            processor.on_end(sampled_span("llm_d.test.queued"));
        }
        assert_eq!(processor.queued.get(), 3);
        assert_eq!(processor.counters.snapshot().dropped, 2);

        gate.open();
        processor.force_flush().expect("flushed");
        assert_eq!(gate.exported(), 4);
        assert_eq!(processor.queued.get(), 0);
        assert_eq!(processor.counters.snapshot().exported, 4);
        processor.shutdown().expect("shut down");
    }

    #[test]
    fn unsampled_spans_are_neither_queued_nor_counted() {
        let (processor, gate) = gated(settings(8, 1));
        gate.open();
        let mut span = sampled_span("llm_d.test.unsampled");
        span.span_context = SpanContext::new(
            span.span_context.trace_id(),
            span.span_context.span_id(),
            opentelemetry::trace::TraceFlags::default(),
            false,
            TraceState::default(),
        );
        processor.on_end(span);
        assert_eq!(processor.queued.get(), 0);
        processor.force_flush().expect("flushed");
        assert_eq!(gate.exported(), 0);
        assert_eq!(processor.counters.snapshot(), ExportStats::default());
        processor.shutdown().expect("shut down");
    }

    /// The export thread may receive a span and count it out before the
    /// thread that sent it is done with `on_end`: the count must already
    /// hold it. (It used to be raised after the send, and went below zero:
    /// an overflow, a panic in debug builds, on the request path.)
    #[test]
    fn a_span_is_counted_before_the_export_thread_can_receive_it() {
        let count = QueueCount::default();
        let sent = count.enqueue(|| {
            count.dequeued(1);
            Ok::<(), ()>(())
        });
        assert_eq!(sent, Ok(1));
        assert_eq!(count.get(), 0);
        assert_eq!(count.enqueue(|| Err::<(), _>("full")), Err("full"));
        assert_eq!(count.get(), 0);
    }
}
