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

QUESTIONS = ["What is the capital of France?", "Name a fruit.", "What is 2+2?", "Say hello.",
             "What colour is the sky?", "Name a planet.", "Name a colour.", "What is water made of?"]


def config(batching: str, max_batch_size: int, kind: str) -> str:
    """Lesson 16's two configs (the lesson shows their text), with max_batch_size and the instance kind set."""
    inputs = """backend: "python"
max_batch_size: %d
model_transaction_policy { decoupled: true }
input [
  { name: "text_input" data_type: TYPE_STRING dims: [ 1 ] },
  { name: "stream" data_type: TYPE_BOOL dims: [ 1 ] optional: true },
  { name: "sampling_parameters" data_type: TYPE_STRING dims: [ 1 ] optional: true },
  { name: "exclude_input_in_output" data_type: TYPE_BOOL dims: [ 1 ] optional: true }
]
output [ { name: "text_output" data_type: TYPE_STRING dims: [ -1 ] } ]
""" % max_batch_size
    scheduler = {
        "in-flight": """sequence_batching {
  iterative_sequence: true
  control_input [
    { name: "correlation_id" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 } ] },
    { name: "start" control [ { kind: CONTROL_SEQUENCE_START fp32_false_true: [ 0, 1 ] } ] },
    { name: "end" control [ { kind: CONTROL_SEQUENCE_END fp32_false_true: [ 0, 1 ] } ] }
  ]
  oldest { }
  max_sequence_idle_microseconds: 60000000
}
""",
        "request-level": "dynamic_batching { }\n",
    }[batching]
    return inputs + scheduler + f"instance_group [ {{ count: 1 kind: {kind} }} ]\n"


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
