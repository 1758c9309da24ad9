"""Serving throughput: the vLLM server at 1, 8 and 32 concurrent requests against transformers
`generate` one request at a time, then likelihood scoring of explanations (server vs transformers
one by one). Same model, adapter, faces, prompts and max tokens, greedy, all in one run.

    python bench/bench_serving.py          # the shipped offline default and its shipped adapter
    python bench/bench_serving.py --model /tmp/devtiny/model --adapter lora_a=/tmp/devtiny/lora_a --n 64
    python bench/bench_serving.py --adapter none --n 4 --n-score 4 --max-tokens 4   # a smoke run, base only

The scoring table also counts the HTTP requests the client sent per explanation (the openai
client's resends included). With an adapter, the same requests go last to a server of the adapter
merged into a copy of the base (what `facellm eval` does with merge_adapters: true). The server and transformers share the machine's cores but never run at the same time.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from facellm.inference.base import Backend, ChatRequest, ScoreRequest
from facellm.inference.hf import HFBackend
from facellm.inference.server import start_server
from facellm.inference.vllm_server import VLLMServerBackend
from facellm.synthface import synthface_records

CONCURRENCY = (1, 8, 32)
QUESTIONS = ("Describe the face.", "Is the person wearing glasses? Answer yes or no.",
             "What is the facial expression?", "Describe the hair.")
VERDICT_PROMPT = "Do these two faces show the same person?"


def build_requests(n: int, n_score: int, max_tokens: int, adapter: str | None
                   ) -> tuple[list[ChatRequest], list[ScoreRequest]]:
    faces = [r.image for r in synthface_records("test", 16, 2, seed=0)]
    rng = random.Random(0)
    chats = [ChatRequest([faces[i % len(faces)]], QUESTIONS[i % len(QUESTIONS)], max_tokens=max_tokens,
                         adapter=adapter) for i in range(n)]
    scores = []
    for i in range(n_score):
        same = rng.random() < 0.5
        explanation = (f"Match Verdict: {'Match' if same else 'Non-Match'}\n"
                       f"Similarities: {rng.choice(['Both have brown hair.', 'The face shapes agree.'])}\n"
                       f"Differences: {rng.choice(['None.', 'The nose shape differs.', 'The eyebrows differ.'])}\n"
                       f"Overall Reasoning: The {'similarities' if same else 'differences'} weigh more.")
        pair = [faces[i % len(faces)], faces[(i * 7 + 3) % len(faces)]]
        scores.append(ScoreRequest(pair, VERDICT_PROMPT, explanation, adapter))
    return chats, scores


def timed(fn: Callable[[], list]) -> tuple[list, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def one_by_one(backend: Backend, requests: Sequence[ChatRequest]) -> list:
    return [backend.chat([r])[0] for r in requests]


def print_table(title: str, unit: str, rows: list[tuple[str, int, float]]) -> None:
    """rows: (name, count, seconds); the first row is the baseline."""
    base_rate = rows[0][1] / rows[0][2]
    print(f"\n{title}\n| backend | {unit} | seconds | {unit}/s | vs baseline |\n|---|---:|---:|---:|---:|")
    for name, count, seconds in rows:
        print(f"| {name} | {count} | {seconds:.2f} | {count / seconds:.1f} | {count / seconds / base_rate:.2f}x |")


def build_parser() -> argparse.ArgumentParser:
    from facellm.models.shipped import SHIPPED_ADAPTER

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="facellm_tiny",
                        help="registry name or model folder (default: the offline default, shipped)")
    parser.add_argument("--adapter", default=f"facellm-lora={SHIPPED_ADAPTER}",
                        help="NAME=PATH of a LoRA adapter every request uses, or none (default: the shipped adapter)")
    parser.add_argument("--n", type=int, default=64, help="chat requests per measurement")
    parser.add_argument("--n-score", type=int, default=256, help="explanations to score")
    parser.add_argument("--max-tokens", type=int, default=32)
    return parser


def main() -> None:
    from facellm.models.loading import resolve_model_path

    args = build_parser().parse_args()
    args.model = str(resolve_model_path(args.model)[0])
    adapters, adapter = {}, None
    if args.adapter and args.adapter != "none":
        adapter, path = args.adapter.split("=", 1)
        adapters = {adapter: path}
    chats, scores = build_requests(args.n, args.n_score, args.max_tokens, adapter)

    hf = HFBackend(args.model, adapters)
    one_by_one(hf, chats[:2])  # warm-up
    replies, hf_seconds = timed(lambda: one_by_one(hf, chats))
    chat_rows = [("transformers generate, one by one", sum(r.completion_tokens for r in replies), hf_seconds)]
    hf_scores, hf_score_seconds = timed(lambda: [hf.continuation_logprobs([s])[0] for s in scores])
    score_rows = [("transformers forward, one by one", len(scores), hf_score_seconds)]

    with start_server(args.model, adapters) as server:
        for concurrency in CONCURRENCY:
            client = VLLMServerBackend(server.url, max_concurrency=concurrency)
            client.chat(chats[:concurrency])  # warm-up
            replies, seconds = timed(lambda: client.chat(chats))
            chat_rows.append((f"vLLM server, {concurrency} concurrent",
                              sum(r.completion_tokens for r in replies), seconds))
        client = VLLMServerBackend(server.url, max_concurrency=32)
        client.continuation_logprobs(scores[:8])  # warm-up
        before = client.http_requests
        served_scores, seconds = timed(lambda: client.continuation_logprobs(scores))
        requests_per_score = (client.http_requests - before) / len(scores)
        score_rows.append(("vLLM server, 32 concurrent", len(scores), seconds))

    merged_worst = None
    if adapter:
        import tempfile

        from facellm.models.lora import merge_adapter

        with tempfile.TemporaryDirectory(prefix="facellm-merged-") as tmp:
            merged = merge_adapter(args.model, adapters[adapter], tmp)
            with start_server(str(merged), {}) as server:
                client = VLLMServerBackend(server.url, max_concurrency=8)
                base_chats = [replace(c, adapter=None) for c in chats]
                client.chat(base_chats[:8])  # warm-up
                replies, seconds = timed(lambda: client.chat(base_chats))
                chat_rows.append(("vLLM server, adapter merged, 8 concurrent",
                                  sum(r.completion_tokens for r in replies), seconds))
                client = VLLMServerBackend(server.url, max_concurrency=32)
                base_scores = [replace(s, adapter=None) for s in scores]
                client.continuation_logprobs(base_scores[:8])  # warm-up
                merged_scores, seconds = timed(lambda: client.continuation_logprobs(base_scores))
                score_rows.append(("vLLM server, adapter merged, 32 concurrent", len(scores), seconds))
        merged_worst = max(abs(x - y) for a, b in zip(served_scores, merged_scores) for x, y in zip(a, b))

    worst = max(abs(x - y) for a, b in zip(hf_scores, served_scores) for x, y in zip(a, b))
    print(f"\nmodel {args.model}, adapter {adapter or 'none (base)'}, {args.n} chat requests of up to "
          f"{args.max_tokens} tokens, greedy")
    print_table("Generation throughput", "tokens", chat_rows)
    print_table(f"Likelihood scoring of {len(scores)} explanations (image pairs); largest per-token "
                f"|server - transformers| = {worst:.1e}; {requests_per_score:.2f} HTTP requests per explanation",
                "explanations", score_rows)
    if merged_worst is not None:
        print(f"largest per-token |merged - adapter| on the server: {merged_worst:.1e}")


if __name__ == "__main__":
    main()
