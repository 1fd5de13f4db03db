"""Triton python-backend model for lab 15: it runs the learner's function, saved beside it as answer.py.

The config's parameters name the function; with `stateful` set, the function also gets a dict that
lives as long as the model (for state kept between the requests of a sequence).
"""

import json

import answer
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        parameters = json.loads(args["model_config"]).get("parameters") or {}
        self.function = getattr(answer, parameters["function"]["string_value"])
        self.stateful = parameters.get("stateful", {}).get("string_value") == "true"
        self.state = {}

    def execute(self, requests):
        if self.stateful:
            return self.function(requests, pb_utils, self.state)
        return self.function(requests, pb_utils)
