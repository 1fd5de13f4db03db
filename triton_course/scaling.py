"""Several Triton servers behind HAProxy (triton_course.balancer), measured while something happens to them.

- `load_during` puts an open-loop load through the balancer (HTTP and gRPC at once, as loadgen.measure_rate)
  and runs an action in the middle of it (kill -9 a server, drain and stop one, ...); it samples HAProxy's
  own view of every server meanwhile, so a run shows what the clients saw and what the balancer did.
- `kill_9` and `drain_and_stop` are the two ways a server leaves: without warning, or planned.
- `rolling_upgrade` rolls a new model version out one server at a time, each taken out of rotation first.
- `compare` says in words what runs of one server against several measured (`verdict`: beyond the noise
  of repeated, alternating runs, or within it).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from . import loadgen, verdicts
from .balancer import Balancer, ServerState


@dataclass
class FaultRun:
    """One bounded load through the balancer with an action in the middle of it."""

    results: dict[str, loadgen.Result]  # per protocol: every request the clients sent, and the failed ones
    samples: list[tuple[float, list[ServerState]]]  # (seconds into the load, HAProxy's view of every server)
    action_at: float  # seconds into the load when the action began
    outcome: object = None  # what the action returned
    names: list[str] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return sum(r.requests for r in self.results.values())

    @property
    def failed(self) -> int:
        return sum(r.errors for r in self.results.values())

    @property
    def first_error(self) -> str:
        return next((r.first_error for r in self.results.values() if r.first_error), "")

    def served(self) -> dict[str, int]:
        """Requests each server got during the load (HAProxy's counters, both protocols)."""
        first, last = self.samples[0][1], self.samples[-1][1]
        return {a.name: b.total - a.total for a, b in zip(first, last)}

    def status_changes(self) -> list[tuple[float, str, str]]:
        """(seconds into the load, server, its new status) each time HAProxy's view of a server changed."""
        changes, before = [], {}
        for at, states in self.samples:
            for s in states:
                if before.get(s.name) != s.status:
                    if s.name in before:
                        changes.append((at, s.name, s.status))
                    before[s.name] = s.status
        return changes

    def summary(self) -> str:
        protocols = ", ".join(f"{p} {r.requests}" for p, r in self.results.items())
        return f"requests sent: {self.sent} ({protocols}); failed: {self.failed}"

    def plot(self, ax=None, label: str = "action"):
        """Requests per second each server got, from HAProxy's counters, and when the action began."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(7, 3))
        times = np.array([at for at, _ in self.samples])
        for i, name in enumerate(self.names):
            totals = np.array([states[i].total for _, states in self.samples])
            ax.step(times[1:], np.diff(totals) / np.diff(times), where="pre", label=name)
        ax.axvline(self.action_at, color="black", linestyle="--", label=label)
        ax.set_xlabel("seconds into the load")
        ax.set_ylabel("requests/s (HAProxy)")
        ax.legend(loc="upper right")
        return ax


def load_during(balancer: Balancer, inputs: np.ndarray, action=None, *, at: float = 1.5, rate: float = 20.0,
                seconds: float = 5.0, protocols=("http", "grpc"), sample_every: float = 0.1,
                grpc_options: dict | None = None) -> FaultRun:
    """An open-loop load of `rate` requests/s per protocol for `seconds` through `balancer`; `action()` runs
    `at` seconds in, in a thread of its own (the load keeps its schedule meanwhile). An exception the action
    raises is raised here once the load is over. `grpc_options` go to the gRPC clients (channel_args=...)."""
    results: dict[str, loadgen.Result] = {}
    address = {"http": balancer.http_url, "grpc": balancer.grpc_address}

    outcome: dict = {}

    def load(protocol: str) -> None:
        try:
            results[protocol] = loadgen.measure_rate(address[protocol], inputs, rate=rate, seconds=seconds,
                                                     protocol=protocol, model=balancer.model, label=protocol,
                                                     read_server=False,
                                                     client_options=grpc_options if protocol == "grpc" else None)
        except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread below
            outcome["error"] = exc

    def act() -> None:
        try:
            outcome["value"] = action()
        except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread below
            outcome["error"] = exc

    loads = [threading.Thread(target=load, args=(p,), daemon=True) for p in protocols]
    actor = threading.Thread(target=act, daemon=True)
    samples = [(0.0, balancer.states())]
    started = time.perf_counter()
    for thread in loads:
        thread.start()
    action_at = float("nan")
    while any(t.is_alive() for t in loads) or actor.is_alive():
        now = time.perf_counter() - started
        if action is not None and not actor.is_alive() and np.isnan(action_at) and now >= at:
            action_at = now
            actor.start()
        time.sleep(sample_every)  # the sampling period: the load runs in its own threads
        samples.append((time.perf_counter() - started, balancer.states()))
        if now > seconds + 120:
            break
    for thread in loads:
        thread.join(60)
    if "error" in outcome:
        raise outcome["error"]
    in_order = {p: results[p] for p in protocols}  # the threads finish in any order
    return FaultRun(in_order, samples, action_at, outcome.get("value"), list(balancer.names))


def wait_until_serving(balancer: Balancer, server, requests: int = 1, timeout: float = 5.0) -> int:
    """Wait (at most `timeout` s) until HAProxy counts at least `requests` requests in flight on `server`; the
    count it saw last. A crash timed by it cuts requests off for certain, where a random moment may find none."""
    deadline = time.monotonic() + timeout
    while True:
        current = balancer.state(server).current
        if current >= requests or time.monotonic() > deadline:
            return current
        time.sleep(0.002)


def kill_9(balancer: Balancer, server) -> float:
    """Kill `server`'s process with SIGKILL (a crash: no warning, requests in flight are lost to it);
    returns the seconds until HAProxy marked it DOWN."""
    os.kill(server.process.pid, signal.SIGKILL)
    return balancer.wait_until(server, "DOWN")


def drain_and_stop(balancer: Balancer, server) -> dict[str, float]:
    """A planned stop: drain `server` in HAProxy (no new requests), wait until the requests it is serving
    are answered, then stop it. Returns how long each step took."""
    started = time.monotonic()
    balancer.drain(server)
    balancer.wait_until_idle(server)
    idle = time.monotonic()
    server.stop()
    return {"drained_s": idle - started, "stopped_s": time.monotonic() - idle}


def rolling_upgrade(balancer: Balancer, servers, model: str) -> list[str]:
    """Reload `model` (its newest version in the repository) on each of `servers`, one at a time: take the
    server out of rotation (drain), wait until it is idle, reload, put it back and wait until HAProxy sees
    it UP again, then the next one. The others keep answering throughout. Returns what happened, in order."""
    steps = []
    for server in servers:
        name = balancer.name_of(server)
        balancer.drain(server)
        balancer.wait_until_idle(server)
        steps.append(f"{name}: drained")
        server.load_model(model)
        with server.http_client() as client:
            versions = sorted(client.get_model_metadata(model)["versions"], key=int)
        steps.append(f"{name}: reloaded '{model}', now serving version {', '.join(versions)}")
        balancer.ready(server)
        balancer.wait_until(server, "UP")
        steps.append(f"{name}: back in rotation (UP)")
    return steps


def verdict(one: list[loadgen.Result], several: list[loadgen.Result], servers: int) -> verdicts.Verdict:
    """Throughput of `servers` servers against one at the highest concurrency both sides measured, from every
    run there (measured in alternation, verdicts.alternate): "raised" or "lowered" only when the runs of one
    side all beat the other's; with fewer than 3 runs a side, "too few runs to judge"."""
    top = max({r.concurrency for r in one} & {r.concurrency for r in several})
    return verdicts.compare([r.throughput for r in one if r.concurrency == top],
                            [r.throughput for r in several if r.concurrency == top],
                            a_name="one server", b_name=f"{servers} servers", quantity="throughput", unit="infer/s")


def compare(one: list[loadgen.Result], several: list[loadgen.Result], servers: int, cores: int) -> str:
    """What the runs of one server against `servers` servers say, in words, from their own numbers: the verdict
    (`verdict`) at the highest concurrency both measured, and the median p99 there."""
    judged = verdict(one, several, servers)
    top = max({r.concurrency for r in one} & {r.concurrency for r in several})
    p99_one = float(np.median([r.percentile(99) for r in one if r.concurrency == top]))
    p99_several = float(np.median([r.percentile(99) for r in several if r.concurrency == top]))
    numbers = (f"{judged} p99 at c={top} (median of the runs): {p99_one:.1f} ms with one server, {p99_several:.1f} ms "
               f"with {servers}.")
    hardware = "Scaling out pays when each server gets hardware of its own: another GPU, another machine."
    if judged.verdict == verdicts.RAISED:
        why = (f"{servers} servers were faster: this machine had capacity that one server left idle, and each "
               "server kept its own share busy.")
    elif judged.verdict == verdicts.LOWERED:
        why = (f"{servers} servers were slower on this machine ({cores} CPU cores): they compete for the same cores "
               f"with {servers} times the threads, and switching between them costs time. {hardware}")
    elif judged.verdict == verdicts.NOISE:
        why = (f"{servers} servers were not faster on this machine ({cores} CPU cores): the difference is within the "
               "noise of repeated runs. One server's onnxruntime already runs one thread per core, so the others only "
               f"share the same cores. {hardware}")
    else:
        why = (f"One run a side cannot tell a difference from the noise of this machine (10-30 % from one run to the "
               f"next): measure each side several times, alternating (verdicts.alternate), before calling {servers} "
               "servers faster or slower.")
    return f"{numbers}\n{why}"


def restart(server):
    """Start a stopped or killed `server` again on the same ports (the balancer's config names them), with the
    same repository and settings; HAProxy's health check puts it back once it passes `rise` checks."""
    server.stop()  # what a kill left behind: its process group, its folder
    server.requested_ports = dict(server.ports)
    return server.start()


def added_latency(balancer: Balancer, server, inputs: np.ndarray, *, rate: float = 20.0, seconds: float = 5.0,
                  repeats: int = 2, progress: str | None = None) -> list[dict]:
    """What going through HAProxy adds to each request, to `server` directly against through `balancer` (its other
    servers in maintenance meanwhile, so both reach the same Triton). Two tools, one row each:

    - the course's load generator: the same open-loop HTTP load (`rate` requests/s) to both sides at the same
      time, so both share the machine and its noise;
    - perf_analyzer (gRPC, one request in flight, windows stable within 20 % on a shared machine): direct and
      through HAProxy one after the other, `repeats` times, medians compared. Two closed loops at once on one
      server would mostly wait for each other's requests, which would hide the difference.

    With `progress` (a label), a progress bar (tqdm) counts the runs: the load generator's pair, then each
    perf_analyzer run.
    """
    from tqdm.auto import tqdm

    from . import perf_analyzer

    bar = tqdm(total=1 + 2 * repeats, desc=progress, unit="run", disable=not progress)
    others = [s for s in balancer.servers if s is not server]
    for other in others:
        balancer.maint(other)
    try:
        sides = {"direct": (server.http_url, server.grpc_address),
                 "through HAProxy": (balancer.http_url, balancer.grpc_address)}
        measured: dict[str, object] = {}

        def run(side: str) -> None:
            try:
                measured[side] = loadgen.measure_rate(sides[side][0], inputs, rate=rate, seconds=seconds,
                                                      model=balancer.model, label=side)
            except Exception as exc:  # noqa: BLE001 - raised in the caller's thread below
                measured[side] = exc

        threads = [threading.Thread(target=run, args=(side,)) for side in sides]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for result in measured.values():
            if isinstance(result, Exception):
                raise result
        bar.update()
        perf = {side: [] for side in sides}
        for _ in range(repeats):
            for side, (_, grpc_address) in sides.items():
                # up to 30 windows: on a busy machine three that agree within 20 % can take more than 10
                measured_point = perf_analyzer.measure(grpc_address, model=balancer.model, label=side,
                                                       measurement_ms=2000, stability_percent=20, max_trials=30)
                if not measured_point.stable:  # no figures to compare: say so rather than print NaN
                    raise perf_analyzer.PerfAnalyzerError(
                        f"perf_analyzer could not measure the {side} path within 30 windows.",
                        triton_said=measured_point.said, fix="Run it again on a quieter machine.")
                perf[side].append(measured_point)
                bar.update()
    finally:
        bar.close()
        for other in others:
            balancer.ready(other)
        for other in others:
            balancer.wait_until(other, "UP")

    def row(tool: str, load: str, direct: float, through: float, errors: int) -> dict:
        return {"tool": tool, "load": load, "direct p50 ms": round(direct, 2), "via HAProxy p50 ms": round(through, 2),
                "added ms": round(through - direct, 2), "ratio": round(through / direct, 3), "errors": errors}

    return [row("loadgen", f"HTTP, open loop {rate:g}/s, both at once", measured["direct"].percentile(50),
                measured["through HAProxy"].percentile(50), sum(r.errors for r in measured.values())),
            row("perf_analyzer", f"gRPC, c=1, alternating x{repeats}",
                float(np.median([m.p50_ms for m in perf["direct"]])),
                float(np.median([m.p50_ms for m in perf["through HAProxy"]])), 0)]
