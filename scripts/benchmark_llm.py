"""Lesson 16's language model served by the embedded Triton, measured at several concurrent gRPC streams:
time to first token, inter-token latency and tokens/s (in all and per stream), in-flight batching
(`sequence_batching { iterative_sequence: true }`) against request-level batching (`dynamic_batching { }`),
alternating repeats at each load, with their spread. On a GPU the model runs on CUDA (KIND_GPU).

    .venv/bin/python scripts/benchmark_llm.py [--device cpu|cuda] [--streams 1 4 16] [--repeats 3] [--json FILE]

It prints a Markdown table (docs/benchmarks.md holds the runs) and asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import tempfile

import psutil

from triton_course import gpu, llm, start_server, verdicts
from triton_course.checks.lab16 import inflight_config

QUESTIONS = ["What is the capital of France?", "Name a fruit.", "What is 2+2?", "Say hello.",
             "What colour is the sky?", "Name a planet.", "Name a colour.", "What is water made of?"]


def config(batching: str, max_batch_size: int, kind: str) -> str:
    """Lesson 16's two configs (the lesson shows their text; lab 16's check serves the in-flight one), with
    max_batch_size and the instance kind set; request-level swaps the sequence batcher for the dynamic one."""
    inflight = inflight_config().replace("max_batch_size: 8", f"max_batch_size: {max_batch_size}")
    inflight = inflight.replace("kind: KIND_CPU", f"kind: {kind}")
    if batching == "in-flight":
        return inflight
    return (inflight[:inflight.index("sequence_batching")] + "dynamic_batching { }\n"
            + inflight[inflight.index("instance_group"):])


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--stagger", type=float, default=0.05,
                        help="seconds between stream starts, so later requests arrive while earlier ones generate")
    parser.add_argument("--json", help="also write the figures to this file")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    kind = "KIND_GPU" if args.device == "cuda" else "KIND_CPU"
    max_batch_size = max(8, max(args.streams))
    tok = llm.tokenizer()
    params = {"temperature": 0, "max_tokens": args.max_tokens}
    card = gpu.torch_device_name() if args.device == "cuda" else None
    machine = (f"{psutil.cpu_count()} CPU cores, {platform.processor() or platform.machine()}"
               + (f", GPU {card}" if card else ""))
    rows = []
    with tempfile.TemporaryDirectory() as repo:
        models = {"request-level": "smollm2_request_level", "in-flight": "smollm2"}
        for batching, name in models.items():
            llm.add_llm(repo, name, config(batching, max_batch_size, kind))
        with start_server(repo) as server:
            print(f"Triton {server.version} ({server.runtime}); {machine}; SmolLM2-135M-Instruct FP32 on "
                  f"{args.device} ({kind}, one instance, max_batch_size {max_batch_size}); greedy, "
                  f"{args.max_tokens} tokens at most, streams started {args.stagger} s apart; "
                  f"{args.repeats} alternating repeats per load\n")
            for name in models.values():  # warm-up: the first forward passes build the kernels and caches
                llm.measure_streams(server.grpc_address, name, [llm.chat_prompt(
                    [{"role": "user", "content": QUESTIONS[0]}], tok)] * 2, params)
            print("| streams | batching | TTFT ms | inter-token ms | tokens/s in all | tokens/s per stream |")
            print("| ---: | --- | --- | --- | --- | --- |")
            for streams in args.streams:
                prompts = [llm.chat_prompt([{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}], tok)
                           for i in range(streams)]
                runs = dict(zip(models, verdicts.alternate(
                    *(lambda m=m, prompts=prompts: llm.measure_streams(server.grpc_address, m, prompts, params,
                                                                       stagger_s=args.stagger)
                      for m in models.values()),
                    repeats=args.repeats)))
                for batching, loads in runs.items():
                    def spread(key, loads=loads):
                        return verdicts.Spread(tuple(key(run) for run in loads))
                    row = {"streams": streams, "batching": batching,
                           "ttft_ms": spread(lambda r: r.ttft_ms), "itl_ms": spread(lambda r: r.itl_ms),
                           "tokens_per_s": spread(lambda r: r.tokens_per_s),
                           "per_stream_tokens_per_s": spread(lambda r: r.per_stream_tokens_per_s)}
                    print(f"| {streams} | {batching} | {row['ttft_ms'].describe()} "
                          f"| {row['itl_ms'].describe('{:.1f}')} | {row['tokens_per_s'].describe()} "
                          f"| {row['per_stream_tokens_per_s'].describe('{:.1f}')} |", flush=True)
                    rows.append(row)
    if args.json:
        record = {"date": datetime.date.today().isoformat(), "machine": machine, "device": args.device,
                  "max_tokens": args.max_tokens, "stagger_s": args.stagger, "repeats": args.repeats,
                  "max_batch_size": max_batch_size,
                  "results": [{k: (list(v.values) if isinstance(v, verdicts.Spread) else v) for k, v in r.items()}
                              for r in rows]}
        with open(args.json, "w") as out:
            json.dump(record, out, indent=1)


if __name__ == "__main__":
    main()
