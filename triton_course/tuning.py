"""The settings the batching, instance-group and benchmarking lessons change, and plain-language
readings of what the load generator measured with them.

Configs are built on Triton's ModelConfig protobuf; the readings take measured Results and say
what they show on this machine (nothing here has a number typed in).
"""

from __future__ import annotations

import numpy as np
import psutil

from . import verdicts
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


def _runs(points) -> list[list[Result]]:
    """Each load point's runs: a Result alone counts as one run."""
    return [list(p) if isinstance(p, (list, tuple)) else [p] for p in points]


def _median(values) -> float:
    return float(np.median(list(values))) if len(values) else float("nan")


def batching_verdicts(plain, batched, min_repeats: int = verdicts.MIN_REPEATS) -> dict[int, verdicts.Verdict]:
    """Throughput with dynamic batching against without, at each concurrency: `plain` and `batched` hold one
    entry per load point, each a list of alternating runs (or a single Result). Keyed by concurrency."""
    out = {}
    for p_runs, b_runs in zip(_runs(plain), _runs(batched)):
        out[p_runs[0].concurrency] = verdicts.compare(
            [r.throughput for r in p_runs], [r.throughput for r in b_runs], a_name="no batching",
            b_name="batching", min_repeats=min_repeats)
    return out


def explain_batching(plain, batched, cpus: int | None = None, gpu: str | None = None,
                     delay_us: int | None = None) -> str:
    """What dynamic batching did at each concurrency in these measurements, and why. `plain` and `batched`:
    one entry per concurrency, each the alternating runs of that point (a single Result counts as one run, and
    one run gives no verdict). Every verdict comes from `verdicts.compare` on the runs: "raised" or "lowered"
    only when the two configurations' ranges do not overlap. `gpu`: the GPU that served the model, as
    `server.gpu_for(model)` says (None: the CPU); `delay_us`: the batcher's max_queue_delay_microseconds."""
    cpus = cpus or psutil.cpu_count(logical=True)
    plain, batched = _runs(plain), _runs(batched)
    judged = batching_verdicts(plain, batched)
    lines = []
    for p_runs, b_runs in zip(plain, batched):
        c = p_runs[0].concurrency
        avg = _median([r.server.get("avg_batch", float("nan")) for r in b_runs])
        lines.append(f"At concurrency {c}: {judged[c].sentence} Triton ran batches of {avg:.1f} requests on "
                     f"average; median p99 {_median([r.percentile(99) for r in p_runs]):.1f} -> "
                     f"{_median([r.percentile(99) for r in b_runs]):.1f} ms.")
    if plain[0][0].concurrency == 1:
        verdict = judged[1].verdict
        queue = _median([r.server.get("queue_ms", float("nan")) for r in batched[0]])
        lone = "With one client there is never a second request to batch with"
        if verdict == verdicts.NOISE:
            lines.append(f"{lone}: batching made no difference beyond the noise (queue time {queue:.2f} ms per request"
                         + (", no queue delay configured)." if delay_us == 0 else ")."))
        elif verdict == verdicts.LOWERED:
            why = (f"the scheduler waited for company that never came (queue time {queue:.2f} ms per request, "
                   f"delay {delay_us} us)" if delay_us else
                   f"with no delay the cost is the batcher's own work around each request (queue time {queue:.2f} ms)")
            lines.append(f"{lone}: batching cost throughput here, beyond the noise: {why}.")
        elif verdict == verdicts.RAISED:
            lines.append(f"{lone}, yet the batched runs were faster beyond the noise: with batches of one, something "
                         "other than batching changed between the runs (the machine's load); measure again.")
        else:
            lines.append(f"{lone}; one run each gives no verdict (measure alternating repeats).")
    raised = {c: v for c, v in judged.items() if v.verdict == verdicts.RAISED}
    if raised:
        c, best = max(raised.items(), key=lambda cv: cv[1].ratio)
        lines.append(f"Batching raised throughput beyond the noise at concurrency {', '.join(map(str, raised))}; the "
                     f"largest gain, x{best.ratio:.2f} at concurrency {c}, comes from running several requests in "
                     "one model call: the fixed cost of a call (scheduling, copies, kernel launches) is paid once "
                     "per batch.")
    elif all(v.verdict == verdicts.TOO_FEW for v in judged.values()):
        lines.append("One run per configuration gives no verdict: measure alternating repeats.")
    elif gpu:
        lines.append(f"Batching raised throughput beyond the noise at no concurrency measured here, although the model "
                     f"ran on the GPU ({gpu}): the work around each call (the clients, the copies to and from the "
                     "server, the python runner) outweighed what a batch saves on the GPU. Try more clients.")
    else:
        lines.append(f"Batching raised throughput beyond the noise at no concurrency measured here ({cpus} CPU "
                     "cores): one image already keeps every core busy, so a batch of N takes about N times as long; "
                     "only the per-call overhead is shared. On a GPU, one image leaves most of the chip idle, so a "
                     "batch can cost little more than one image.")
    return "\n".join(lines)


def explain_instances(results: dict[int, list[Result]], footprints: dict[int, dict], cpus: int | None = None,
                      judged: list[verdicts.Verdict] | tuple = ()) -> str:
    """What more model instances did to throughput, latency and memory in these measurements. `results`: one run
    per count and concurrency (shown, not judged); `judged`: verdicts from alternating repeats (e.g.
    `verdicts.compare(one_copy, two_copies, ...)`), the only source of "raised" or "lowered"."""
    cpus = cpus or psutil.cpu_count(logical=True)
    counts = sorted(results)
    one = counts[0]
    lines = []
    for count in counts[1:]:
        for base, r in zip(results[one], results[count]):
            gain = _ratio(r.throughput, base.throughput)
            lines.append(f"{count} instances vs {one} at concurrency {r.concurrency} (one run each): throughput "
                         f"x{gain:.2f} ({base.throughput:.0f} -> {r.throughput:.0f} infer/s), p99 "
                         f"{base.percentile(99):.1f} -> {r.percentile(99):.1f} ms.")
        mem = _ratio(footprints[count]["rss_mb"], footprints[one]["rss_mb"])
        lines.append(f"Memory: {footprints[one]['rss_mb']:.0f} MB for {one} instance(s), "
                     f"{footprints[count]['rss_mb']:.0f} MB for {count} (x{mem:.1f}): every instance holds "
                     f"its own copy of the model; threads {footprints[one]['threads']} -> "
                     f"{footprints[count]['threads']}.")
    lines += [v.sentence for v in judged]
    raised = [v for v in judged if v.verdict == verdicts.RAISED]
    if raised:
        lines.append("Beyond the noise: " + "; ".join(f"{v.b_name} raised throughput over {v.a_name} (x{v.ratio:.2f})"
                                                       for v in raised)
                     + f", on {cpus} CPU cores: copies run at the same time only while there is hardware left to run "
                     "them.")
    elif judged:
        lines.append(f"No configuration with more copies raised throughput beyond the noise on {cpus} CPU cores: "
                     "copies run at the same time only if there is hardware left to run them; once the cores are "
                     "busy, more copies take turns and add memory.")
    else:
        lines.append("One run per setting: no verdict on throughput (compare alternating repeats with "
                     "triton_course.verdicts).")
    return "\n".join(lines)
