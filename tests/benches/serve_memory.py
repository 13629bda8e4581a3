#!/usr/bin/env python3
"""Resident memory of `llmd-stack --serve` before and after N chat requests.

Starts the given `llmd-stack` binary with `--serve` (every span sampled,
no forwarding), reads the gateway URL it prints, sends N decode-only chat
requests from 32 keep-alive connections, waits 3 s for the last traces to
be printed, and prints the stack process's VmRSS before and after. A
session that keeps nothing per request stays flat as N grows.

    cargo build --release -p llmd-tests --bin llmd-stack
    python3 tests/benches/serve_memory.py target/release/llmd-stack 16000
"""

import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

CONNECTIONS = 32
GATEWAY = re.compile(r"gateway \(OpenAI API\): http://([^:/]+):(\d+)/v1")
BODY = json.dumps({
    "model": "meta-llama/Llama-3.1-8B-Instruct",
    "messages": [{"role": "user", "content": "hi"}],
    "max_tokens": 1,
}).encode()


def rss_kb(pid):
    """The process's resident set in kB."""
    with open(f"/proc/{pid}/status") as status:
        return int(re.search(r"VmRSS:\s+(\d+)", status.read()).group(1))


def send(host, port, requests):
    """Sends `requests` chat requests over one connection."""
    conn = http.client.HTTPConnection(host, port, timeout=60)
    for _ in range(requests):
        conn.request("POST", "/v1/chat/completions", BODY, {"content-type": "application/json"})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            sys.exit(f"request failed: {response.status}")


def main():
    binary, requests = sys.argv[1], int(sys.argv[2])
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["OTEL_TRACES_SAMPLER"] = "parentbased_always_on"
    with tempfile.TemporaryDirectory() as log_dir:
        stack = subprocess.Popen(
            [binary, "--serve", "--port", "0", "--log-dir", log_dir],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )
        try:
            for line in stack.stdout:
                match = GATEWAY.search(line)
                if match:
                    host, port = match.group(1), int(match.group(2))
                    break
            else:
                sys.exit("the stack exited before printing its gateway")
            threading.Thread(target=lambda: [None for _ in stack.stdout], daemon=True).start()
            before = rss_kb(stack.pid)
            started = time.monotonic()
            workers = [
                threading.Thread(target=send, args=(host, port, requests // CONNECTIONS))
                for _ in range(CONNECTIONS)
            ]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            elapsed = time.monotonic() - started
            time.sleep(3)
            print(f"{requests} requests in {elapsed:.1f} s: VmRSS {before} kB before, "
                  f"{rss_kb(stack.pid)} kB after")
        finally:
            stack.terminate()
            stack.wait(timeout=60)


if __name__ == "__main__":
    main()
