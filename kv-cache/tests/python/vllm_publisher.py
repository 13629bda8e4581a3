#!/usr/bin/env python3
"""A vLLM-style KV-event publisher for the subscriber's compatibility tests.

Encodes events with msgspec structs that mirror vllm/distributed/kv_events.py
(tagged events, omit_defaults; array_like for the vLLM <= 0.23 encoding, maps
with a "type" key for vLLM >= 0.24), publishes [topic, seq (8 bytes BE),
payload] on a PUB-compatible socket, and answers replay requests on a ROUTER
socket like vLLM's ZmqEventPublisher.

The socket is an XPUB so the script can wait for the subscriber's
subscription before publishing (subscribers see exactly what a PUB sends).

Protocol with the test on stdout: "READY <pub port> <replay port>", then
"PUBLISHED" once the scenario is sent. It serves replays until stdin closes
or reads "exit".
"""

import argparse
import hashlib
import sys
import time

import msgspec
import zmq

END_SEQ = (-1).to_bytes(8, "big", signed=True)


def event_types(array_like):
    """Struct definitions mirroring vLLM's, in either encoding."""

    # The batch envelope is positional in both encodings; only events differ.
    class EventBatch(msgspec.Struct, array_like=True, omit_defaults=True, gc=False):
        ts: float
        events: list
        data_parallel_rank: int | None = None

    class KVCacheEvent(msgspec.Struct, array_like=array_like, omit_defaults=True, gc=False, tag=True):
        pass

    class BlockStored(KVCacheEvent):
        block_hashes: list[int | bytes]
        parent_block_hash: int | bytes | None
        token_ids: list[int]
        block_size: int
        lora_id: int | None
        medium: str | None
        lora_name: str | None
        extra_keys: list[tuple | None] | None = None
        group_idx: int | None = None
        kv_cache_spec_kind: str | None = None
        kv_cache_spec_sliding_window: int | None = None
        locality: str | None = None
        ownership: str | None = None
        session_id: str | None = None
        lookahead_token_ids: list[int] | None = None

    class BlockRemoved(KVCacheEvent):
        block_hashes: list[int | bytes]
        medium: str | None
        group_idx: int | None = None
        locality: str | None = None
        ownership: str | None = None

    class AllBlocksCleared(KVCacheEvent):
        pass

    class BlockInactive(KVCacheEvent):
        """An event type this subscriber does not know."""

        block_hashes: list[int | bytes]

    return EventBatch, BlockStored, BlockRemoved, AllBlocksCleared, BlockInactive


def block_hash(name, as_bytes):
    digest = hashlib.sha256(name.encode()).digest()
    return digest if as_bytes else int.from_bytes(digest[-8:], "big")


def tokens(start, blocks):
    return list(range(start, start + 16 * blocks))


def scenario(name, array_like):
    """[(seq, payload or None to skip live publication, live)], frames to send raw."""
    EventBatch, BlockStored, BlockRemoved, AllBlocksCleared, BlockInactive = event_types(array_like)
    enc = msgspec.msgpack.Encoder()
    h = [block_hash(f"{name}-{i}", array_like) for i in range(8)]
    prompt = tokens(1000, 5)

    def stored(hs, parent, toks, medium="GPU", **extra):
        return BlockStored(hs, parent, toks, 16, None, medium, None, **extra)

    def batch(*events):
        return enc.encode(EventBatch(time.time(), list(events), 0))

    if name == "full":
        return [
            (0, batch(stored(h[0:2], None, prompt[:32])), True),
            (
                1,
                batch(
                    stored(
                        h[2:4],
                        h[1],
                        prompt[32:64],
                        extra_keys=[None, None],
                        group_idx=0,
                        kv_cache_spec_kind="full_attention",
                        session_id="s-1",
                        lookahead_token_ids=[1, 2],
                    )
                ),
                True,
            ),
            (2, b"\xc1 not msgpack", True),
            (3, batch(BlockInactive([h[0]]), stored(h[4:5], h[3], prompt[64:80], medium="CPU")), True),
            (4, batch(BlockRemoved([h[3]], "GPU")), False),
            (5, batch(stored(h[5:6], None, tokens(5000, 1))), True),
        ]
    if name == "restart":
        return [(0, batch(stored(h[6:7], None, tokens(9000, 1))), True)]
    if name == "simple":
        return [(0, batch(stored(h[0:2], None, prompt[:32]), AllBlocksCleared(), stored(h[0:1], None, prompt[:16])), True)]
    raise SystemExit(f"unknown scenario {name}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--encoding", choices=["array", "map"], required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--scenario", required=True)
    p.add_argument("--port", type=int, default=0, help="bind the publisher on this port (0: any)")
    p.add_argument("--connect", help="connect the publisher to this endpoint instead of binding")
    args = p.parse_args()

    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.LINGER, 1000)
    if args.connect:
        pub.connect(args.connect)
        pub_port = 0
    elif args.port:
        pub.bind(f"tcp://127.0.0.1:{args.port}")
        pub_port = args.port
    else:
        pub_port = pub.bind_to_random_port("tcp://127.0.0.1")
    replay = ctx.socket(zmq.ROUTER)
    replay_port = replay.bind_to_random_port("tcp://127.0.0.1")
    print(f"READY {pub_port} {replay_port}", flush=True)

    # Wait for the subscriber's subscription (first byte 1).
    while True:
        message = pub.recv()
        if message[:1] == b"\x01":
            break

    topic = args.topic.encode()
    buffer = []
    for seq, payload, live in scenario(args.scenario, args.encoding == "array"):
        buffer.append((seq, payload))
        if live:
            pub.send_multipart([topic, seq.to_bytes(8, "big"), payload])
    # A message that is not [topic, seq, payload].
    pub.send_multipart([topic, b"only two frames"])
    print("PUBLISHED", flush=True)

    poller = zmq.Poller()
    poller.register(replay, zmq.POLLIN)
    poller.register(sys.stdin, zmq.POLLIN)
    while True:
        ready = dict(poller.poll())
        if replay in ready:
            frames = replay.recv_multipart()
            if len(frames) == 3:
                client, _, start = frames
                start_seq = int.from_bytes(start, "big")
                for seq, payload in buffer:
                    if seq >= start_seq:
                        replay.send_multipart([client, b"", seq.to_bytes(8, "big"), payload])
                replay.send_multipart([client, b"", END_SEQ, b""])
        if sys.stdin.fileno() in ready or sys.stdin in ready:
            line = sys.stdin.readline()
            if not line or line.strip() == "exit":
                break
    pub.close(linger=0)
    replay.close(linger=0)


if __name__ == "__main__":
    main()
