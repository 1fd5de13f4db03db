"""`triton-course` (also `python -m triton_course`): doctor, prepare, serve, classify, report, student-copies."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from ..errors import CourseError


def cmd_doctor(args) -> int:
    from .doctor import ready, report, run_checks

    checks = run_checks(workshop=True)
    print(report(checks))
    return 0 if ready(checks) else 1


def cmd_prepare(args) -> int:
    from .. import llm, perf_analyzer, python_env, streaming
    from .prepare import prepare

    repository = prepare(force=args.force)
    print(f"Reference repository ready: {repository}")
    try:  # lesson 15's language model, fetched now so that the lesson runs without the network
        weights, _ = streaming.charrnn_files()
        print(f"Lesson 15's language model ready: {weights}")
    except streaming.DownloadError as exc:
        print(f"Lesson 15's language model was not fetched (the lesson fetches it on first use).\n{exc}",
              file=sys.stderr)
    try:  # lesson 16's language model: downloaded and converted to FP32 once (about a minute on 2 cores)
        print(f"Lesson 16's language model ready: {llm.ensure_weights()}")
    except llm.DownloadError as exc:
        print(f"Lesson 16's language model was not fetched (the lesson fetches it on first use).\n{exc}",
              file=sys.stderr)
    try:  # lesson 9's model environment: numpy and anyascii wheels, installed into it at lesson time
        print(f"Lesson 9's environment wheels ready: {python_env.ensure_wheels()}")
    except python_env.DownloadError as exc:
        print(f"Lesson 9's environment wheels were not fetched (the lesson fetches them on first use).\n{exc}",
              file=sys.stderr)
    try:
        perf_analyzer.install(force=args.force)
    except perf_analyzer.PerfAnalyzerError as exc:  # the lessons still run; 07 and 07b need it
        print(f"perf_analyzer was not installed.\n{exc}", file=sys.stderr)
        return 0
    reason = perf_analyzer.unavailable_reason()
    print(perf_analyzer.describe() if reason is None else f"perf_analyzer: {reason}")
    return 0


def cmd_serve(args) -> int:
    from ..runtimes import server

    extra = {}
    if args.runtime == "docker":
        gpus = args.gpus if args.gpus in ("auto", "all", "none") else args.gpus.split(",")
        extra = {"image": args.image, "gpus": gpus}
    elif args.image or args.gpus != "auto":
        print("--image and --gpus are for --runtime docker", file=sys.stderr)
        return 2
    srv = server(args.repository, args.runtime, http_port=args.http_port, grpc_port=args.grpc_port,
                 metrics_port=args.metrics_port, host=args.host, metrics_host=args.metrics_host, **extra)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        srv.start()
    except CourseError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"Triton {srv.version} ({srv.runtime}) serving {srv.repository}", flush=True)
    for note in srv.notes:
        print(f"note: {note}")
    print(f"HTTP    http://{srv.http_address}")
    print(f"gRPC    {srv.grpc_address}")
    print(f"metrics {srv.metrics_url}")
    print("Ctrl-C to stop.", flush=True)
    try:
        while not stop.wait(0.5):
            if not srv.is_running:
                print("The server exited; its log ends with:\n" + srv.log_tail(10), file=sys.stderr)
                return 1
    finally:
        srv.stop()
    print("Stopped.")
    return 0


def cmd_classify(args) -> int:
    from ..inference import classify

    try:
        results = classify(args.images, args.url, model=args.model, protocol=args.protocol, k=args.top)
    except (CourseError, ValueError, FileNotFoundError) as exc:
        print(exc, file=sys.stderr)
        return 2
    for image, top in zip(args.images, results):
        print(image)
        for label, score in top:
            print(f"  {score:7.4f}  {label}")
    return 0


def cmd_student_copies(args) -> int:
    from .student_copies import run

    return run(check=args.check)


def cmd_report(args) -> int:
    from .notebook_run import default_notebooks
    from .report import run_report

    paths = args.paths or default_notebooks()
    missing = [str(p) for p in paths if not p.is_file()]
    if missing or not paths:
        print(f"No notebook at: {', '.join(missing)}" if missing else "No notebooks found in notebooks/ or "
              "labs/solutions/: run this in the course folder, or name the notebooks.", file=sys.stderr)
        return 2
    results = run_report(paths, args.output, timeout=args.timeout, echo=lambda line: print(line, flush=True))
    return 0 if all(r.passed for r in results) else 1


def parser() -> argparse.ArgumentParser:
    from ..runtimes import RUNTIMES
    from .notebook_run import DEFAULT_TIMEOUT

    p = argparse.ArgumentParser(
        prog="triton-course",
        description="Tools of the Triton course: check a machine, build the model, serve it, classify images, "
                    "run every notebook and report.")
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("doctor", help="check what this machine has for the course").set_defaults(func=cmd_doctor)

    prep = sub.add_parser("prepare", help="build the model artifact and the reference repository in models/")
    prep.add_argument("--force", action="store_true", help="export model.onnx again even if it exists")
    prep.set_defaults(func=cmd_prepare)

    serve = sub.add_parser("serve", help="start a Triton server and keep it running until Ctrl-C")
    serve.add_argument("repository", nargs="?", type=Path, help="model repository (default: the course's models/)")
    serve.add_argument("--runtime", default="auto", choices=["auto", *RUNTIMES],
                       help="auto: a local tritonserver if there is one, else the embedded one")
    serve.add_argument("--image", help="docker only: the Triton image (default: $TRITON_IMAGE or the pinned NGC tag)")
    serve.add_argument("--gpus", default="auto", help="docker only: auto, all, none, or ids like 0,1")
    serve.add_argument("--http-port", type=int)
    serve.add_argument("--grpc-port", type=int)
    serve.add_argument("--metrics-port", type=int)
    serve.add_argument("--host", default="127.0.0.1",
                       help="address for HTTP and gRPC (0.0.0.0 exposes them to the network)")
    serve.add_argument("--metrics-host", default="127.0.0.1",
                       help="address for the metrics port (kept on loopback unless you say otherwise)")
    serve.set_defaults(func=cmd_serve)

    cls = sub.add_parser("classify", help="top-5 labels for images from a running server")
    cls.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...)")
    cls.add_argument("--url", required=True, help="the server's HTTP URL (or gRPC address with --protocol grpc)")
    cls.add_argument("--model", default=None, help="model name (default: the course model)")
    cls.add_argument("--protocol", default="http", choices=["http", "grpc"])
    cls.add_argument("--top", type=int, default=5)
    cls.set_defaults(func=cmd_classify)

    rep = sub.add_parser("report", help="run the notebooks headless under strict nbval and write an HTML report")
    rep.add_argument("paths", nargs="*", type=Path,
                     help="notebooks to run (default: notebooks/*.ipynb, then labs/solutions/*.ipynb)")
    rep.add_argument("--output", type=Path, default=Path("report.html"), help="where to write the HTML report")
    rep.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                     help="seconds one notebook may take before it is stopped and counted as failed")
    rep.set_defaults(func=cmd_report)

    copies = sub.add_parser("student-copies", help="generate labs/NN_topic.ipynb from labs/solutions/ (maintainers)")
    copies.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a student copy is stale, missing or orphaned")
    copies.set_defaults(func=cmd_student_copies)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "model", "x") is None:
        from ..paths import MODEL_NAME

        args.model = MODEL_NAME
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
