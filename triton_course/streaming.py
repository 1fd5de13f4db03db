"""Streaming and stateful serving (lesson 15): decoupled models, the generate endpoints, the sequence batcher.

- The language model: textgenrnn's pretrained character-level network. Its weights ship inside the
  `textgenrnn` package on PyPI (Keras HDF5; that package needs TensorFlow, so the course only takes the
  two files out of it, like perf_analyzer out of the tritonclient wheel) and are converted once for
  `streaming_models/charrnn.py`, which runs them in numpy.
- Model writers: the generator (decoupled), the camera-stream smoother (sequence batcher, calls the
  course's classifier) and the lab's answer models, all as ModelConfig messages.
- Clients: a gRPC stream (`stream`), Server-Sent Events from `generate_stream` (`generate_stream`),
  a stream cancelled mid-way (`stream_and_cancel`), concurrent streams measured (`measure_streams`),
  and one frame of a sequence (`send_frame`).
"""

from __future__ import annotations

import json
import queue
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import requests

from . import clients
from .artifact import INPUT_NAME, labels, onnx_path, reference_config
from .clients import infer_inputs  # its home is clients; lesson 15 takes it from here
from .errors import DownloadError, InferenceError
from .model_config import ModelConfig, build_config, mc, tensor
from .paths import MODEL_NAME, downloads_dir
from .repository import add_model, write_config, write_file

TEXTGEN, SMOOTHER = "textgen", "smoother"
TEXTGENRNN_VERSION = "2.0.0"  # the PyPI package whose sdist carries the pretrained weights (MIT licence)
_MEMBERS = {"weights": "textgenrnn/textgenrnn_weights.hdf5", "vocab": "textgenrnn/textgenrnn_vocab.json"}
FINAL = "triton_final_response"  # the response parameter that marks the last response of a request


# --- the language model ----------------------------------------------------------------------------

def charrnn_files(folder: str | Path | None = None) -> tuple[Path, Path]:
    """(charrnn.npz, charrnn_vocab.json): textgenrnn's pretrained weights converted for charrnn.py.
    The first call downloads the textgenrnn sdist with pip (about 1.7 MB, no dependencies installed)."""
    folder = Path(folder or downloads_dir() / f"textgenrnn-{TEXTGENRNN_VERSION}")
    weights, vocab = folder / "charrnn.npz", folder / "charrnn_vocab.json"
    if weights.exists() and vocab.exists():
        return weights, vocab
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary=:all:",
                               f"textgenrnn=={TEXTGENRNN_VERSION}", "-d", tmp], capture_output=True, text=True)
        archives = list(Path(tmp).glob(f"textgenrnn-{TEXTGENRNN_VERSION}.tar.gz"))
        if done.returncode != 0 or not archives:
            said = (done.stderr or done.stdout).strip().splitlines()
            raise DownloadError(f"pip could not download textgenrnn {TEXTGENRNN_VERSION}, which carries the "
                                "lesson's language model.", triton_said=said[-1] if said else "(nothing)",
                                fix="Check the network or your pip settings, then run the cell again.")
        with tarfile.open(archives[0]) as archive:
            root = f"textgenrnn-{TEXTGENRNN_VERSION}/"
            hdf5 = Path(tmp) / "weights.hdf5"
            hdf5.write_bytes(archive.extractfile(root + _MEMBERS["weights"]).read())
            (Path(tmp) / vocab.name).write_bytes(archive.extractfile(root + _MEMBERS["vocab"]).read())
        np.savez(Path(tmp) / weights.name, **_keras_to_charrnn(hdf5))
        for path in (vocab, weights):  # moved in whole: another process never reads half a file
            shutil.move(Path(tmp) / path.name, path)
    return weights, vocab


def _keras_to_charrnn(hdf5: Path) -> dict[str, np.ndarray]:
    """The Keras HDF5 weights as the arrays charrnn.py reads. textgenrnn saved its LSTMs in CuDNN's
    layout; Keras converts them per gate when it loads them into a plain LSTM, and so do we."""
    import h5py

    arrays = {}
    with h5py.File(hdf5, "r") as handle:
        handle.visititems(lambda name, obj: arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset)
                          else None)
    out = {}
    for name, value in arrays.items():  # e.g. "rnn_1/rnn_1/recurrent_kernel:0"
        layer, leaf = name.split("/")[0], name.split("/")[-1].split(":")[0]
        out[layer if leaf in ("embeddings", "attention_W") else f"{layer}_{leaf}"] = value
    for layer in ("rnn_1", "rnn_2"):
        gates = np.hsplit(out[f"{layer}_kernel"], 4)
        out[f"{layer}_kernel"] = np.hstack([g.T.reshape(g.shape, order="F") for g in gates])
        out[f"{layer}_recurrent_kernel"] = np.hstack([g.T for g in np.hsplit(out[f"{layer}_recurrent_kernel"], 4)])
    return out


def local_model():
    """The same network in this process (to compare with what the server streams)."""
    from .streaming_models.charrnn import CharRNN

    return CharRNN(*charrnn_files())


# --- model writers -----------------------------------------------------------------------------

def model_source(filename: str) -> str:
    """The text of one of streaming_models/'s files (each becomes a file of a served model)."""
    return resources.files("triton_course.streaming_models").joinpath(filename).read_text()


def textgen_config(name: str = TEXTGEN) -> ModelConfig:
    """A decoupled python model: `text_input` in, one `text_output` response per character.
    max_tokens and temperature are optional inputs, so the generate endpoint can take them as JSON fields."""
    config = build_config(name, backend="python", max_batch_size=0,
                          inputs=[tensor("text_input", "TYPE_STRING", [1]), tensor("max_tokens", "TYPE_INT32", [1]),
                                  tensor("temperature", "TYPE_FP32", [1])],
                          outputs=[tensor("text_output", "TYPE_STRING", [1])])
    config.input[1].optional = config.input[2].optional = True
    config.model_transaction_policy.decoupled = True
    return config


def add_textgen(repository: str | Path, config: ModelConfig | None = None) -> Path:
    """NAME/config.pbtxt and NAME/1/{model.py, charrnn.py, charrnn.npz, charrnn_vocab.json}."""
    config = config or textgen_config()
    version = Path(repository) / config.name / "1"
    write_file(version / "model.py", model_source("textgen_model.py"))
    write_file(version / "charrnn.py", model_source("charrnn.py"))
    for path in charrnn_files():
        write_file(version / path.name, path.read_bytes())
    write_config(version.parent, config)
    return version.parent


def smoother_config(name: str = SMOOTHER, *, strategy: str = "direct", idle_microseconds: int = 2_000_000,
                    window: int = 5, max_batch_size: int = 2, classifier: str = MODEL_NAME) -> ModelConfig:
    """The sequence batcher in front of the camera-stream smoother. With `direct` every sequence owns a
    batch slot (max_batch_size slots per instance) until END or until it idles for `idle_microseconds`;
    with `oldest` requests of different sequences are batched together in arrival order."""
    outputs = [tensor("frame_label", "TYPE_STRING", [1]), tensor("smoothed_label", "TYPE_STRING", [1]),
               tensor("smoothed_score", "TYPE_FP32", [1]), tensor("frames", "TYPE_INT32", [1]),
               tensor("sequences_held", "TYPE_INT32", [1])]
    config = build_config(name, backend="python", max_batch_size=max_batch_size,
                          inputs=[tensor(INPUT_NAME, "TYPE_FP32", [3, 224, 224])], outputs=outputs)
    batcher = config.sequence_batching
    batcher.max_sequence_idle_microseconds = idle_microseconds
    if strategy == "direct":
        batcher.direct.SetInParent()
    elif strategy == "oldest":
        batcher.oldest.max_candidate_sequences = 4
    else:
        raise ValueError(f"strategy is 'direct' or 'oldest', not {strategy!r}")
    kinds = mc.ModelSequenceBatching.Control
    for control, kind in (("START", kinds.CONTROL_SEQUENCE_START), ("END", kinds.CONTROL_SEQUENCE_END),
                          ("READY", kinds.CONTROL_SEQUENCE_READY)):
        batcher.control_input.add(name=control, control=[kinds(kind=kind, int32_false_true=[0, 1])])
    config.parameters["classifier_model"].string_value = classifier
    config.parameters["window"].string_value = str(window)
    return config


def add_smoother(repository: str | Path, config: ModelConfig | None = None) -> list[str]:
    """The course's classifier (its reference ONNX model) and the smoother that calls it.
    Returns the model names in the order to load them."""
    config = config or smoother_config()
    classifier = reference_config()
    add_model(repository, classifier, onnx_path(), labels=labels(), filename="model.onnx")
    model_dir = Path(repository) / config.name
    write_file(model_dir / "1" / "model.py", model_source("smoother_model.py"))
    write_file(model_dir / "labels.txt", "\n".join(labels()) + "\n")
    write_config(model_dir, config)
    return [classifier.name, config.name]


# --- clients -----------------------------------------------------------------------------------

def text_inputs(prompt: str, max_tokens: int | None = None, temperature: float | None = None) -> dict:
    """The generator's input tensors (the optional ones only when given)."""
    values = {"text_input": np.array([prompt.encode("utf-8")], dtype=np.object_)}
    if max_tokens is not None:
        values["max_tokens"] = np.array([max_tokens], dtype=np.int32)
    if temperature is not None:
        values["temperature"] = np.array([temperature], dtype=np.float32)
    return values


@dataclass
class Piece:
    """One response of a stream: its output tensors, whether it carried the final flag, and when it
    arrived (seconds after the request was sent)."""

    outputs: dict[str, np.ndarray]
    final: bool
    seconds: float

    def text(self, name: str = "text_output") -> str:
        value = self.outputs.get(name)
        return "" if value is None else b"".join(np.asarray(value).reshape(-1)).decode("utf-8")


def stream(grpc_address: str, model: str, values: dict[str, np.ndarray], *, timeout: float = 60.0,
           outputs: tuple[str, ...] | None = ("text_output",)):
    """Send one request on a gRPC bidirectional stream and yield a `Piece` per response as it arrives,
    up to the one with the final flag (asked for with enable_empty_final_response, so a request
    answered by a bare final flag ends too); `outputs=None` keeps every output. An error response raises
    an InferenceError quoting Triton; no response for `timeout` seconds raises one that says so."""
    arrived: queue.Queue = queue.Queue()
    client = clients.client(grpc_address, "grpc")
    client.start_stream(callback=lambda result, error: arrived.put((result, error, time.perf_counter())))
    started = time.perf_counter()
    try:
        client.async_stream_infer(model, infer_inputs(values, "grpc"), enable_empty_final_response=True)
        while True:
            try:
                result, error, when = arrived.get(timeout=timeout)
            except queue.Empty:
                raise InferenceError(f"'{model}' sent no response for {timeout:.0f} s and no final flag.",
                                     fix="A decoupled model must end every request with "
                                         "TRITONSERVER_RESPONSE_COMPLETE_FINAL (response_sender.send(flags=...))."
                                     ) from None
            if error is not None:
                raise InferenceError(f"'{model}' answered the stream with an error.", triton_said=error.message())
            response = result.get_response()
            final = response.parameters[FINAL].bool_param if FINAL in response.parameters else False
            found = {o.name: result.as_numpy(o.name) for o in response.outputs if outputs is None or o.name in outputs}
            yield Piece(found, final, when - started)
            if final:
                return
    finally:
        client.stop_stream(cancel_requests=True)
        client.close()


def stream_text(grpc_address: str, prompt: str, *, model: str = TEXTGEN, max_tokens: int | None = None,
                temperature: float | None = None, timeout: float = 60.0) -> list[Piece]:
    """All the pieces of one generation (the last one is the bare final flag)."""
    return list(stream(grpc_address, model, text_inputs(prompt, max_tokens, temperature), timeout=timeout))


def generate_stream(http_url: str, model: str, payload: dict, *, timeout: float = 60.0):
    """POST to /v2/models/MODEL/generate_stream and yield each Server-Sent Event's JSON as it arrives,
    with the seconds since the request under "_seconds". An error before the stream starts (JSON, not
    an event stream) or an error event raises an InferenceError quoting Triton."""
    started = time.perf_counter()
    with requests.post(f"{http_url}/v2/models/{model}/generate_stream", json=payload, stream=True,
                       timeout=timeout, headers={"Connection": "close"}) as reply:
        if not reply.headers.get("Content-Type", "").startswith("text/event-stream"):
            said = _error_text(reply.text) or reply.text
            raise InferenceError(f"generate_stream on '{model}' refused the request (HTTP {reply.status_code}).",
                                 triton_said=said, fix=known_fix(said))
        for line in reply.iter_lines(decode_unicode=True):
            if not line or not line.startswith("data:"):
                continue  # SSE: events are "data: ..." lines separated by blank lines
            event = json.loads(line[len("data:"):])
            if "error" in event:
                raise InferenceError(f"generate_stream on '{model}' sent an error event.", triton_said=event["error"])
            event["_seconds"] = time.perf_counter() - started
            yield event


def generate(http_url: str, model: str, payload: dict, *, timeout: float = 60.0) -> dict:
    """POST to /v2/models/MODEL/generate: one JSON answer. An error raises an InferenceError quoting Triton,
    also when it comes with HTTP 200 (Triton sets the status with the model's first response)."""
    with requests.post(f"{http_url}/v2/models/{model}/generate", json=payload, timeout=timeout,
                       headers={"Connection": "close"}) as reply:
        said = _error_text(reply.text)
        if reply.status_code != 200 or said:
            raise InferenceError(f"generate on '{model}' answered with an error (HTTP {reply.status_code}).",
                                 triton_said=said, fix=known_fix(said))
        return reply.json()


def _error_text(body: str) -> str:
    """The "error" of a JSON error object ('' when the body is no error object)."""
    try:
        answer = json.loads(body)
    except ValueError:
        return body
    return answer.get("error", "") if isinstance(answer, dict) else ""


@dataclass
class Cancelled:
    """A stream cancelled by the client: what it received before, and what the server did after."""

    received: list[str]
    cancelled_after_seconds: float
    callbacks_after_cancel: list[str] = field(default_factory=list)


def stream_and_cancel(grpc_address: str, prompt: str, after: int, *, model: str = TEXTGEN,
                      max_tokens: int = 400, timeout: float = 30.0) -> Cancelled:
    """Start a generation, and after `after` characters cancel it: `stop_stream(cancel_requests=True)`
    tells Triton to cancel the requests still in flight on this stream (the model sees it through
    `is_cancelled()`). Whatever the client hears after that is kept, to show the stream is closed."""
    arrived: queue.Queue = queue.Queue()
    client = clients.client(grpc_address, "grpc")
    client.start_stream(callback=lambda result, error: arrived.put((result, error)))
    received: list[str] = []
    started = time.perf_counter()
    try:
        client.async_stream_infer(model, infer_inputs(text_inputs(prompt, max_tokens), "grpc"))
        while len(received) < after:
            result, error = arrived.get(timeout=timeout)
            if error is not None:
                raise InferenceError(f"'{model}' answered the stream with an error.", triton_said=error.message())
            received.append(result.as_numpy("text_output")[0].decode("utf-8"))
        client.stop_stream(cancel_requests=True)
        seconds = time.perf_counter() - started
        after_cancel = []
        while not arrived.empty():
            result, error = arrived.get()
            after_cancel.append(error.message() if error is not None else "a response")
        return Cancelled(received, seconds, after_cancel)
    finally:
        client.close()


@dataclass
class StreamFigures:
    """What `measure_streams` measured at one concurrency."""

    streams: int
    ttft_ms: float          # median time to first token
    ttft_max_ms: float
    tokens_per_s: float     # median over the streams, each stream's tokens / its time after the first token
    total_tokens_per_s: float  # every stream's tokens / the wall time of the whole run

    def line(self) -> str:
        return (f"{self.streams} stream(s): time to first token {self.ttft_ms:.0f} ms (worst {self.ttft_max_ms:.0f} "
                f"ms), {self.tokens_per_s:.0f} tokens/s per stream, {self.total_tokens_per_s:.0f} tokens/s in all")


def measure_streams(grpc_address: str, concurrency: int, *, prompt: str = "The server ", max_tokens: int = 100,
                    model: str = TEXTGEN) -> StreamFigures:
    """`concurrency` streams at once, each on its own gRPC stream, each asking for `max_tokens`
    characters at temperature 0; the characters that came are what is counted."""
    results: list[list[Piece] | Exception] = [None] * concurrency  # type: ignore[list-item]
    barrier = threading.Barrier(concurrency)

    def one(index: int) -> None:
        barrier.wait()
        try:
            results[index] = stream_text(grpc_address, prompt, model=model, max_tokens=max_tokens)
        except Exception as exc:  # noqa: BLE001 - raised below, in the caller's thread
            results[index] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(concurrency)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    for result in results:
        if isinstance(result, Exception):
            raise result
    ttfts, rates, tokens = [], [], 0
    for pieces in results:
        chars = [p for p in pieces if p.text()]
        tokens += len(chars)
        ttfts.append(chars[0].seconds * 1000)
        if len(chars) > 1:
            rates.append((len(chars) - 1) / (chars[-1].seconds - chars[0].seconds))
    return StreamFigures(concurrency, statistics.median(ttfts), max(ttfts), statistics.median(rates), tokens / wall)


def send_frame(http_address: str, frame: np.ndarray, sequence_id: int, *, start: bool = False, end: bool = False,
               model: str = SMOOTHER) -> dict:
    """One frame of one camera stream (a sequence): the smoother's outputs as plain values. A refused
    request raises an InferenceError quoting Triton."""
    from tritonclient.utils import InferenceServerException

    client = clients.client(http_address, "http")
    try:
        result = client.infer(model, infer_inputs({INPUT_NAME: frame[None].astype(np.float32)}, "http"),
                              sequence_id=sequence_id, sequence_start=start, sequence_end=end)
    except InferenceServerException as exc:
        raise InferenceError(f"'{model}' refused the frame for sequence {sequence_id}.",
                             triton_said=exc.message(), fix=known_fix(exc.message())) from None
    finally:
        client.close()

    def value(name):
        return result.as_numpy(name).reshape(-1)[0]

    return {"frame": value("frame_label").decode(), "smoothed": value("smoothed_label").decode(),
            "score": round(float(value("smoothed_score")), 2), "frames": int(value("frames")),
            "sequences_held": int(value("sequences_held"))}


def wait_for_log(server, text: str, timeout: float = 10.0) -> str:
    """The first server-log line that contains `text`, waiting for it with a deadline ('' if none came)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in server.log_text().splitlines():
            if text in line:
                return line
        time.sleep(0.1)
    return ""



def known_fix(message: str) -> str | None:
    """The fix for the refusals this lesson shows (Triton's messages, read in the 2.51 server)."""
    fixes = {
        "decoupled transaction policy": "A decoupled model answers only on a stream: use tritonclient.grpc's "
                                        "start_stream + async_stream_infer, or HTTP POST .../generate_stream.",
        "exactly 1 response": "This model answers in several responses: POST to .../generate_stream instead.",
        "non-zero or non-empty correlation ID": "Give every request of a sequence the same sequence_id (not 0).",
        "must specify the START flag": "Triton does not know this sequence: it never started, or it idled out "
                                       "(max_sequence_idle_microseconds). Send its next frame with "
                                       "sequence_start=True: the model starts its state afresh.",
    }
    return next((fix for key, fix in fixes.items() if key in message), None)


# --- diagrams ------------------------------------------------------------------------------------

def draw_diagrams(folder: str | Path) -> list[Path]:
    """The lesson's two diagrams as PNG files: one response vs many (decoupled), and the sequence
    batcher's slots (direct strategy). Drawn with matplotlib from the same facts the lesson runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for ax, title, responses in ((axes[0], "default: one request, one response", 1),
                                 (axes[1], "decoupled: one request, many responses + final flag", 5)):
        ax.set_xlim(0, 10), ax.set_ylim(-0.5, 6.5), ax.axis("off"), ax.set_title(title, fontsize=10)
        ax.text(1, 6.2, "client", ha="center", weight="bold"), ax.text(9, 6.2, "Triton model", ha="center",
                                                                       weight="bold")
        ax.plot([1, 1], [0, 6], color="grey"), ax.plot([9, 9], [0, 6], color="grey")
        ax.annotate("", xy=(9, 5.5), xytext=(1, 5.5), arrowprops={"arrowstyle": "->", "color": "tab:blue"})
        ax.text(5, 5.65, "request", ha="center", color="tab:blue", fontsize=9)
        for i in range(responses):
            y = 4.5 - i * 0.9
            last = i == responses - 1
            ax.annotate("", xy=(1, y), xytext=(9, y), arrowprops={"arrowstyle": "->",
                                                                  "color": "tab:red" if last else "tab:green"})
            label = ("response" if responses == 1 else
                     ("final flag (TRITONSERVER_RESPONSE_COMPLETE_FINAL)" if last else f"response {i + 1}: one token"))
            ax.text(5, y + 0.12, label, ha="center", fontsize=8, color="tab:red" if last else "tab:green")
        ax.text(5, -0.4, "HTTP /infer or gRPC ModelInfer" if responses == 1 else
                "gRPC stream (start_stream) or HTTP generate_stream (SSE)", ha="center", fontsize=8, style="italic")
    fig.tight_layout()
    paths.append(folder / "15_one_vs_many_responses.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    # Direct strategy, 2 slots: sequence A starts, B starts, A ends, C waits in the backlog then takes A's slot.
    fig, ax = plt.subplots(figsize=(11, 3.4))
    steps = ["t1", "t2", "t3", "t4", "t5", "t6"]
    slot0 = [("A1", "START"), ("A2", ""), ("A3", "END"), ("C1", "START"), ("C2", ""), (None, "")]
    slot1 = [(None, ""), ("B1", "START"), ("B2", ""), (None, ""), ("B3", ""), ("B4", "END")]
    colours = {"A": "tab:blue", "B": "tab:orange", "C": "tab:green"}
    for row, slot in ((1, slot0), (0, slot1)):
        for col, (req, control) in enumerate(slot):
            if req is None:
                ax.add_patch(plt.Rectangle((col, row), 0.9, 0.8, fill=False, ls="--", ec="grey"))
                ax.text(col + 0.45, row + 0.4, "READY=0", ha="center", va="center", fontsize=8, color="grey")
                continue
            ax.add_patch(plt.Rectangle((col, row), 0.9, 0.8, color=colours[req[0]], alpha=0.75))
            ax.text(col + 0.45, row + 0.47, req, ha="center", va="center", color="white", weight="bold")
            if control:
                ax.text(col + 0.45, row + 0.15, control, ha="center", va="center", color="white", fontsize=7)
    ax.text(3.45, 2.05, "C waited in the backlog until A's END freed slot 0", ha="center", fontsize=8)
    ax.set_xlim(-0.9, 6), ax.set_ylim(-0.4, 2.3)
    ax.set_yticks([0.4, 1.4], ["slot 1", "slot 0"]), ax.set_xticks([i + 0.45 for i in range(6)], steps)
    ax.set_title("sequence batcher, direct strategy: each sequence keeps its slot (max_batch_size = 2 slots per "
                 "instance)\nan idle slot (no request, or a sequence past max_sequence_idle_microseconds) is freed",
                 fontsize=10)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    paths.append(folder / "15_sequence_batcher_slots.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def in_process_rate(prompt: str = "The server ", max_tokens: int = 100) -> float:
    """Characters per second of the same network in this process, no server (the limit for one stream)."""
    net = local_model()
    started = time.perf_counter()
    count = sum(1 for _ in net.generate(prompt, max_tokens))
    return count / (time.perf_counter() - started)


def benchmark_table(grpc_address: str, concurrencies=(1, 2, 4, 8), max_tokens: int = 100) -> str:
    """A Markdown table of time to first token and tokens/s at each number of concurrent streams,
    with the in-process rate of the same network for comparison (measured now, on this machine)."""
    limit = in_process_rate(max_tokens=max_tokens)
    stream_text(grpc_address, "warm up", max_tokens=5)  # the first request pays for the model's first call
    rows = ["| concurrent streams | time to first token, median (worst) | tokens/s per stream (median) | "
            "tokens/s in all |", "|---|---|---|---|"]
    for n in concurrencies:
        f = measure_streams(grpc_address, n, max_tokens=max_tokens)
        rows.append(f"| {n} | {f.ttft_ms:.0f} ms ({f.ttft_max_ms:.0f} ms) | {f.tokens_per_s:.0f} | "
                    f"{f.total_tokens_per_s:.0f} |")
    rows.append(f"\nThe same network in-process, no server: {limit:.0f} tokens/s (one stream).")
    return "\n".join(rows)
