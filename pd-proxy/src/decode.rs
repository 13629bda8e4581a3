//! The decode leg of a P/D request, in its `llm_d.pd_proxy.decode` span.
//!
//! The span must stay open, and current for the outbound call, while the
//! answer streams. So the leg is one future (the "pump") that sends the
//! request, hands the response head to the handler, then moves the body
//! chunk by chunk into a small channel. The pump is not spawned: the handler
//! polls it until the head is there, and then the response body polls it
//! (see [`PumpBody`]), so a client that goes away drops the pump, and with it
//! the upstream request, at once.

use crate::config::KvConnector;
use crate::errors::ProxyError;
use crate::prefill::PrefillTiming;
use crate::sse::{self, SseScanner, Usage};
use crate::upstream::{self, Failure, Origin};
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderMap, Method, StatusCode, Uri, header};
use http_body::Frame;
use http_body_util::BodyExt;
use llmd_runtime::{Context, ErrorType, Identifier, event, record, span, traced_span};
use opentelemetry::trace::TraceContextExt;
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// Largest non-streamed response body rewritten for cached tokens; a larger
/// one is forwarded unchanged.
const MAX_REWRITTEN_JSON: usize = 16 * 1024 * 1024;

/// Everything the decode leg needs.
#[derive(Debug)]
pub struct DecodePlan {
    /// The decoder.
    pub origin: Origin,
    /// Method of the request.
    pub method: Method,
    /// The decoder endpoint's path and query (origin form).
    pub uri: Uri,
    /// Headers to send (trace context is added by the leg).
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// The request id shared by both legs.
    pub request_id: Identifier,
    /// The connector.
    pub connector: KvConnector,
    /// Whether the client asked for a stream.
    pub streaming: bool,
    /// Whether data-parallel routing chose the decoder.
    pub data_parallel: bool,
    /// The decoder's `host:port`.
    pub target: Identifier,
    /// The model the request names.
    pub model: Option<Identifier>,
    /// The prefiller's cached tokens, written into the response's usage.
    pub cached_tokens: Option<i64>,
    /// sglang: the prefill runs at the same time.
    pub concurrent_with_prefill: bool,
    /// When the request reached the proxy.
    pub request_start: Instant,
    /// When the prefill ran (none for sglang, whose prefill is asynchronous).
    pub prefill: Option<PrefillTiming>,
    /// Decode first: look at the first answer and give up (without
    /// answering the client) when the decoder finished it with
    /// `cache_threshold`, i.e. its cache hit was below the request's
    /// `cache_hit_threshold` and a prefill is needed.
    pub probe_cache_threshold: bool,
}

/// When the decode leg's milestones happened.
#[derive(Clone, Copy, Debug)]
struct DecodeTiming {
    start: Instant,
    first_token: Option<Instant>,
    end: Instant,
}

/// Why the decode leg ended early.
#[derive(Debug, thiserror::Error)]
enum DecodeError {
    #[error("decoder refused the connection")]
    Refused,
    #[error("decoder failed")]
    Failed,
    #[error("the client went away")]
    ClientGone,
}

impl ErrorType for DecodeError {
    fn error_type(&self) -> &'static str {
        match self {
            DecodeError::Refused => "decoder_unavailable",
            DecodeError::Failed => "decoder_failed",
            DecodeError::ClientGone => "client_disconnected",
        }
    }
}

/// What the pump hands the handler before any body byte.
enum Head {
    /// Answer the client with this status and these headers.
    Respond(StatusCode, HeaderMap),
    /// The decode could not start.
    Failed(ProxyError),
    /// Probing: the decoder needs a prefill first.
    NeedsPrefill,
}

/// The `finish_reason` with which a decoder refuses a request whose cache
/// hit is below its `cache_hit_threshold`.
const CACHE_THRESHOLD_FINISH: &str = "cache_threshold";

/// The decoder's stream broke mid-response.
#[derive(Debug, thiserror::Error)]
#[error("the decoder's response stream broke")]
pub struct StreamBroken;

/// Runs the decode leg and returns the response to stream to the client.
pub async fn run(plan: DecodePlan) -> Response {
    begin(plan)
        .await
        .unwrap_or_else(|| ProxyError::DecoderFailed.into_response())
}

/// Runs a probing decode leg (see [`DecodePlan::probe_cache_threshold`]):
/// `None` when the decoder asks for a prefill first.
pub async fn try_without_prefill(plan: DecodePlan) -> Option<Response> {
    begin(DecodePlan {
        probe_cache_threshold: true,
        ..plan
    })
    .await
}

/// Starts the leg; `None` when a probe found that a prefill is needed.
async fn begin(plan: DecodePlan) -> Option<Response> {
    let request_start = plan.request_start;
    let prefill = plan.prefill;
    let (head_tx, head_rx) = oneshot::channel();
    let (body_tx, body_rx) = mpsc::channel(16);
    let mut pump: BoxFuture<'static, Result<DecodeTiming, DecodeError>> =
        Box::pin(pump(plan, head_tx, body_tx));
    let mut head_rx = head_rx;
    let mut finished = None;
    let head = tokio::select! {
        biased;
        head = &mut head_rx => head,
        outcome = &mut pump => {
            finished = Some(outcome);
            head_rx.await
        }
    };
    let (status, headers) = match head {
        Ok(Head::Respond(status, headers)) => (status, headers),
        Ok(Head::Failed(error)) => return Some(error.into_response()),
        Ok(Head::NeedsPrefill) => return None,
        Err(_) => return Some(ProxyError::DecoderFailed.into_response()),
    };
    if let Some(outcome) = &finished {
        record_rollups(request_start, prefill, outcome);
    }
    let body = PumpBody {
        pump: finished.is_none().then_some(pump),
        rx: body_rx,
        request_start,
        prefill,
    };
    let mut response = Response::new(Body::new(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Some(response)
}

#[traced_span(
    "llm_d.pd_proxy.decode",
    attrs(
        llm_d.pd_proxy.request_id = plan.request_id.clone(),
        llm_d.pd_proxy.connector = plan.connector,
        llm_d.pd_proxy.decode.streaming = plan.streaming,
        llm_d.pd_proxy.decode.data_parallel = plan.data_parallel,
        llm_d.pd_proxy.decode.target = plan.target.clone(),
        llm_d.pd_proxy.decode.concurrent_with_prefill = plan.concurrent_with_prefill,
        gen_ai.request.stream = plan.streaming,
    ),
    err
)]
async fn pump(
    plan: DecodePlan,
    head_tx: oneshot::Sender<Head>,
    body_tx: mpsc::Sender<Result<Bytes, StreamBroken>>,
) -> Result<DecodeTiming, DecodeError> {
    let start = Instant::now();
    if let Some(model) = plan.model.clone() {
        record!(gen_ai.request.model = model);
    }
    let request = upstream::outbound_request(
        plan.method.clone(),
        plan.uri.clone(),
        &plan.headers,
        plan.body.clone(),
    );
    let response = match plan.origin.send(request).await {
        Ok(response) => response,
        Err(failure) => {
            let (proxy_error, decode_error) = match failure {
                Failure::Refused => (ProxyError::DecoderUnavailable, DecodeError::Refused),
                _ => (ProxyError::DecoderFailed, DecodeError::Failed),
            };
            let _ = head_tx.send(Head::Failed(proxy_error));
            return Err(decode_error);
        }
    };
    let mut response = Source::new(response);
    let status = response.status;
    record!(llm_d.pd_proxy.decode.status_code = status.as_u16());
    if let Some(error_type) = llmd_runtime::http::server_error_type(status) {
        span::mark_current_error(error_type);
    }
    let mut headers = std::mem::take(&mut response.headers);
    upstream::strip_response_headers(&mut headers);
    let is_sse = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let cached_tokens = plan.cached_tokens.filter(|_| status.is_success());
    if cached_tokens.is_some() {
        headers.remove(header::CONTENT_LENGTH);
    }
    if plan.probe_cache_threshold
        && status.is_success()
        && response
            .first_answer_needs_prefill(is_sse, &body_tx)
            .await?
    {
        let _ = head_tx.send(Head::NeedsPrefill);
        record!(llm_d.pd_proxy.decode.duration_ms = millis(start, Instant::now()));
        return Ok(DecodeTiming {
            start,
            first_token: None,
            end: Instant::now(),
        });
    }
    head_tx
        .send(Head::Respond(status, headers))
        .map_err(|_| DecodeError::ClientGone)?;

    let recording = current_is_recording();
    let mut stream = Forward {
        tx: &body_tx,
        first_token: None,
        usage: Usage::default(),
    };
    if is_sse && (recording || cached_tokens.is_some()) {
        let mut scanner = cached_tokens.map_or_else(SseScanner::observe, SseScanner::rewriting);
        while let Some(chunk) = response.next(&body_tx).await? {
            let out = scanner.push(chunk);
            if scanner.data_events > 0 {
                stream.mark_first_token();
            }
            stream.send(out).await?;
        }
        stream.send(scanner.finish()).await?;
        stream.usage = scanner.usage;
    } else if cached_tokens.is_some() && !is_sse {
        let body = collect(&mut response, &body_tx, &mut stream).await?;
        let (rewritten, usage) = sse::scan_json(&body, cached_tokens);
        stream.usage = usage;
        stream.send(rewritten.unwrap_or(body)).await?;
    } else {
        while let Some(chunk) = response.next(&body_tx).await? {
            stream.mark_first_token();
            stream.send(chunk).await?;
        }
    }
    let end = Instant::now();
    // The decode span's own timings and usage, recorded here rather than in
    // a helper so that `#[traced_span]` counts them and gives the span's
    // attribute list room for them.
    record!(llm_d.pd_proxy.decode.duration_ms = millis(start, end));
    if let Some(first) = stream.first_token {
        let seconds = first.saturating_duration_since(start).as_secs_f64();
        record!(gen_ai.response.time_to_first_chunk = seconds);
    }
    if let Some(n) = stream.usage.input_tokens {
        record!(gen_ai.usage.input_tokens = n);
    }
    if let Some(n) = stream.usage.output_tokens {
        record!(gen_ai.usage.output_tokens = n);
    }
    if let Some(n) = stream.usage.cached_tokens {
        record!(gen_ai.usage.cache_read.input_tokens = n);
    }
    Ok(DecodeTiming {
        start,
        first_token: stream.first_token,
        end,
    })
}

/// The sending side of the pump.
struct Forward<'a> {
    tx: &'a mpsc::Sender<Result<Bytes, StreamBroken>>,
    first_token: Option<Instant>,
    usage: Usage,
}

impl Forward<'_> {
    fn mark_first_token(&mut self) {
        if self.first_token.is_none() {
            self.first_token = Some(Instant::now());
            event!("llm_d.pd_proxy.first_token");
        }
    }

    async fn send(&mut self, chunk: Bytes) -> Result<(), DecodeError> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.tx
            .send(Ok(chunk))
            .await
            .map_err(|_| DecodeError::ClientGone)
    }
}

/// The decoder's response: its head, then its body chunks, starting with
/// any chunks read ahead by a probe.
struct Source {
    status: StatusCode,
    headers: HeaderMap,
    read_ahead: VecDeque<Bytes>,
    body: Body,
}

impl Source {
    fn new(response: Response) -> Source {
        let (head, body) = response.into_parts();
        Source {
            status: head.status,
            headers: head.headers,
            read_ahead: VecDeque::new(),
            body,
        }
    }

    /// Reads the first answer (the first SSE event, or the whole JSON body)
    /// ahead, and tells whether it finished with `cache_threshold`.
    async fn first_answer_needs_prefill(
        &mut self,
        is_sse: bool,
        tx: &mpsc::Sender<Result<Bytes, StreamBroken>>,
    ) -> Result<bool, DecodeError> {
        let mut seen = Vec::new();
        while let Some(chunk) = next_chunk(&mut self.body, tx).await? {
            seen.extend_from_slice(&chunk);
            self.read_ahead.push_back(chunk);
            if is_sse && let Some(event) = first_sse_event(&seen) {
                return Ok(finished_by_cache_threshold(event));
            }
            if seen.len() > MAX_REWRITTEN_JSON {
                return Ok(false);
            }
        }
        Ok(!is_sse && finished_by_cache_threshold(&seen))
    }

    async fn next(
        &mut self,
        tx: &mpsc::Sender<Result<Bytes, StreamBroken>>,
    ) -> Result<Option<Bytes>, DecodeError> {
        match self.read_ahead.pop_front() {
            Some(chunk) => Ok(Some(chunk)),
            None => next_chunk(&mut self.body, tx).await,
        }
    }
}

/// The payload of the first complete `data:` line.
fn first_sse_event(bytes: &[u8]) -> Option<&[u8]> {
    let mut lines = bytes.split(|b| *b == b'\n');
    let _incomplete_last = lines.next_back();
    lines
        .filter_map(|line| line.strip_prefix(b"data:"))
        .map(|payload| payload.trim_ascii())
        .find(|payload| *payload != b"[DONE]")
}

/// Whether the first choice of an answer finished with `cache_threshold`.
fn finished_by_cache_threshold(answer: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(default)]
        choices: Vec<Choice>,
    }
    #[derive(serde::Deserialize)]
    struct Choice {
        finish_reason: Option<String>,
    }
    serde_json::from_slice::<Answer>(answer).is_ok_and(|a| {
        a.choices.first().and_then(|c| c.finish_reason.as_deref()) == Some(CACHE_THRESHOLD_FINISH)
    })
}

/// The next chunk of the decoder's body (trailers are not forwarded); a
/// broken stream is passed on to the client as a body error.
async fn next_chunk(
    body: &mut Body,
    tx: &mpsc::Sender<Result<Bytes, StreamBroken>>,
) -> Result<Option<Bytes>, DecodeError> {
    loop {
        match body.frame().await {
            None => return Ok(None),
            Some(Ok(frame)) => {
                if let Ok(chunk) = frame.into_data() {
                    return Ok(Some(chunk));
                }
            }
            Some(Err(_)) => {
                let _ = tx.send(Err(StreamBroken)).await;
                return Err(DecodeError::Failed);
            }
        }
    }
}

/// The whole (non-streamed) body, for rewriting; past the limit the bytes
/// so far are forwarded and `Ok(rest)` carries the remainder unchanged.
async fn collect(
    response: &mut Source,
    tx: &mpsc::Sender<Result<Bytes, StreamBroken>>,
    stream: &mut Forward<'_>,
) -> Result<Bytes, DecodeError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.next(tx).await? {
        stream.mark_first_token();
        body.extend_from_slice(&chunk);
        if body.len() > MAX_REWRITTEN_JSON {
            stream.send(Bytes::from(std::mem::take(&mut body))).await?;
            while let Some(chunk) = response.next(tx).await? {
                stream.send(chunk).await?;
            }
            break;
        }
    }
    Ok(Bytes::from(body))
}

fn current_is_recording() -> bool {
    Context::map_current(|cx| cx.span().span_context().is_sampled())
}

fn millis(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64() * 1000.0
}

/// Records the request span's roll-ups: time to the first token that
/// reached the proxy, total time and the time the proxy itself added.
fn record_rollups(
    request_start: Instant,
    prefill: Option<PrefillTiming>,
    outcome: &Result<DecodeTiming, DecodeError>,
) {
    let Ok(decode) = outcome else {
        return;
    };
    if let Some(first) = decode.first_token {
        record!(llm_d.pd_proxy.true_ttft_ms = millis(request_start, first));
    }
    record!(llm_d.pd_proxy.total_duration_ms = millis(request_start, decode.end));
    let overhead = match prefill {
        Some(prefill) => millis(request_start, prefill.start) + millis(prefill.end, decode.start),
        None => millis(request_start, decode.start),
    };
    record!(llm_d.pd_proxy.coordinator_overhead_ms = overhead);
}

/// The client's response body: drains the pump's channel and drives the
/// pump while it waits. The request span is current while it is polled, so
/// the roll-ups land there when the pump ends.
struct PumpBody {
    pump: Option<BoxFuture<'static, Result<DecodeTiming, DecodeError>>>,
    rx: mpsc::Receiver<Result<Bytes, StreamBroken>>,
    request_start: Instant,
    prefill: Option<PrefillTiming>,
}

impl http_body::Body for PumpBody {
    type Data = Bytes;
    type Error = StreamBroken;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        task: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamBroken>>> {
        loop {
            match self.rx.poll_recv(task) {
                Poll::Ready(Some(chunk)) => return Poll::Ready(Some(chunk.map(Frame::data))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => {}
            }
            let Some(pump) = self.pump.as_mut() else {
                return Poll::Pending;
            };
            let Poll::Ready(outcome) = pump.as_mut().poll(task) else {
                return Poll::Pending;
            };
            self.pump = None;
            record_rollups(self.request_start, self.prefill, &outcome);
        }
    }
}
