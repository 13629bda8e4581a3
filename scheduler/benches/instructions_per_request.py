#!/usr/bin/env python3
"""Instructions the scheduler executes per decode-only chat request, tracing off, recorded and exported.

The scheduler process (gateway, tokenizer, plugins, KV-cache index) runs
under callgrind beside a local stack started by `llmd-stack --serve` (its
simulated pods and pd-proxies serve the requests; the scheduler under test
reads the same pool and plugin configuration and subscribes to the same KV
events). It serves N1 and then N2 sequential chat requests, the same as the
stack benchmark's, in two separate runs; the difference divided by N2 - N1
is the per-request cost with start-up and shutdown cancelled out (see
`scripts/callgrind_per_request.py`). Pod metrics are scraped once at start
and kept fresh for the whole run, so that polling does not scale with the
slower run's length.

Configurations, each run `--rounds` times:
- off: `OTEL_SDK_DISABLED=true`;
- on: every request's spans recorded (`parentbased_traceidratio` at 1, the
  requests carry no `traceparent`) and dropped (`OTEL_TRACES_EXPORTER=none`);
- export: the same, exported over OTLP gRPC to the stack's receiver in full
  batches of 512 (the schedule delay is longer than the run, so batch size
  and not the pace under callgrind sets how often a batch is sent).

Needs valgrind and release builds:
    cargo build --release -p llmd-tests --bin llmd-stack
    python3 scheduler/benches/instructions_per_request.py --rounds 3
"""

import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "scripts"))
import callgrind_per_request as counting  # noqa: E402

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
REQUEST_BODY = json.dumps({
    "model": MODEL,
    "messages": [{"role": "user", "content": "how fast is the stack today"}],
    "max_tokens": 8,
    "stream": False,
}).encode()
SAMPLED = {
    "OTEL_SDK_DISABLED": "false",
    "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
    "OTEL_TRACES_SAMPLER_ARG": "1.0",
}
RECEIVER = re.compile(r"OTLP receiver \(gRPC\) on (http://\S+)")


def configs(receiver):
    """The environment of each configuration, given the stack's receiver."""
    return {
        "off": {"OTEL_SDK_DISABLED": "true"},
        "on": {**SAMPLED, "OTEL_TRACES_EXPORTER": "none"},
        "export": {
            **SAMPLED,
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver,
            "OTEL_BSP_SCHEDULE_DELAY": "3600000",
        },
    }


def start_stack(binary, log_dir):
    """Starts `llmd-stack --serve`; returns the process and its receiver's
    endpoint once the stack is up."""
    output = open(pathlib.Path(log_dir) / "stack.out", "w+")
    stack = subprocess.Popen(
        [binary, "--serve", "--port", "0", "--log-dir", log_dir],
        stdout=output, stderr=subprocess.STDOUT,
    )

    def up():
        output.seek(0)
        text = output.read()
        if "The stack is up" in text:
            return RECEIVER.search(text).group(1)
        if stack.poll() is not None:
            sys.exit(f"llmd-stack exited:\n{text}")
        return None

    try:
        return stack, counting.wait_for("the stack to come up", up, time.monotonic() + 180)
    except SystemExit:
        stack.terminate()
        raise


def wait_ready(port, pods, deadline):
    """Waits until the scheduler on `port` has fresh metrics of `pods` pods."""

    def ready():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as answer:
            return f"llmd_scheduler_pods_ready {pods}\n" in answer.read().decode() or None

    counting.wait_for(f"the scheduler on port {port} to see {pods} ready pods", ready, deadline)


def main():
    args = counting.arguments(__doc__, "target/release/llmd-stack", 40, 240)

    with tempfile.TemporaryDirectory() as work_dir:
        stack, receiver = start_stack(args.binary, work_dir)
        try:
            pool = pathlib.Path(work_dir) / "pool.yaml"
            pods = pool.read_text().count("- address:")
            command = [
                args.binary, "component", "scheduler", "--",
                "--pool", str(pool),
                "--config", str(pathlib.Path(work_dir) / "epp-config.yaml"),
                "--listen", "127.0.0.1:{port}", "--no-reload",
                "--metrics-interval-ms", "3600000", "--stale-after-ms", "3600000",
            ]
            environment = configs(receiver)
            base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
            base["OTEL_SERVICE_NAME"] = "llm-d-scheduler-counted"

            def count(name, requests):
                def serve(port):
                    conn = counting.wait_healthy(port, time.monotonic() + 180)
                    wait_ready(port, pods, time.monotonic() + 180)
                    counting.send(
                        conn, "/v1/chat/completions", REQUEST_BODY,
                        {"content-type": "application/json"}, requests,
                    )
                    conn.close()

                return counting.counted(command, {**base, **environment[name]}, serve, work_dir)

            counting.compare(environment, count, args.n1, args.n2, args.rounds)
        finally:
            stack.terminate()
            stack.wait(timeout=60)


if __name__ == "__main__":
    main()
