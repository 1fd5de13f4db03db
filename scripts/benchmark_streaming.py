"""Streaming figures of lesson 15 on this machine, measured in one run: the embedded Triton serving the
course's decoupled character-level generator (textgenrnn's pretrained network, one response per
character), time to first token and tokens per second at 1, 2, 4 and 8 concurrent gRPC streams, and the
same network in-process for comparison.

    .venv/bin/python scripts/benchmark_streaming.py

It prints a Markdown table (docs/benchmarks.md holds one run's) and asserts nothing.
"""

from __future__ import annotations

import platform
import tempfile

import psutil

from triton_course import start_server, streaming


def main() -> None:
    with tempfile.TemporaryDirectory() as repo:
        streaming.add_textgen(repo)
        with start_server(repo) as server:
            print(f"Triton {server.version} ({server.runtime}), {psutil.cpu_count()} CPU cores, "
                  f"{platform.processor() or platform.machine()}; model: {streaming.TEXTGEN} (one instance, "
                  "a thread per stream), prompt 'The server ', 100 characters, temperature 0\n")
            print(streaming.benchmark_table(server.grpc_address))


if __name__ == "__main__":
    main()
