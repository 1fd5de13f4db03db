"""What dynamic batching changes on this machine, measured in one run and printed as ratios.

    .venv/bin/python scripts/benchmark_batching.py [--concurrency 1 8] [--protocol http|grpc]

One server serves the course model twice: as committed (no batching) and with
`dynamic_batching { max_queue_delay_microseconds: N }`. The course's load generator sweeps both
at the same concurrencies; the script prints the table, the batch sizes Triton formed, and the
throughput and p99 ratios (batching / none) at each concurrency. Figures depend on the machine:
this prints them, it asserts nothing.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from triton_course import artifact, loadgen, start_server
from triton_course.photos import photo, preprocess
from triton_course.repository import add_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--protocol", choices=["http", "grpc"], default="http")
    parser.add_argument("--queue-delay-us", type=int, default=2000)
    parser.add_argument("--window", type=float, default=2.0, help="seconds per measurement window")
    args = parser.parse_args()

    onnx = artifact.ensure_onnx()
    labels = artifact.labels()
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        plain = artifact.reference_config()
        plain.name = "no_batching"
        batching = artifact.reference_config()
        batching.name = "dynamic_batching"
        batching.dynamic_batching.max_queue_delay_microseconds = args.queue_delay_us
        for config in (plain, batching):
            add_model(repo, config, onnx, labels=labels)
        x = preprocess(photo("coffee"))[None]
        with start_server(repo) as server:
            url = server.grpc_address if args.protocol == "grpc" else server.http_url
            results = {}
            for name in ("no_batching", "dynamic_batching"):
                results[name] = loadgen.sweep(url, x, concurrencies=args.concurrency, protocol=args.protocol,
                                              model=name, label=name, window_s=args.window)
    print(loadgen.table(results["no_batching"] + results["dynamic_batching"]))
    print()
    for plain_r, batch_r in zip(results["no_batching"], results["dynamic_batching"]):
        print(f"concurrency {plain_r.concurrency}: throughput x{batch_r.throughput / plain_r.throughput:.2f}, "
              f"p99 x{batch_r.percentile(99) / plain_r.percentile(99):.2f} with batching; "
              f"batch sizes formed: {batch_r.server['batch_sizes']}")


if __name__ == "__main__":
    main()
