#!/usr/bin/env python3
"""Drives an LCP gateway with the official `openai` package, as any OpenAI user would: only the
base URL points at the gateway. Runs chat completions (JSON and stream) and responses (JSON and
stream), checks that each answer contains the expected text, and that a wrong key is refused.

Prints one JSON object with what it saw; exits 1 on the first mismatch, 2 without the package.

    python3 tests/python/openai_client.py --base-url http://127.0.0.1:8080/v1 \
        --api-key KEY --model gpt-5.2 --expect "Hello from LCP"
"""

import argparse
import json
import sys

try:
    import openai
    from openai import OpenAI
except ImportError:
    print("the openai package is missing: run scripts/deps.sh (pip install openai)", file=sys.stderr)
    sys.exit(2)


def fail(what, got):
    print(f"FAIL {what}: {got!r}", file=sys.stderr)
    sys.exit(1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base-url", required=True)
    p.add_argument("--api-key", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--expect", required=True)
    a = p.parse_args()
    client = OpenAI(base_url=a.base_url, api_key=a.api_key, max_retries=0, timeout=60)
    messages = [{"role": "user", "content": "Say hello"}]
    seen = {"openai_version": openai.__version__}

    # Chat completions, JSON, with the gateway's headers.
    raw = client.chat.completions.with_raw_response.create(model=a.model, messages=messages)
    completion = raw.parse()
    text = completion.choices[0].message.content
    if text != a.expect:
        fail("chat json", text)
    seen["chat_json"] = text
    seen["peer"] = raw.headers.get("x-lcp-peer-id")
    seen["price_msat"] = raw.headers.get("x-lcp-price-msat")
    if not seen["peer"] or not seen["price_msat"] or not raw.headers.get("x-lcp-job-id"):
        fail("chat headers", dict(raw.headers))

    # Chat completions, streamed.
    stream = client.chat.completions.create(model=a.model, messages=messages, stream=True)
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    if "".join(pieces) != a.expect or len(pieces) < 2:
        fail("chat stream", pieces)
    seen["chat_stream_chunks"] = len(pieces)

    # Responses, JSON.
    resp = client.responses.create(model=a.model, input="Say hello")
    if resp.output_text != a.expect:
        fail("responses json", resp.output_text)
    seen["responses_json"] = resp.output_text

    # Responses, streamed.
    stream = client.responses.create(model=a.model, input="Say hello", stream=True)
    deltas, completed = [], False
    for ev in stream:
        if ev.type == "response.output_text.delta":
            deltas.append(ev.delta)
        elif ev.type == "response.completed":
            completed = True
    if "".join(deltas) != a.expect or not completed:
        fail("responses stream", (deltas, completed))
    seen["responses_stream_deltas"] = len(deltas)

    # A wrong key is refused with the SDK's authentication error.
    bad = OpenAI(base_url=a.base_url, api_key=a.api_key + "-wrong", max_retries=0, timeout=60)
    try:
        bad.chat.completions.create(model=a.model, messages=messages)
        fail("wrong key", "accepted")
    except openai.AuthenticationError as e:
        seen["wrong_key_status"] = e.status_code

    print(json.dumps(seen))


if __name__ == "__main__":
    main()
