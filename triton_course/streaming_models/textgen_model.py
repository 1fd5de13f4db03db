"""Triton python-backend model in decoupled mode: a prompt in, the generated text out one character
per response, then the final flag.

Each request is served by its own thread (the response sender may outlive `execute`), so several
streams run at once on one model instance. Before every character the thread asks
`response_sender.is_cancelled()`: a client that cancels its stream stops the generation, and the
model still closes the request with TRITONSERVER_RESPONSE_COMPLETE_FINAL (the python backend's
README asks for that flag even after a cancellation). The network is charrnn.py beside this file.
"""

import os
import threading

import numpy as np
import triton_python_backend_utils as pb_utils
from charrnn import CharRNN

DEFAULT_MAX_TOKENS = 60


def _optional(request, name, default):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return default if tensor is None else tensor.as_numpy().reshape(-1)[0].item()


class TritonPythonModel:
    def initialize(self, args):
        try:  # one BLAS thread per stream: several streams' threads would otherwise fight over the cores
            from threadpoolctl import threadpool_limits
            threadpool_limits(1)
        except ImportError:
            pass
        here = os.path.join(args["model_repository"], args["model_version"])
        self.net = CharRNN(os.path.join(here, "charrnn.npz"), os.path.join(here, "charrnn_vocab.json"))
        self.logger = pb_utils.Logger
        self.threads = []

    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            try:
                prompt = pb_utils.get_input_tensor_by_name(request, "text_input").as_numpy().reshape(-1)[0]
                prompt = prompt.decode("utf-8") if isinstance(prompt, bytes) else str(prompt)
                max_tokens = int(_optional(request, "max_tokens", DEFAULT_MAX_TOKENS))
                temperature = float(_optional(request, "temperature", 0.0))
                if max_tokens < 1:
                    raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
            except Exception as exc:  # noqa: BLE001 - a bad request ends with its error, the model keeps serving
                sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"textgen: {exc}")),
                            flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                continue
            thread = threading.Thread(target=self._generate, args=(sender, prompt, max_tokens, temperature),
                                      daemon=True)
            thread.start()
            self.threads = [t for t in self.threads if t.is_alive()] + [thread]
        return None  # decoupled: the responses go through the senders, not the return value

    def _generate(self, sender, prompt, max_tokens, temperature):
        sent = 0
        try:
            for char in self.net.generate(prompt, max_tokens, temperature):
                if sender.is_cancelled():
                    self.logger.log_info(f"textgen: stream cancelled by the client after {sent} tokens")
                    break
                out = pb_utils.Tensor("text_output", np.array([char.encode("utf-8")], dtype=np.object_))
                sender.send(pb_utils.InferenceResponse(output_tensors=[out]))
                sent += 1
        except Exception as exc:  # noqa: BLE001 - whatever failed mid-stream ends this request with its error
            sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"textgen: {exc}")))
        sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    def finalize(self):
        for thread in self.threads:
            thread.join(timeout=10)
