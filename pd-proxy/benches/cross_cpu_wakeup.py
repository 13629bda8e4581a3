#!/usr/bin/env python3
"""What one loopback round trip costs on one CPU and across two.

The pass-through benchmark's streaming scenario sends one request at a
time, so every hop between the bench (CPU 0) and the proxy under test
(CPU 1) wakes an idle CPU. How much that costs is a property of the
machine, not of the proxy: a virtual machine whose idle vCPU halts at once
(the guest's `haltpoll` cpuidle driver with `guest_halt_poll_ns` 0, or no
polling at all) pays an exit to the hypervisor and an inter-processor
interrupt per wake-up. This measures it, with nothing of the project
involved: two processes exchange one byte over a loopback TCP connection
(`TCP_NODELAY`), first both on CPU 0, then one on CPU 0 and one on CPU 1,
and the median and 99th percentile round trip of each layout are printed
with the machine's idle settings. A proxy between two processes on
different CPUs adds two such round trips to a request.

    python3 pd-proxy/benches/cross_cpu_wakeup.py [--round-trips N]
"""

import argparse
import multiprocessing
import os
import pathlib
import socket
import statistics
import time

IDLE_SETTINGS = (
    pathlib.Path("/sys/devices/system/cpu/cpuidle/current_driver"),
    pathlib.Path("/sys/module/haltpoll/parameters/guest_halt_poll_ns"),
)


def idle_settings():
    """The cpuidle driver and guest halt-polling time, where the kernel
    shows them."""
    shown = []
    for path in IDLE_SETTINGS:
        try:
            shown.append(f"{path.name} {path.read_text().strip()}")
        except OSError:
            shown.append(f"{path.name} not shown")
    return ", ".join(shown)


def echo(listener, cpu):
    """Pinned to `cpu`, sends back every byte received on one connection."""
    os.sched_setaffinity(0, {cpu})
    connection, _ = listener.accept()
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with connection:
        while data := connection.recv(64):
            connection.sendall(data)


def round_trips(server_cpu, client_cpu, count):
    """Microseconds of each of `count` round trips, the echoing process on
    `server_cpu` and this one on `client_cpu`."""
    listener = socket.create_server(("127.0.0.1", 0))
    # Forked, so that the child inherits the listening socket as it is.
    server = multiprocessing.get_context("fork").Process(target=echo, args=(listener, server_cpu))
    server.start()
    os.sched_setaffinity(0, {client_cpu})
    samples = []
    with socket.create_connection(listener.getsockname()) as connection:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(count):
            started = time.perf_counter_ns()
            connection.sendall(b"x")
            if not connection.recv(64):
                raise SystemExit("the echoing process closed the connection")
            samples.append((time.perf_counter_ns() - started) / 1000)
    server.join(timeout=10)
    listener.close()
    return samples


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--round-trips", type=int, default=20_000)
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    print(f"idle settings: {idle_settings()}")
    layouts = [(cpus[0], cpus[0])]
    if len(cpus) >= 2:
        layouts.append((cpus[0], cpus[1]))
    else:
        print("one CPU available: the cross-CPU layout is skipped")
    for server_cpu, client_cpu in layouts:
        samples = sorted(round_trips(server_cpu, client_cpu, args.round_trips))
        p99 = samples[int(len(samples) * 0.99)]
        print(
            f"CPUs {server_cpu} and {client_cpu}: round trip p50 "
            f"{statistics.median(samples):6.1f} us, p99 {p99:6.1f} us"
        )


if __name__ == "__main__":
    main()
