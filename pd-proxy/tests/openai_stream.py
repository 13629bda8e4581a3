"""Streams a chat completion through the P/D proxy with the OpenAI SDK.

Usage: openai_stream.py BASE_URL PREFILLER_HOST_PORT
Prints one JSON line: the streamed text, the chunk count and the usage.
"""

import json
import sys

import openai


def main() -> None:
    base_url, prefiller = sys.argv[1], sys.argv[2]
    client = openai.OpenAI(base_url=base_url, api_key="test-key", max_retries=0)
    stream = client.chat.completions.create(
        model="meta-llama/Llama-3.1-8B",
        messages=[{"role": "user", "content": "say hello"}],
        max_tokens=16,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-prefiller-host-port": prefiller},
    )
    text, chunks, usage = "", 0, None
    for chunk in stream:
        chunks += 1
        for choice in chunk.choices:
            text += choice.delta.content or ""
        if chunk.usage is not None:
            usage = chunk.usage.model_dump()
    print(json.dumps({"text": text, "chunks": chunks, "usage": usage}))


if __name__ == "__main__":
    main()
