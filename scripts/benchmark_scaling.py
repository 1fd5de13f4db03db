"""Lesson 14's figures in one run: two embedded Triton servers behind HAProxy (triton_course.balancer).

1. Latency HAProxy adds: the same load at the same time to one server directly and through HAProxy, with the
   course's load generator (HTTP, open loop) and with perf_analyzer (gRPC, c=1); p50s and their ratio.
2. What its buffers cost: HAProxy's buffer pools and resident memory after the same load (8 clients) with
   tune.bufsize 16384 (the default) and 1 MiB (the course's, so a 600 KB image request can be retried).
3. kill -9 of one server under an open-loop load (20 requests/s per protocol for 5 s, HTTP and gRPC): failed
   requests per protocol, and the seconds until HAProxy marked it DOWN.
4. A planned drain through the runtime API, then the server stopped, under the same load: failed requests.
5. A rolling upgrade (version 2 rolled out one server at a time) under back-to-back HTTP requests: failed
   requests, and the versions that answered, in order.
6. Throughput through HAProxy with one server (the other in maintenance) and with two, at concurrency 1 and 4.

Usage:  .venv/bin/python scripts/benchmark_scaling.py [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path

import triton_course
from triton_course import artifact, balancer, loadgen, repository, scaling, versions
from triton_course.balancer import Balancer
from triton_course.photos import batch, photo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args()
    haproxy = subprocess.run([balancer.find_haproxy() or "haproxy", "-v"], capture_output=True, text=True).stdout
    print(f"{os.cpu_count()} CPUs, {platform.platform()}; {haproxy.splitlines()[0]}")
    image = batch([photo("coffee")])
    model = triton_course.MODEL_NAME
    figures: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        repository.add_model(repo, artifact.reference_config(), artifact.ensure_onnx(), labels=artifact.labels())
        servers = [triton_course.start_server(repo, model_control_mode="explicit", load_models=[model])
                   for _ in range(2)]
        try:
            with Balancer(servers) as lb:
                print(f"Triton {servers[0].version} x2, HAProxy bufsize {balancer.BUFSIZE}, "
                      f"health check '{balancer.HEALTH_CHECK}', retry-on '{balancer.RETRY_ON}'")

                print("\n1. Latency HAProxy adds (same load, same time, same server)")
                figures["added_latency"] = scaling.added_latency(lb, servers[0], image)
                print(loadgen.table(figures["added_latency"]))

                print("\n2. Buffer memory after 8 clients")
                figures["memory"] = []
                for size in (16384, balancer.BUFSIZE):
                    with Balancer(servers, bufsize=size) as other:
                        loadgen.measure(other.http_url, image, concurrency=8, max_windows=3)
                        figures["memory"].append({"tune.bufsize": size, **{k: round(v, 1) for k, v in
                                                                           other.memory().items()}})
                print(loadgen.table(figures["memory"]))

                print("\n3. kill -9 of server 2 under load (20 req/s per protocol, 5 s)")
                crash = scaling.load_during(lb, image, lambda: scaling.kill_9(lb, servers[1]))
                figures["kill_9"] = {"sent": {p: r.requests for p, r in crash.results.items()},
                                     "failed": {p: r.errors for p, r in crash.results.items()},
                                     "first_error": crash.first_error, "down_after_s": round(crash.outcome, 2),
                                     "served": crash.served()}
                print(json.dumps(figures["kill_9"], indent=1))
                scaling.restart(servers[1])
                lb.wait_until(servers[1], "UP")

                print("\n4. Drain, then stop server 2, under load")
                planned = scaling.load_during(lb, image, lambda: scaling.drain_and_stop(lb, servers[1]))
                figures["drain"] = {"sent": {p: r.requests for p, r in planned.results.items()},
                                    "failed": {p: r.errors for p, r in planned.results.items()},
                                    **{k: round(v, 2) for k, v in planned.outcome.items()}}
                print(json.dumps(figures["drain"], indent=1))
                scaling.restart(servers[1])
                lb.wait_until(servers[1], "DRAIN")
                lb.ready(servers[1])
                lb.wait_until(servers[1], "UP")

                print("\n5. Rolling upgrade to version 2 under back-to-back HTTP requests")
                repository.add_version(repo, model, 2, artifact.ensure_onnx())
                with versions.Traffic(lb.http_url, model, image) as traffic:
                    scaling.rolling_upgrade(lb, servers, model)
                figures["rolling_upgrade"] = {"answers": traffic.summary(), "failed": traffic.errors(),
                                              "order": list(dict.fromkeys(a for _, a in traffic.answers))}
                print(json.dumps(figures["rolling_upgrade"], indent=1))

                print("\n6. Throughput through HAProxy, one server vs two")
                lb.maint(servers[1])
                one = [loadgen.measure(lb.http_url, image, concurrency=c, label="1 server") for c in (1, 4)]
                lb.ready(servers[1])
                lb.wait_until(servers[1], "UP")
                two = [loadgen.measure(lb.http_url, image, concurrency=c, label="2 servers") for c in (1, 4)]
                figures["throughput"] = [{"servers": r.label, "load": r.load, "infer/s": round(r.throughput, 1),
                                          "p50 ms": round(r.percentile(50), 1), "p99 ms": round(r.percentile(99), 1),
                                          "errors": r.errors} for r in one + two]
                print(loadgen.table(figures["throughput"]))
                print(scaling.compare(one, two, servers=2, cores=os.cpu_count()))
        finally:
            for server in servers:
                server.stop()
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
