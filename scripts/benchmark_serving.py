"""How much of the model's own speed Triton keeps on this machine, measured in one run.

    .venv/bin/python scripts/benchmark_serving.py [--device cpu|cuda] [--json FILE]

1. The limit: the course model in this process with no server (onnxruntime on the CPU; the
   TorchScript export with PyTorch on CUDA), at several batch sizes.
2. The embedded Triton serving the same model twice, without and with dynamic batching, swept
   with the course's load generator at concurrency 1, 4, 16 over HTTP and gRPC (and gRPC with
   the input in system shared memory); each throughput is printed as a ratio of the limit.
3. On CUDA: the ceiling table (PyTorch FP32 eager; FP32, TF32 and FP16 replayed from CUDA graphs,
   channels-last, copies from pinned memory included) at batch sizes up to max_batch_size and beyond;
   served vs in-process throughput at the same batch sizes; and "served close to the ceiling":
   perf_analyzer with system shared memory at high concurrency against dynamic batching in FP32 and
   FP16, compared with the ceiling at the batch size Triton formed and the same precision, with
   where the server's time went (perf_analyzer's queue / compute input / infer / output).
4. Fewer bytes per request: the same dynamic-batching config serving the uint8 pixels variant of the model
   (the image as decoded, normalised inside the network) beside the FP32 one, measured with perf_analyzer
   over gRPC with the tensor on the wire (and, on CUDA, in system shared memory): bytes per request and
   throughput side by side.
5. perf_analyzer (Perf Analyzer 2.51.0, installed by `make setup` on every machine the course supports)
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
from triton_course.inference import request_bytes
from triton_course.photos import photo, pixels, preprocess
from triton_course.repository import add_model, add_torch_model

MODELS = ("no_batching", "dynamic_batching")
FP16_MODEL = "dynamic_batching_fp16"  # on CUDA: dynamic_batching, asking TensorRT's precision_mode FP16
PIXELS_MODEL = "dynamic_batching_uint8"  # dynamic_batching's config on the uint8 pixels variant
CEILING_BATCH_SIZES = (1, 8, 32, 64, 128)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (`argv`, default sys.argv), with the device's defaults filled in."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda when PyTorch sees one")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--protocols", nargs="+", choices=["http", "grpc"], default=["http", "grpc"])
    parser.add_argument("--queue-delay-us", type=int, default=2000)
    parser.add_argument("--max-batch-size", type=int, default=None, help="default: 8 on CPU, 64 on CUDA")
    parser.add_argument("--instances", type=int, default=None,
                        help="instance_group count (default: 1 on CPU, 4 on CUDA)")
    parser.add_argument("--ceiling-concurrency", type=int, nargs="+", default=[64, 128, 256],
                        help="on CUDA: perf_analyzer's concurrencies for the served-vs-ceiling comparison")
    parser.add_argument("--window", type=float, default=1.5, help="seconds per measurement window")
    parser.add_argument("--perf-analyzer", choices=["on", "off"], default="on",
                        help="compare the load generator with perf_analyzer (on: it must run here)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs per tool in the comparison")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--only", choices=["pixels"], default=None,
                        help="pixels: part 4 alone (FP32 input vs uint8 pixels on one dynamic-batching server)")
    args = parser.parse_args(argv)
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.max_batch_size = args.max_batch_size or (64 if args.device == "cuda" else 8)
    args.instances = args.instances or (4 if args.device == "cuda" else 1)
    return args


def served_config(args) -> dict:
    """The serving settings this run used, written into its JSON so that a reader of the figures knows them."""
    return {"max_queue_delay_microseconds": args.queue_delay_us, "max_batch_size": args.max_batch_size,
            "instance_group_count": args.instances, "window_s": args.window, "repeats": args.repeats,
            "concurrency": args.concurrency}


def machine(device: str) -> str:
    import psutil

    text = f"{platform.node()}: {psutil.cpu_count(logical=True)} CPUs, {platform.platform()}"
    if device == "cuda":
        import torch

        text += f", GPU {torch.cuda.get_device_name(0)} (PyTorch {torch.__version__}, CUDA {torch.version.cuda})"
    return text


def machine_gpu() -> str:
    import torch

    return torch.cuda.get_device_name(0)


def build_repository(repo: Path, args, names: tuple[str, ...] | None = None) -> None:
    for name in names or MODELS + ((FP16_MODEL,) if args.device == "cuda" else ()):
        config = artifact.reference_config(max_batch_size=args.max_batch_size)
        config.name = name
        if name.startswith("dynamic_batching"):
            config.dynamic_batching.max_queue_delay_microseconds = args.queue_delay_us
        if name == FP16_MODEL:  # asked the way onnxruntime-backend users ask TensorRT for FP16
            accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
            accelerator.parameters["precision_mode"] = "FP16"
        group = config.instance_group.add()
        group.count = args.instances
        group.kind = group.KIND_GPU if args.device == "cuda" else group.KIND_CPU
        if args.device == "cuda":
            add_torch_model(repo, config, args.torchscript, labels=artifact.labels())
        else:
            add_model(repo, config, artifact.ensure_onnx(), labels=artifact.labels())
        if name == "dynamic_batching":
            pixels_config = type(config)()
            pixels_config.CopyFrom(config)  # the same scheduling and instances, another name and input
            pixels_config.name = PIXELS_MODEL
            del pixels_config.input[:]
            pixels_config.input.extend(artifact.reference_config(pixels=True).input)
            if args.device == "cuda":
                add_torch_model(repo, pixels_config, artifact.ensure_torchscript(pixels=True), labels=artifact.labels())
            else:
                add_model(repo, pixels_config, artifact.ensure_onnx(pixels=True), labels=artifact.labels())


def limits(args) -> list[inprocess.Limit]:
    """On CUDA: PyTorch FP32 eager, then FP32 / TF32 / FP16 replayed from CUDA graphs (the ceiling)."""
    if args.device == "cuda":
        import torch

        sizes = tuple(sorted(set(CEILING_BATCH_SIZES) | {args.max_batch_size}))
        eager = inprocess.torch_limits(torch.jit.load(str(args.torchscript)), "cuda", batch_sizes=sizes, seconds=1.0)
        return eager + inprocess.graph_limits(args.torchscript, "cuda", sizes, seconds=1.0)
    return inprocess.onnx_limits(artifact.ensure_onnx(), batch_sizes=(1, 4, args.max_batch_size))


def ceiling_table(limit_list: list[inprocess.Limit]) -> str:
    columns = [("FP32", "eager")] + [(p, m) for m in (inprocess.GRAPH_ON_GPU, inprocess.GRAPH_FROM_HOST)
                                     for p in ("FP32", "TF32", "FP16")]
    rows = []
    for size in sorted({item.batch_size for item in limit_list}):
        row = {"batch": size}
        for precision, method in columns:
            found = [i for i in limit_list if (i.batch_size, i.precision, i.method) == (size, precision, method)]
            how = "eager" if method == "eager" else "GPU only" if method == inprocess.GRAPH_ON_GPU else "from host"
            name = f"{precision} {how}"
            row[name] = round(found[0].throughput, 1) if found else float("nan")
        rows.append(row)
    return loadgen.table(rows)


def served_vs_ceiling(urls: dict, args, limit_list: list[inprocess.Limit], gpu: str) -> list[dict]:
    """perf_analyzer (system shared memory, gRPC) at high concurrency against dynamic batching in FP32
    and FP16. The ceiling is the network alone on the GPU (CUDA graph, input already there) at the
    batch size Triton formed and the same precision; the same network fed from host memory by one
    process is printed beside it (several instances copy in parallel, so a server can pass that one)."""
    rows = []
    print(f"\nServed vs ceiling: perf_analyzer, gRPC + system shared memory, max_batch_size {args.max_batch_size}, "
          f"{args.instances} instances:", flush=True)
    for model, precision in (("dynamic_batching", "FP32"), (FP16_MODEL, "FP16")):
        for c in args.ceiling_concurrency:
            before = loadgen.server_stats(urls["http"], model)
            m = perf_analyzer.measure(urls["grpc"], model=model, protocol="grpc", concurrency=c, shared_memory=True,
                                      measurement_ms=3000, label=model)
            formed = loadgen.server_delta(before, loadgen.server_stats(urls["http"], model))["avg_batch"]

            def at_formed(method, precision=precision, formed=formed):
                graphed = [i for i in limit_list if i.method == method and i.precision == precision]
                return min((i for i in graphed if i.batch_size >= formed), key=lambda i: i.batch_size,
                           default=max(graphed, key=lambda i: i.batch_size))

            ceiling, from_host = at_formed(inprocess.GRAPH_ON_GPU), at_formed(inprocess.GRAPH_FROM_HOST)
            row = {"model": model, "precision": precision, "load": m.load, "served infer/s": round(m.throughput, 1),
                   "p99 ms": round(m.p99_ms, 1), "avg batch": round(formed, 1), "ceiling batch": ceiling.batch_size,
                   "ceiling infer/s": round(ceiling.throughput, 1),
                   "served/ceiling": round(m.throughput / ceiling.throughput, 3),
                   "from host, one process infer/s": round(from_host.throughput, 1),
                   **{f"{k} ms": round(v, 3) for k, v in perf_analyzer.latency_parts(m.report_csv).items()},
                   "command": " ".join(perf_analyzer.command(model, urls["grpc"], protocol="grpc", concurrency=c,
                                                             shared_memory=True, measurement_ms=3000))}
            rows.append(row)
            print(f"  {model} {m.load}: {m.throughput:8.1f} infer/s, p99 {m.p99_ms:.1f} ms, batches of "
                  f"{formed:.1f} on average; this GPU's ({gpu}) ceiling at batch {ceiling.batch_size} {precision}: "
                  f"{ceiling.throughput:.1f} -> {row['served/ceiling']:.2f}", flush=True)
    print(loadgen.table([{k: v for k, v in r.items() if k != "command"} for r in rows]))
    best = max(rows, key=lambda r: r["served/ceiling"])
    print(f"\n{gpu.removeprefix('NVIDIA ')} served/ceiling: {best['served/ceiling']:.2f} (served "
          f"{best['served infer/s']:.0f} infer/s, ceiling {best['ceiling infer/s']:.0f} infer/s, batch "
          f"{best['ceiling batch']}, precision {best['precision']})")
    print(f"  the same network fed from host memory by one process: {best['from host, one process infer/s']:.0f} "
          f"infer/s ({args.instances} instances copy in parallel)")
    print(f"  perf_analyzer command: {best['command']}")
    return rows


def pixels_vs_floats(urls: dict, args) -> list[dict]:
    """The FP32-input model and its uint8 pixels variant, same config, same perf_analyzer settings."""
    sizes = {"FP32": request_bytes(preprocess(photo("coffee"))[None]),
             "UINT8": request_bytes(pixels(photo("coffee"))[None], input_name=artifact.PIXELS_INPUT_NAME)}
    c = args.ceiling_concurrency[0] if args.device == "cuda" else max(args.concurrency)
    rows = []
    for shm in (False, True) if args.device == "cuda" else (False,):
        for model, dtype, shape in (("dynamic_batching", "FP32", "input:3,224,224"),
                                    (PIXELS_MODEL, "UINT8", f"{artifact.PIXELS_INPUT_NAME}:224,224,3")):
            m = perf_analyzer.measure(urls["grpc"], model=model, protocol="grpc", concurrency=c, shared_memory=shm,
                                      shape=shape, measurement_ms=int(args.window * 2000), max_trials=30, label=model)
            rows.append({"model": model, "input": dtype, "bytes per request (HTTP body)": sizes[dtype],
                         "tensor in": "system shared memory" if shm else "the request", "load": m.load,
                         "infer/s": round(m.throughput, 1), "p99 ms": round(m.p99_ms, 1),
                         **{f"{k} ms": round(v, 3) for k, v in perf_analyzer.latency_parts(m.report_csv).items()}})
    print(f"\nFewer bytes per request: FP32 input vs uint8 pixels (perf_analyzer, gRPC, c={c}):")
    print(loadgen.table(rows))
    for shm in ("the request", "system shared memory"):
        pair = [r for r in rows if r["tensor in"] == shm]
        if len(pair) == 2:
            fewer = pair[0]["bytes per request (HTTP body)"] / pair[1]["bytes per request (HTTP body)"]
            print(f"  tensor in {shm}: {fewer:.2f}x "
                  f"fewer bytes, throughput x{pair[1]['infer/s'] / pair[0]['infer/s']:.2f} with uint8 pixels")
    return rows


def pixels_only(args, report: dict) -> None:
    """Part 4 alone: one server with dynamic_batching and its uint8 pixels variant."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.device == "cuda":
            args.torchscript = artifact.export_torchscript(tmp / "model.pt")
        build_repository(tmp / "repo", args, names=("dynamic_batching",))
        with start_server(tmp / "repo") as server:
            print(f"\nServer: {server.summary()}")
            report["pixels_vs_floats"] = pixels_vs_floats({"grpc": server.grpc_address}, args)
            report["server"] = server.summary()


def main() -> None:
    args = parse_args()
    if args.perf_analyzer == "on" and perf_analyzer.find_binary() is None:
        raise SystemExit(f"perf_analyzer cannot run here: {perf_analyzer.unavailable_reason()}\n"
                         "(or pass --perf-analyzer off to measure without it)")
    report: dict = {"date": time.strftime("%Y-%m-%d"), "machine": machine(args.device), "device": args.device,
                    "config": served_config(args)}
    print(report["machine"])
    if args.perf_analyzer == "on":
        print(perf_analyzer.describe())
    if args.only == "pixels":
        if args.perf_analyzer != "on":
            raise SystemExit("--only pixels measures with perf_analyzer: leave --perf-analyzer on")
        pixels_only(args, report)
        write_report(args, report)
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.device == "cuda":
            args.torchscript = artifact.export_torchscript(tmp / "model.pt")
        limit_list = limits(args)
        # The served FP32 models are held against FP32 as the runner runs it (CUDA graphs on the GPU).
        limit = inprocess.best([i for i in limit_list
                                if i.precision == "FP32" and i.method == inprocess.GRAPH_FROM_HOST]
                               or limit_list)
        print("\nIn-process limit (no server):")
        for item in limit_list:
            print(f"  {item.describe()}")
        if args.device == "cuda":
            print("\nCeiling table (infer/s, in-process; GPU only: the input already on the GPU; from host: gathered "
                  "into pinned memory, copied in and the output back, in one process):")
            print(ceiling_table(limit_list))
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
                report["served_vs_ceiling"] = served_vs_ceiling(urls, args, limit_list, machine_gpu())
                for item in (i for i in limit_list if i.precision == "FP32" and i.method == inprocess.GRAPH_FROM_HOST
                             and i.batch_size <= args.max_batch_size):
                    batch = np.repeat(x, item.batch_size, axis=0)
                    served = loadgen.measure(urls["grpc"], batch, concurrency=4, protocol="grpc", model="no_batching",
                                             label=f"batch {item.batch_size}", window_s=args.window)
                    same_batch.append((item, served))
            if args.perf_analyzer == "on":
                report["pixels_vs_floats"] = pixels_vs_floats(urls, args)
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
                              f"{row['p50 ratio']:.3f}, server compute ratio {row['server compute ratio']:.3f}",
                              flush=True)
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
    write_report(args, report)


def write_report(args, report: dict) -> None:
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
        print(f"\nWrote {args.json}")


if __name__ == "__main__":
    main()
