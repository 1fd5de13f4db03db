"""Triton python-backend model (decoupled) serving SmolLM2-135M-Instruct with the vLLM backend's request
contract as of Triton 24.10: `text_input` (BYTES), optional `stream` (BOOL), `sampling_parameters` (BYTES,
a JSON object) and `exclude_input_in_output` (BOOL) in, `text_output` (BYTES) out.
(vllm_backend src/model.py: one response per step while streaming, else one final response with the whole
text; the prompt is prepended when not streaming unless exclude_input_in_output is true.)

How requests are scheduled depends on the config, so one model.py serves both halves of lesson 16:
- `sequence_batching { iterative_sequence: true }` (in-flight batching): every `execute` moves each request
  it holds ONE token forward in one batched step, sends that token, and hands the unfinished requests back to
  Triton (TRITONSERVER_REQUEST_RELEASE_RESCHEDULE); Triton's next batch mixes them with requests that arrived
  meanwhile, so a new request starts at the next step.
- `dynamic_batching {}` (request-level batching): `execute` takes the batch Triton formed and runs it to the
  end; a request that arrives meanwhile waits for the whole batch to finish.

The engine is llm_engine.py beside this file (transformers on CPU or CUDA). This file is the course's: the
vLLM backend runs vLLM's engine, which batches in flight inside vLLM (its max_batch_size is 0).
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils
from llm_engine import Engine, RequestError, sampling_parameters

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


def _input(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy().reshape(-1)


class Request:
    """One request being answered: its sender, its Sequence and what the client asked for."""

    def __init__(self, request, engine):
        self.sender = request.get_response_sender()
        text = _input(request, "text_input")
        if text is None or len(text) != 1:
            raise RequestError("text_input must hold exactly one prompt")
        self.prompt = text[0].decode("utf-8") if isinstance(text[0], bytes) else str(text[0])
        self.stream = self._bool(request, "stream", False)
        # vLLM's rule: the prompt comes back in front of the answer only when not streaming, unless excluded
        exclude = self._bool(request, "exclude_input_in_output", None)
        if self.stream and exclude is False:
            raise RequestError("exclude_input_in_output = false is not allowed when streaming")
        self.prepend = not self.stream and not exclude
        raw = _input(request, "sampling_parameters")
        self.sequence = engine.new_sequence(self.prompt, sampling_parameters(
            None if raw is None else raw[0], engine.max_context))

    @staticmethod
    def _bool(request, name, default):
        value = _input(request, name)
        if value is None:
            return default
        if value.dtype != np.bool_:
            raise RequestError(f"{name} must be BOOL, got {value.dtype}")
        return bool(value[0])

    def send(self, text, final=False):
        out = pb_utils.Tensor("text_output", np.array([text.encode("utf-8")], dtype=np.object_))
        self.sender.send(pb_utils.InferenceResponse(output_tensors=[out]), flags=FINAL if final else 0)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.inflight = bool(config.get("sequence_batching", {}).get("iterative_sequence"))
        device = "cuda" if args["model_instance_kind"] == "GPU" else "cpu"
        here = os.path.join(args["model_repository"], args["model_version"])
        self.engine = Engine(os.path.join(here, "weights"), device)  # weights: a link to the converted folder
        self.active = {}  # in-flight mode: correlation id -> Request, kept across reschedules
        self.logger = pb_utils.Logger

    def execute(self, requests):
        if self.inflight:
            self._one_step(requests)
        else:
            self._to_the_end(requests)
        return None  # decoupled: responses go through each request's sender

    def _start(self, request):
        """A Request, or None after sending the error that names the bad field (the others go on)."""
        try:
            return Request(request, self.engine)
        except RequestError as exc:
            request.get_response_sender().send(
                pb_utils.InferenceResponse(error=pb_utils.TritonError(f"smollm2 model.py: {exc}")), flags=FINAL)
            return None

    def _finish_or_send(self, job, added):
        """Send what this step added (streaming) or, at the end, the whole answer; True when finished."""
        seq = job.sequence
        cancelled = job.sender.is_cancelled()
        if cancelled:
            self.logger.log_info(f"smollm2: request cancelled by the client after {len(seq.tokens)} tokens")
            job.sender.send(flags=FINAL)
            return True
        if job.stream and (added or seq.finish_reason):
            job.send(added, final=seq.finish_reason is not None)
        elif seq.finish_reason:
            job.send((job.prompt if job.prepend else "") + seq.text, final=True)
        return seq.finish_reason is not None

    @staticmethod
    def _sequence_id(request):
        """The id Triton's sequence batcher gave this request's sequence: its CONTROL_SEQUENCE_CORRID input
        (the request itself carries the client's id, 0 when it sent none)."""
        corrid = _input(request, "correlation_id")
        return int(corrid[0]) if corrid is not None else request.correlation_id()

    def _one_step(self, requests):
        jobs = []
        for request in requests:
            key = self._sequence_id(request)
            start = _input(request, "start")  # Triton sets START on a sequence's first request only
            if key not in self.active or (start is not None and start[0]):
                job = self._start(request)
                if job is None:
                    request.set_release_flags(pb_utils.TRITONSERVER_REQUEST_RELEASE_ALL)
                    continue
                self.active[key] = job
            jobs.append((request, key, self.active[key]))
        if not jobs:
            return
        added = self.engine.step([job.sequence for _, _, job in jobs])
        for (request, key, job), text in zip(jobs, added):
            if self._finish_or_send(job, text):
                del self.active[key]
                request.set_release_flags(pb_utils.TRITONSERVER_REQUEST_RELEASE_ALL)
            else:  # back to Triton's queue: the next step's batch may hold new requests beside it
                request.set_release_flags(pb_utils.TRITONSERVER_REQUEST_RELEASE_RESCHEDULE)

    def _to_the_end(self, requests):
        running = [job for job in map(self._start, requests) if job is not None]
        while running:
            added = self.engine.step([job.sequence for job in running])
            running = [job for job, text in zip(running, added) if not self._finish_or_send(job, text)]
