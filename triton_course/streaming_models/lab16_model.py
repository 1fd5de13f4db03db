"""Triton python-backend model for lab 16: the real SmolLM2 engine makes the pieces of an answer, the learner's
`token_loop(sender, pieces, pb_utils)` (saved beside this file as answer.py) sends them.

`pieces` yields the answer's text one step at a time (greedy, at most MAX_TOKENS tokens); the model counts how
many the loop drew and logs it when the loop returns, so the check can see a loop that went on after the client
cancelled.
"""

import hashlib
import os
import threading

import answer
import triton_python_backend_utils as pb_utils
from llm_engine import Engine

MAX_TOKENS = 24


class TritonPythonModel:
    def initialize(self, args):
        here = os.path.join(args["model_repository"], args["model_version"])
        self.engine = Engine(os.path.join(here, "weights"))
        self.lock = threading.Lock()  # one request at a time through the engine; the loops may overlap
        self.threads = []

    def _pieces(self, prompt, drawn):
        sequence = None
        while sequence is None or sequence.finish_reason is None:
            with self.lock:
                if sequence is None:
                    sequence = self.engine.new_sequence(
                        prompt, dict(temperature=0.0, top_p=1.0, max_tokens=MAX_TOKENS, stop=[], seed=None))
                added = self.engine.step([sequence])[0]
            if added:
                drawn[0] += 1
                yield added

    def _run(self, request):
        sender = request.get_response_sender()
        prompt = pb_utils.get_input_tensor_by_name(request, "text_input").as_numpy().reshape(-1)[0].decode()
        drawn, raised = [0], ""
        try:
            answer.token_loop(sender, self._pieces(prompt, drawn), pb_utils)
        except Exception as exc:  # noqa: BLE001 - the learner's loop; the check reports it
            raised = f" raised {type(exc).__name__}: {' '.join(str(exc).split())}"
        key = hashlib.sha1(prompt.encode()).hexdigest()[:12]
        # (not sender.is_cancelled() here: a sender closed by the final flag raises when asked)
        pb_utils.Logger.log_info(f"lab16: prompt {key} drawn {drawn[0]}{raised}")

    def execute(self, requests):
        for request in requests:
            thread = threading.Thread(target=self._run, args=(request,), daemon=True)
            thread.start()
            self.threads = [t for t in self.threads if t.is_alive()] + [thread]
        return None

    def finalize(self):
        for thread in self.threads:
            thread.join(timeout=30)
