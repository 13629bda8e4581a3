#!/usr/bin/env python3
"""Instructions the proxy executes per request, tracing off and on.

Wall-clock numbers on a shared 2-core VM move by tens of percent between
runs; instruction counts do not. This runs the release `llmd-pd-proxy`
binary under callgrind in front of a small keep-alive HTTP backend (in this
process), sends N1 and then N2 sequential non-streaming requests (each
carrying a sampled `traceparent`, as requests from the gateway do) in two
separate runs (the backend in a child process, so that it does not wait
for this one's interpreter lock), and reports (instructions(N2) - instructions(N1)) / (N2 - N1):
the per-request cost with start-up and shutdown cancelled out (the
counting is shared with the scheduler's benchmark:
`scripts/callgrind_per_request.py`).

`--path decode` (the default) sends decode-only requests, forwarded to the
decoder as they are; `--path pd` names the same backend as the prefiller
(`x-prefiller-host-port`), so each request runs the nixlv2 flow: a prefill
leg, its `kv_transfer_params` read and written into the decode leg.
`--tls` puts the backend behind TLS (a self-signed certificate made with
`openssl`), reached with `--enable-tls prefiller,decoder
--tls-insecure-skip-verify prefiller,decoder`.

Configurations: tracing off (`OTEL_SDK_DISABLED=true`); tracing on at
100 % with spans recorded and dropped (`OTEL_TRACES_EXPORTER=none`, the
default parent-based sampler following the sampled caller); and, with
`--export`, tracing on at 100 % with the spans exported over OTLP
HTTP/protobuf to a collector in a child process of this script, so that
the count includes the proxy's export thread (batching, encoding, the
HTTP client) as a sidecar's CPU pays it. Each is run `--rounds` times; a
second figure leaves hashing functions out, which move by a few thousand
instructions per request from run to run.

Needs valgrind and a release build:
    cargo build --release -p llmd-pd-proxy
    python3 pd-proxy/benches/instructions_per_request.py --rounds 3 [--path pd] [--tls] [--ssrf] [--export]
"""

import http.server
import multiprocessing
import os
import pathlib
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "scripts"))
import callgrind_per_request as counting  # noqa: E402

REQUEST_BODY = b'{"model":"m","prompt":"hello","max_tokens":4}'
RESPONSE_BODY = (
    b'{"id":"c","choices":[{"text":"hi","finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":4,"completion_tokens":1},'
    b'"kv_transfer_params":{"do_remote_prefill":true,"do_remote_decode":false,'
    b'"remote_engine_id":"e","remote_block_ids":[1],"remote_host":"127.0.0.1",'
    b'"remote_port":5600,"remote_request_id":"r"}}'
)
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
CONFIGS = {
    "off": {"OTEL_SDK_DISABLED": "true"},
    "on": {"OTEL_TRACES_EXPORTER": "none"},
}


class Backend(http.server.BaseHTTPRequestHandler):
    """Answers every POST with a small completion, every GET with 200."""

    protocol_version = "HTTP/1.1"
    # The head and the body go out in two writes: with Nagle's algorithm the
    # body would wait for the proxy's delayed ACK, 40 ms a request.
    disable_nagle_algorithm = True

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(RESPONSE_BODY)))
        self.end_headers()
        self.wfile.write(RESPONSE_BODY)

    def do_GET(self):
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *_):
        pass



class Collector(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP traces endpoint: reads each export, counts its bytes in
    `received` (a shared counter set on the class) and accepts it with an
    empty `ExportTraceServiceResponse`."""

    protocol_version = "HTTP/1.1"
    received = None

    def do_POST(self):
        size = int(self.headers.get("content-length", 0))
        self.rfile.read(size)
        with self.received.get_lock():
            self.received.value += size
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *_):
        pass


def serve_in_child(handler, context=None):
    """Serves `handler` on a loopback port from a child process (so that it
    does not wait for this one's interpreter lock); gives the port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if context:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    multiprocessing.Process(target=server.serve_forever, daemon=True).start()
    server.socket.close()
    return server.server_address[1]


def tls_context():
    """A server context with a new self-signed certificate for 127.0.0.1."""
    with tempfile.TemporaryDirectory() as directory:
        cert = os.path.join(directory, "cert.pem")
        key = os.path.join(directory, "key.pem")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert],
            check=True,
            capture_output=True,
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
    return context


def options(parser):
    """This benchmark's own options."""
    parser.add_argument("--path", choices=["decode", "pd"], default="decode")
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--export", action="store_true")
    parser.add_argument("--ssrf", action="store_true")


def main():
    args = counting.arguments(
        __doc__,
        "target/release/llmd-pd-proxy",
        200,
        800,
        options,
    )

    backend_port = serve_in_child(Backend, tls_context() if args.tls else None)
    configs = dict(CONFIGS)
    if args.export:
        Collector.received = multiprocessing.Value("Q", 0)
        collector_port = serve_in_child(Collector)
        configs["exported"] = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector_port}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        }
    command = [
        args.binary, "--port", "{port}", "--vllm-port", str(backend_port),
        "--decoder-host", "127.0.0.1", "--bind-address", "127.0.0.1",
        "--secure-proxy=false",
    ]
    if args.ssrf:
        command += ["--enable-ssrf-protection", "--allowed-prefill-hosts", "Other-Host,127.0.0.1"]
    if args.tls:
        command += ["--enable-tls", "prefiller,decoder", "--tls-insecure-skip-verify", "prefiller,decoder"]
    headers = {"content-type": "application/json", "traceparent": TRACEPARENT}
    if args.path == "pd":
        headers["x-prefiller-host-port"] = f"127.0.0.1:{backend_port}"
    with tempfile.TemporaryDirectory() as out_dir:

        def count(name, requests):
            def serve(port):
                conn = counting.wait_healthy(port, time.monotonic() + 120)
                counting.send(conn, "/v1/completions", REQUEST_BODY, headers, requests)
                conn.close()

            return counting.counted(command, {**os.environ, **configs[name]}, serve, out_dir)

        counting.compare(configs, count, args.n1, args.n2, args.rounds)
    if args.export:
        received = Collector.received.value
        if received == 0:
            sys.exit("the collector received no spans: the exported figures are not an export's")
        print(f"the collector received {received:,} bytes of spans")


if __name__ == "__main__":
    main()
