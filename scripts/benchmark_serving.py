"""How much of the model's own speed Triton keeps on this machine, measured in one run.

    .venv/bin/python scripts/benchmark_serving.py [--device cpu|cuda] [--json FILE]

1. The limit: the course model in this process with no server (onnxruntime on the CPU; the
   TorchScript export with PyTorch on CUDA), at several batch sizes.
2. The embedded Triton serving the same model twice, without and with dynamic batching, swept
   with the course's load generator at concurrency 1, 4, 16 over HTTP and gRPC (and gRPC with
   the input in system shared memory); each throughput is printed as a ratio of the limit.
3. On CUDA: served vs in-process throughput at the same batch sizes.
4. perf_analyzer (Perf Analyzer 2.51.0, installed by `make setup` on every machine the course supports)
   and the course's load generator at the same load points (dynamic_batching, each protocol and
   concurrency), alternating `--repeats` times; the ratio load generator / perf_analyzer at each point.

It prints its figures and asserts nothing: they belong to the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from triton_course import artifact, inprocess, loadgen, perf_analyzer, start_server
from triton_course.photos import photo, preprocess
from triton_course.repository import add_model, add_torch_model

MODELS = ("no_batching", "dynamic_batching")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda when PyTorch sees one")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--protocols", nargs="+", choices=["http", "grpc"], default=["http", "grpc"])
    parser.add_argument("--queue-delay-us", type=int, default=2000)
    parser.add_argument("--max-batch-size", type=int, default=None, help="default: 8 on CPU, 32 on CUDA")
    parser.add_argument("--instances", type=int, default=1, help="instance_group count for both models")
    parser.add_argument("--window", type=float, default=1.5, help="seconds per measurement window")
    parser.add_argument("--perf-analyzer", choices=["on", "off"], default="on",
                        help="compare the load generator with perf_analyzer (on: it must run here)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs per tool in the comparison")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args()
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.max_batch_size = args.max_batch_size or (32 if args.device == "cuda" else 8)
    return args


def machine(device: str) -> str:
    import psutil

    text = f"{platform.node()}: {psutil.cpu_count(logical=True)} CPUs, {platform.platform()}"
    if device == "cuda":
        import torch

        text += f", GPU {torch.cuda.get_device_name(0)} (PyTorch {torch.__version__}, CUDA {torch.version.cuda})"
    return text


def build_repository(repo: Path, args) -> None:
    for name in MODELS:
        config = artifact.reference_config(max_batch_size=args.max_batch_size)
        config.name = name
        if name == "dynamic_batching":
            config.dynamic_batching.max_queue_delay_microseconds = args.queue_delay_us
        group = config.instance_group.add()
        group.count = args.instances
        group.kind = group.KIND_GPU if args.device == "cuda" else group.KIND_CPU
        if args.device == "cuda":
            add_torch_model(repo, config, args.torchscript, labels=artifact.labels())
        else:
            add_model(repo, config, artifact.ensure_onnx(), labels=artifact.labels())


def limits(args) -> list[inprocess.Limit]:
    if args.device == "cuda":
        import torch

        model = torch.jit.load(str(args.torchscript))
        return inprocess.torch_limits(model, "cuda", batch_sizes=(1, 8, args.max_batch_size))
    return inprocess.onnx_limits(artifact.ensure_onnx(), batch_sizes=(1, 4, args.max_batch_size))


def main() -> None:
    args = parse_args()
    if args.perf_analyzer == "on" and perf_analyzer.find_binary() is None:
        raise SystemExit(f"perf_analyzer cannot run here: {perf_analyzer.unavailable_reason()}\n"
                         "(or pass --perf-analyzer off to measure without it)")
    report: dict = {"date": time.strftime("%Y-%m-%d"), "machine": machine(args.device), "device": args.device}
    print(report["machine"])
    if args.perf_analyzer == "on":
        print(perf_analyzer.describe())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.device == "cuda":
            args.torchscript = artifact.export_torchscript(tmp / "model.pt")
        limit_list = limits(args)
        limit = inprocess.best(limit_list)
        print("\nIn-process limit (no server):")
        for item in limit_list:
            print(f"  {item.engine} on {item.device}, batch {item.batch_size:>2}: {item.throughput:8.1f} infer/s "
                  f"({item.ms_per_batch:.2f} ms per batch)")
        report["limits"] = [vars(item) for item in limit_list]

        repo = tmp / "repo"
        build_repository(repo, args)
        x = preprocess(photo("coffee"))[None]
        results, same_batch, agreements = [], [], []
        with start_server(repo) as server:
            print(f"\nServer: {server.summary()}")
            urls = {"http": server.http_url, "grpc": server.grpc_address}
            setups = [(p, False) for p in args.protocols] + ([("grpc", True)] if "grpc" in args.protocols else [])
            for model in MODELS:
                for protocol, shm in setups:
                    label = f"{model} {protocol}{'+shm' if shm else ''}"
                    for c in args.concurrency:
                        results.append(loadgen.measure(urls[protocol], x, concurrency=c, protocol=protocol,
                                                       model=model, label=label, window_s=args.window,
                                                       shared_memory=shm))
                        print(results[-1].row())  # as it goes: a long run that fails keeps what it measured
            if args.device == "cuda":
                for item in limit_list:
                    batch = np.repeat(x, item.batch_size, axis=0)
                    served = loadgen.measure(urls["grpc"], batch, concurrency=4, protocol="grpc", model="no_batching",
                                             label=f"batch {item.batch_size}", window_s=args.window)
                    same_batch.append((item, served))
            if args.perf_analyzer == "on":
                # The two tools alternate at each point, `--repeats` times, so that drift on a shared
                # machine hits both alike; their medians are compared.
                print("\nLoad generator / perf_analyzer (dynamic_batching, same server, alternating):")
                for protocol in args.protocols:
                    for c in args.concurrency:
                        row = perf_analyzer.side_by_side(urls[protocol], x, protocol=protocol, concurrency=c,
                                                         model="dynamic_batching", window_s=args.window,
                                                         repeats=args.repeats)
                        _, perf = row.pop("_measurements")
                        agreements.append({"config": f"dynamic_batching {protocol}", **row})
                        print(f"  {protocol} {row['load']:>5}: throughput ratio {row['throughput ratio']:.3f} "
                              f"({row['loadgen infer/s']} / {row['perf_analyzer infer/s']} infer/s), p50 ratio "
                              f"{row['p50 ratio']:.3f}, server compute ratio {row['server compute ratio']:.3f}", flush=True)
                        report.setdefault("perf_analyzer_example", {
                            "command": " ".join(perf_analyzer.command(
                                "dynamic_batching", urls[protocol], protocol=protocol, concurrency=c,
                                measurement_ms=int(args.window * 1000))),
                            "output": perf[0].output, "csv": perf[0].report_csv})
            report["server"] = server.summary()
            report["runner_log"] = [line for line in server.log_text().splitlines() if "runner:" in line]
            for line in report["runner_log"][:2]:
                print(line)

    print("\n" + loadgen.table(results))
    print(f"\nServed / in-process limit ({limit.throughput:.1f} infer/s at batch {limit.batch_size}):")
    for r in results:
        print(f"  {r.label:<28} {r.load:>5}: {r.throughput:8.1f} infer/s = {r.throughput / limit.throughput:.2f} "
              f"of the limit (p99 {r.percentile(99):.1f} ms, {r.errors} errors, "
              f"server batch {r.server.get('avg_batch', float('nan')):.2f})")
    grpc = [r for r in results if "grpc" in r.label]
    best = max(grpc, key=lambda r: r.throughput)
    print(f"\nBest over gRPC: {best.label} at {best.load}: {best.throughput / limit.throughput:.2f} of the limit.")
    for c in args.concurrency:
        plain = next(r for r in results if r.label == "no_batching grpc" and r.concurrency == c)
        batched = next(r for r in results if r.label == "dynamic_batching grpc" and r.concurrency == c)
        print(f"Dynamic batching at c={c} (gRPC): throughput x{batched.throughput / plain.throughput:.2f}, "
              f"batch sizes formed {batched.server.get('batch_sizes')}")
    if same_batch:
        print("\nSame batch size, served (gRPC, c=4, no dynamic batching) vs in-process:")
        for item, served in same_batch:
            print(f"  batch {item.batch_size:>2}: served {served.throughput:8.1f} infer/s, in-process "
                  f"{item.throughput:8.1f}: ratio {served.throughput / item.throughput:.2f}")
    if agreements:
        print(f"\nCourse load generator vs perf_analyzer (same server and model, alternating, medians of "
              f"{args.repeats}; ratios are load generator / perf_analyzer):")
        print(loadgen.table(agreements))
        apart = [a for a in agreements if abs(a["throughput ratio"] - 1) > 0.10]
        print(f"Throughput within 10 % at {len(agreements) - len(apart)} of {len(agreements)} points; "
              + ("not within 10 %: " + ", ".join(f"{a['config']} {a['load']} ({a['throughput ratio']:.3f})"
                                                 for a in apart) if apart else "every point within 10 %."))

    report.update({
        "limit": vars(limit),
        "results": [{**r.row(), "label": r.label, "ratio_to_limit": round(r.throughput / limit.throughput, 3),
                     "batch_sizes": r.server.get("batch_sizes")} for r in results],
        "same_batch": [{"batch_size": i.batch_size, "in_process": round(i.throughput, 1),
                        "served": round(s.throughput, 1)} for i, s in same_batch],
        "perf_analyzer": agreements,
    })
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
        print(f"\nWrote {args.json}")


if __name__ == "__main__":
    main()
