"""Instructions a server process executes per request, counted by callgrind.

Shared by the per-request instruction benchmarks of the pd-proxy and the
scheduler (`*/benches/instructions_per_request.py`). Wall-clock numbers on a
shared 2-core VM move by tens of percent between runs; instruction counts do
not. A benchmark runs its server under callgrind twice per configuration,
once serving N1 and once N2 requests, and takes
(instructions(N2) - instructions(N1)) / (N2 - N1): the per-request cost with
start-up and shutdown cancelled out.

Hashing (SipHash and hashbrown, in connection pools and runtimes) moves by a
few thousand instructions per request from run to run in any configuration,
so a second figure leaves those functions out (from `callgrind_annotate`);
compare medians of several rounds.
"""

import argparse
import http.client
import pathlib
import re
import socket
import statistics
import subprocess
import sys
import time

HASHING = re.compile(r"sip::Hasher|hash_one|hashbrown")
ANNOTATED = re.compile(r"^\s*([\d,]+) \([ \d.]+%\)\s+(\S.*)$")
TOTAL = re.compile(r"^(?:summary|totals): (\d+)", re.M)


def free_port():
    """A TCP port free on loopback now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def arguments(doc, binary, n1, n2, more=None):
    """The command line every such benchmark takes: `--binary` (default
    `binary`), `--rounds`, and the two request counts `--n1` and `--n2`;
    `more`, when given, adds a benchmark's own options to the parser."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--binary", default=binary)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n1", type=int, default=n1)
    parser.add_argument("--n2", type=int, default=n2)
    if more is not None:
        more(parser)
    return parser.parse_args()


def wait_for(what, attempt, deadline):
    """Calls `attempt` every 0.3 s until it returns something other than
    None (an `OSError` counts as None) and returns that; exits naming
    `what` at `deadline`."""
    while time.monotonic() < deadline:
        try:
            result = attempt()
            if result is not None:
                return result
        except OSError:
            pass
        time.sleep(0.3)
    sys.exit(f"gave up waiting for {what}")


def wait_healthy(port, deadline):
    """A keep-alive connection to `port` once its `/health` answers 200."""

    def healthy():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", "/health")
        response = conn.getresponse()
        response.read()
        return conn if response.status == 200 else None

    return wait_for(f"the server on port {port} to become healthy", healthy, deadline)


def send(conn, path, body, headers, requests):
    """Sends `requests` POSTs of `body` to `path` one after the other; exits
    on the first answer that is not 200."""
    for _ in range(requests):
        conn.request("POST", path, body, headers)
        response = conn.getresponse()
        answer = response.read()
        if response.status != 200:
            sys.exit(f"request failed: {response.status} {answer[:200]!r}")


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


def counted(command, env, serve, out_dir):
    """Runs `command` under callgrind with `env`, calls `serve(port)` (the
    port is also in the command as `{port}`), stops the process with SIGTERM
    and returns its instructions: in all, and in hashing functions."""
    port = free_port()
    out = pathlib.Path(out_dir) / f"callgrind.{port}"
    process = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
        + [part.format(port=port) for part in command],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        serve(port)
    finally:
        process.terminate()
        process.wait(timeout=120)
    match = TOTAL.search(out.read_text())
    if not match:
        sys.exit(f"no instruction total in {out}")
    return int(match.group(1)), hashing(str(out))


def compare(configs, count, n1, n2, rounds):
    """For each round and each configuration name in `configs` (`off` and
    `on` at least), `count(name, requests)` gives (instructions, hashing
    instructions) of a run serving `requests`; prints the per-request
    figures of each round and the medians' difference, on against off."""
    per_request = {name: [] for name in configs}
    without_hashing = {name: [] for name in configs}
    span = n2 - n1
    for round_number in range(1, rounds + 1):
        for name in configs:
            small, small_hashing = count(name, n1)
            large, large_hashing = count(name, n2)
            value = (large - small) / span
            rest = value - (large_hashing - small_hashing) / span
            per_request[name].append(value)
            without_hashing[name].append(rest)
            print(
                f"round {round_number} tracing {name}: {value:,.0f} instructions per request, "
                f"{rest:,.0f} without hashing",
                flush=True,
            )
    for label, values in (("all", per_request), ("without hashing", without_hashing)):
        off = statistics.median(values["off"])
        for name in configs:
            if name == "off":
                continue
            on = statistics.median(values[name])
            print(
                f"{label}: median off {off:,.0f}, {name} {on:,.0f}: "
                f"tracing adds {on - off:,.0f} ({(on - off) / off:+.1%})"
            )
