"""A tiny OpenAI-style decoder instrumented with the OpenTelemetry Python SDK.

It stands where vLLM would, behind an llmd-pd-proxy: it continues the W3C
trace context of each request (``traceparent``/``tracestate``) with one
SERVER span named ``llm_request``, as vLLM does, and exports it with the
SDK's OTLP/HTTP exporter. Configuration is the standard environment
(``OTEL_SERVICE_NAME``, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``,
``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_SCHEDULE_DELAY``...).

Usage: otel_decoder.py [--port PORT]   (0, the default, picks a free port)
Prints ``python decoder listening on 127.0.0.1:PORT`` once it serves.
Only metadata goes into the span: never the prompt or the generated text.
"""

import argparse
import json
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.propagate import extract
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

COMPLETION_TOKENS = 4

provider = TracerProvider(resource=Resource.create())
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
trace.set_tracer_provider(provider)
tracer = trace.get_tracer("llmd-tests.otel_decoder")


def prompt_tokens(body):
    """Whitespace-separated words of the messages (the simulator's tokens)."""
    words = 0
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            words += len(content.split())
    return words


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Heads, bodies and stream chunks go out in separate writes: without
    # this, each write after the first waits for the peer's delayed ACK.
    disable_nagle_algorithm = True

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        sys.stderr.write("otel_decoder: " + (format % args) + "\n")

    def do_GET(self):
        if self.path == "/health":
            self.reply(200, "application/json", b"{}")
        else:
            self.reply(404, "application/json", self.error(404, "not found"))

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            self.reply(400, "application/json", self.error(400, "invalid JSON body"))
            return
        if self.path != "/v1/chat/completions":
            self.reply(404, "application/json", self.error(404, "not found"))
            return
        parent = extract(dict(self.headers.items()))
        with tracer.start_as_current_span(
            "llm_request", context=parent, kind=trace.SpanKind.SERVER
        ) as span:
            started = time.monotonic()
            request_id = self.headers.get("x-request-id") or uuid.uuid4().hex
            usage = {
                "prompt_tokens": prompt_tokens(body),
                "completion_tokens": COMPLETION_TOKENS,
                "total_tokens": prompt_tokens(body) + COMPLETION_TOKENS,
            }
            span.set_attribute("gen_ai.request.id", request_id)
            span.set_attribute("gen_ai.usage.prompt_tokens", usage["prompt_tokens"])
            span.set_attribute("gen_ai.usage.completion_tokens", COMPLETION_TOKENS)
            span.set_attribute(
                "test.kv_transfer.do_remote_prefill",
                bool((body.get("kv_transfer_params") or {}).get("do_remote_prefill")),
            )
            answer_id = "chatcmpl-" + request_id
            if body.get("stream"):
                self.stream(answer_id, body.get("model", ""), usage)
            else:
                answer = {
                    "id": answer_id,
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model", ""),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "ok " * COMPLETION_TOKENS},
                            "finish_reason": "length",
                        }
                    ],
                    "usage": usage,
                }
                self.reply(200, "application/json", json.dumps(answer).encode())
            span.set_attribute("gen_ai.latency.e2e", time.monotonic() - started)

    def stream(self, answer_id, model, usage):
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for index in range(COMPLETION_TOKENS):
            delta = {"content": "ok "}
            finish = "length" if index == COMPLETION_TOKENS - 1 else None
            chunk = {
                "id": answer_id,
                "object": "chat.completion.chunk",
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            self.chunk(("data: " + json.dumps(chunk) + "\n\n").encode())
        final = {"id": answer_id, "object": "chat.completion.chunk", "model": model, "choices": [], "usage": usage}
        self.chunk(("data: " + json.dumps(final) + "\n\n").encode())
        self.chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def reply(self, status, content_type, payload):
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    @staticmethod
    def error(code, message):
        return json.dumps(
            {"object": "error", "message": message, "type": "BadRequestError", "param": "", "code": code}
        ).encode()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    host, port = server.server_address[:2]
    print(f"python decoder listening on {host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        provider.shutdown()


if __name__ == "__main__":
    main()
