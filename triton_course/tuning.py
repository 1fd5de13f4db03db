"""The settings the batching, instance-group and benchmarking lessons change, and plain-language
readings of what the load generator measured with them.

Configs are built on Triton's ModelConfig protobuf; the readings take measured Results and say
what they show on this machine (nothing here has a number typed in).
"""

from __future__ import annotations

import psutil

from .loadgen import Result
from .model_config import ModelConfig, ModelInstanceGroup, copy_config


def batching_config(base: ModelConfig, delay_us: int | None, *, name: str | None = None,
                    preferred: tuple[int, ...] = ()) -> ModelConfig:
    """`base` with dynamic batching (delay_us=None: without it). The scheduler waits at most
    `delay_us` for more requests before it runs what it has."""
    config = copy_config(base, name)
    config.ClearField("dynamic_batching")
    if delay_us is not None:
        if base.max_batch_size < 1:
            raise ValueError(f"model '{config.name}' has max_batch_size {base.max_batch_size}: the dynamic "
                             "batcher needs max_batch_size >= 1 (the model must accept a batch dimension)")
        config.dynamic_batching.max_queue_delay_microseconds = delay_us
        config.dynamic_batching.preferred_batch_size.extend(preferred)
    return config


def instances_config(base: ModelConfig, count: int, *, kind: str = "KIND_CPU", gpus: tuple[int, ...] = (),
                     threads: int = 0, name: str | None = None) -> ModelConfig:
    """`base` with one instance group of `count` copies of the model on `kind`; `threads` caps
    onnxruntime's threads per copy (the onnxruntime backend's intra_op_thread_count)."""
    if count < 1:
        raise ValueError(f"instance_group count must be at least 1, got {count}")
    config = copy_config(base, name)
    config.ClearField("instance_group")
    group = config.instance_group.add()
    group.count = count
    group.kind = ModelInstanceGroup.Kind.Value(kind)
    group.gpus.extend(gpus)
    if threads:
        config.parameters["intra_op_thread_count"].string_value = str(threads)
    elif "intra_op_thread_count" in config.parameters:
        del config.parameters["intra_op_thread_count"]
    return config


def model_processes(server, model: str, since: float | None = None) -> list[psutil.Process]:
    """The python-backend stub processes serving `model` (one per instance) on a server this
    process started; empty for backends that run instances as threads inside Triton. After a
    reload, `since` (a time.time() taken before it) leaves out the old instances' stubs, which
    can take a while to exit."""
    if server.process is None:
        return []
    stubs = []
    for child in psutil.Process(server.process.pid).children(recursive=True):
        try:
            args = child.cmdline()
        except psutil.Error:
            continue
        is_stub = len(args) > 1 and args[0].endswith("triton_python_backend_stub")
        # args[1] is <repo>/<model>/<version>/model.py; create_time has 10 ms steps.
        if (is_stub and args[1].rstrip("/").split("/")[-3] == model
                and (since is None or child.create_time() >= since - 1)):
            stubs.append(child)
    return stubs


def instance_footprint(server, model: str, since: float | None = None) -> dict:
    """Memory and threads of a model's instances: resident MB and thread count per stub process."""
    stubs = model_processes(server, model, since)
    rss = [p.memory_info().rss / 2**20 for p in stubs]
    threads = [p.num_threads() for p in stubs]
    return {"instances": len(stubs), "rss_mb": round(sum(rss), 1), "threads": sum(threads),
            "rss_mb_each": [round(r, 1) for r in rss]}


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def explain_batching(plain: list[Result], batched: list[Result], cpus: int | None = None,
                     gpu: str | None = None, delay_us: int | None = None) -> str:
    """What dynamic batching did at each concurrency in these measurements, and why (`gpu`: the GPU
    that served the model, as `server.gpu_for(model)` says; None for the CPU; `delay_us`: the
    batcher's max_queue_delay_microseconds, when known)."""
    cpus = cpus or psutil.cpu_count(logical=True)
    lines = []
    for p, b in zip(plain, batched):
        gain = _ratio(b.throughput, p.throughput)
        avg = b.server.get("avg_batch", float("nan"))
        verb = "raised" if gain > 1.05 else "lowered" if gain < 0.95 else "did not change"
        lines.append(f"At concurrency {p.concurrency}, batching {verb} throughput (x{gain:.2f}: "
                     f"{p.throughput:.0f} -> {b.throughput:.0f} infer/s); Triton ran batches of "
                     f"{avg:.1f} requests on average; p99 went from {p.percentile(99):.1f} to "
                     f"{b.percentile(99):.1f} ms.")
    first = plain[0], batched[0]
    if first[0].concurrency == 1:
        queue = first[1].server.get("queue_ms", float("nan"))
        if delay_us == 0:
            lines.append(f"With one client there is never a second request to batch with; with no queue delay "
                         f"the batcher runs each request as soon as an instance is free (queue time {queue:.2f} ms "
                         "per request), so batching costs little here.")
        else:
            lines.append(f"With one client there is never a second request to batch with: the scheduler waits "
                         f"for one anyway (queue time {queue:.1f} ms per request), so batching only costs here.")
    best = max(zip(plain, batched), key=lambda pb: _ratio(pb[1].throughput, pb[0].throughput))
    gain = _ratio(best[1].throughput, best[0].throughput)
    if gain > 1.05:
        lines.append(f"The largest gain, x{gain:.2f} at concurrency {best[0].concurrency}, comes from running "
                     "several requests in one model call: the fixed cost of a call (scheduling, copies, "
                     "kernel launches) is paid once per batch.")
    elif gpu:
        lines.append(f"Batching did not pay here, although the model ran on the GPU ({gpu}): the work around "
                     "each call (the clients, the copies to and from the server, the python runner) outweighed "
                     "what a batch saves on the GPU. Try more clients, or a longer queue delay.")
    else:
        lines.append(f"Batching did not pay on this machine ({cpus} CPU cores): one image already keeps every "
                     "core busy, so a batch of N takes about N times as long; only the per-call overhead is "
                     "shared. On a GPU, where one image leaves most of the chip idle, it pays much more.")
    return "\n".join(lines)


def explain_instances(results: dict[int, list[Result]], footprints: dict[int, dict],
                      cpus: int | None = None) -> str:
    """What more model instances did to throughput, latency and memory in these measurements."""
    cpus = cpus or psutil.cpu_count(logical=True)
    counts = sorted(results)
    one = counts[0]
    lines = []
    for count in counts[1:]:
        for base, r in zip(results[one], results[count]):
            gain = _ratio(r.throughput, base.throughput)
            lines.append(f"{count} instances vs {one} at concurrency {r.concurrency}: throughput x{gain:.2f} "
                         f"({base.throughput:.0f} -> {r.throughput:.0f} infer/s), p99 {base.percentile(99):.1f} "
                         f"-> {r.percentile(99):.1f} ms.")
        mem = _ratio(footprints[count]["rss_mb"], footprints[one]["rss_mb"])
        lines.append(f"Memory: {footprints[one]['rss_mb']:.0f} MB for {one} instance(s), "
                     f"{footprints[count]['rss_mb']:.0f} MB for {count} (x{mem:.1f}): every instance holds "
                     f"its own copy of the model; threads {footprints[one]['threads']} -> "
                     f"{footprints[count]['threads']}.")
    top = max(counts, key=lambda c: max(r.throughput for r in results[c]))
    lines.append(f"The most throughput here came with {top} instance(s) on {cpus} CPU cores. Instances run "
                 "at the same time only if there is hardware left to run them: once the cores are busy, more "
                 "copies just take turns and add memory.")
    return "\n".join(lines)
