#!/usr/bin/env python3
"""Instructions the proxy executes per decode-only request, tracing off and on.

Wall-clock numbers on a shared 2-core VM move by tens of percent between
runs; instruction counts do not. This runs the release `llmd-pd-proxy`
binary under callgrind in front of a small keep-alive HTTP backend (in this
process), sends N1 and then N2 sequential non-streaming requests (each
carrying a sampled `traceparent`, as requests from the gateway do) in two
separate runs (the backend in a child process, so that it does not wait
for this one's interpreter lock), and reports (instructions(N2) - instructions(N1)) / (N2 - N1):
the per-request cost with start-up and shutdown cancelled out.

Configurations: tracing off (`OTEL_SDK_DISABLED=true`) and tracing on at
100 % with spans recorded and dropped (`OTEL_TRACES_EXPORTER=none`, the
default parent-based sampler following the sampled caller). Each is run
`--rounds` times. Hashing (SipHash and hashbrown, in the connection pool and
the runtime) moves by a few thousand instructions per request from run to
run in either configuration, so a second figure leaves those functions out
(from `callgrind_annotate`); compare medians of several rounds.

Needs valgrind and a release build:
    cargo build --release -p llmd-pd-proxy
    python3 pd-proxy/benches/instructions_per_request.py --rounds 3
"""

import argparse
import http.client
import http.server
import multiprocessing
import os
import pathlib
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REQUEST_BODY = b'{"model":"m","prompt":"hello","max_tokens":4}'
RESPONSE_BODY = (
    b'{"id":"c","choices":[{"text":"hi","finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":4,"completion_tokens":1}}'
)
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
CONFIGS = {
    "off": {"OTEL_SDK_DISABLED": "true"},
    "on": {"OTEL_TRACES_EXPORTER": "none"},
}


class Backend(http.server.BaseHTTPRequestHandler):
    """Answers every POST with a small completion, every GET with 200."""

    protocol_version = "HTTP/1.1"

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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(port, deadline):
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/health")
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                return conn
        except OSError:
            pass
        time.sleep(0.3)
    sys.exit(f"the proxy on port {port} never became healthy")


HASHING = re.compile(r"sip::Hasher|hash_one|hashbrown")
ANNOTATED = re.compile(r"^\s*([\d,]+) \([ \d.]+%\)\s+(\S.*)$")


def hashing(callgrind_out):
    """Instructions spent in hashing functions, from callgrind_annotate."""
    listing = subprocess.run(
        ["callgrind_annotate", "--inclusive=no", "--threshold=100", "--auto=no", callgrind_out],
        capture_output=True, text=True, check=True,
    ).stdout
    total = 0
    for line in listing.splitlines():
        match = ANNOTATED.match(line)
        if match and "PROGRAM TOTALS" not in line and HASHING.search(match.group(2)):
            total += int(match.group(1).replace(",", ""))
    return total


def instructions(binary, backend_port, env, requests, out_dir):
    """Instructions of one proxy run serving `requests` requests: in all,
    and in hashing functions."""
    port = free_port()
    out = pathlib.Path(out_dir) / f"callgrind.{port}"
    proxy = subprocess.Popen(
        [
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
            binary, "--port", str(port), "--vllm-port", str(backend_port),
            "--decoder-host", "127.0.0.1", "--bind-address", "127.0.0.1",
            "--secure-proxy=false",
        ],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        conn = wait_healthy(port, time.monotonic() + 120)
        headers = {"content-type": "application/json", "traceparent": TRACEPARENT}
        for _ in range(requests):
            conn.request("POST", "/v1/completions", REQUEST_BODY, headers)
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                sys.exit(f"request failed: {response.status} {body!r}")
        conn.close()
    finally:
        proxy.terminate()
        proxy.wait(timeout=120)
    match = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.M)
    if not match:
        sys.exit(f"no instruction total in {out}")
    return int(match.group(1)), hashing(str(out))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", default="target/release/llmd-pd-proxy")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n1", type=int, default=200)
    parser.add_argument("--n2", type=int, default=800)
    args = parser.parse_args()

    backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Backend)
    backend_port = backend.server_address[1]
    serving = multiprocessing.Process(target=backend.serve_forever, daemon=True)
    serving.start()
    backend.socket.close()
    per_request = {name: [] for name in CONFIGS}
    without_hashing = {name: [] for name in CONFIGS}
    span = args.n2 - args.n1
    with tempfile.TemporaryDirectory() as out_dir:
        for round_number in range(1, args.rounds + 1):
            for name, env in CONFIGS.items():
                small, small_hashing = instructions(args.binary, backend_port, env, args.n1, out_dir)
                large, large_hashing = instructions(args.binary, backend_port, env, args.n2, out_dir)
                value = (large - small) / span
                rest = value - (large_hashing - small_hashing) / span
                per_request[name].append(value)
                without_hashing[name].append(rest)
                print(
                    f"round {round_number} tracing {name}: {value:,.0f} instructions per request, "
                    f"{rest:,.0f} without hashing"
                )
    for label, values in (("all", per_request), ("without hashing", without_hashing)):
        off = statistics.median(values["off"])
        on = statistics.median(values["on"])
        print(
            f"{label}: median off {off:,.0f}, on {on:,.0f}: "
            f"tracing adds {on - off:,.0f} ({(on - off) / off:+.1%})"
        )

if __name__ == "__main__":
    main()
