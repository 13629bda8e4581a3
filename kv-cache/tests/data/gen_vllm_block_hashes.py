#!/usr/bin/env python3
"""Generates vllm_block_hashes.json: vLLM sha256_cbor block-hash vectors.

Independent of the Rust code: it hashes exactly as vLLM does with
`--prefix-caching-hash-algo sha256_cbor` (cbor2 canonical encoding of
`(parent_bytes, tuple(token_ids), extra_keys_or_None)`, SHA-256, NONE_HASH =
sha256_cbor(seed)). Run with the test venv:
    .venv/bin/python kv-cache/tests/data/gen_vllm_block_hashes.py
"""

import hashlib
import json
import pathlib

import cbor2


def sha256_cbor(value) -> bytes:
    return hashlib.sha256(cbor2.dumps(value, canonical=True)).digest()


def block_hashes(seed, block_size, tokens, extra_keys):
    parent = sha256_cbor(seed)
    out = []
    for i in range(len(tokens) // block_size):
        block = tuple(tokens[i * block_size : (i + 1) * block_size])
        extra = extra_keys[i] if i < len(extra_keys) else None
        parent = sha256_cbor((parent, block, extra))
        out.append(parent)
    return out


def extra_to_json(value):
    if isinstance(value, bool):
        raise TypeError("bool is not an extra key")
    if isinstance(value, int):
        return {"int": value}
    if isinstance(value, str):
        return {"text": value}
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    if isinstance(value, tuple):
        return {"tuple": [extra_to_json(v) for v in value]}
    raise TypeError(type(value))


CASES = [
    ("default seed, tokens 1..16", "vllm-none-hash", 16, list(range(1, 17)), []),
    ("default seed, three blocks and a partial one", "vllm-none-hash", 16, list(range(100, 160)), []),
    ("PYTHONHASHSEED=0, block size 4", "0", 4, [7, 0, 23, 24, 255, 256, 65535, 65536, 4294967295, 1, 2, 3], []),
    ("large vocabulary ids", "vllm-none-hash", 8, [151643, 151644, 200000, 12, 99999, 3, 4, 5] * 3, []),
    ("block size 1", "42", 1, [5, 6, 7], []),
    (
        "extra keys: LoRA name, multimodal hash tuples, salt bytes, negative int",
        "vllm-none-hash",
        4,
        list(range(1, 17)),
        [("my-lora",), None, (("mm-hash-abc", 3), b"\x00\xff salt", -5), (0, "x" * 30)],
    ),
    ("shorter than one block", "vllm-none-hash", 16, [1, 2, 3], []),
]


def main():
    vectors = []
    for name, seed, block_size, tokens, extra in CASES:
        hashes = block_hashes(seed, block_size, tokens, extra)
        vectors.append(
            {
                "name": name,
                "seed": seed,
                "block_size": block_size,
                "tokens": tokens,
                "extra_keys": [None if e is None else [extra_to_json(v) for v in e] for e in extra],
                "none_hash": sha256_cbor(seed).hex(),
                "hashes": [h.hex() for h in hashes],
                "event_hashes": [int.from_bytes(h[-8:], "big") for h in hashes],
            }
        )
    out = pathlib.Path(__file__).with_name("vllm_block_hashes.json")
    out.write_text(json.dumps(vectors, indent=1) + "\n")


if __name__ == "__main__":
    main()
