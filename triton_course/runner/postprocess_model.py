"""Triton python-backend model: the classifier's logits in, the top-k labels and probabilities out.

k is the length of the configured outputs' dims; the labels are read from labels.txt in the model's
folder (one per line, in the classifier's output order). Self-contained: it runs in Triton's python stub.
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        outputs = {o["name"]: o for o in config["output"]}
        self.input_name = config["input"][0]["name"]
        self.k = int(outputs["labels"]["dims"][0])
        with open(os.path.join(args["model_repository"], "labels.txt"), encoding="utf-8") as handle:
            self.labels = np.array([line.rstrip("\n") for line in handle], dtype=object)
        classes = int(config["input"][0]["dims"][0])
        if len(self.labels) != classes:
            raise ValueError(f"labels.txt has {len(self.labels)} lines but input '{self.input_name}' "
                             f"has {classes} classes")

    def execute(self, requests):
        responses = []
        for request in requests:
            logits = pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy().astype(np.float64)
            shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs = shifted / shifted.sum(axis=1, keepdims=True)
            top = np.argsort(-probs, axis=1)[:, :self.k]
            labels = self.labels[top]
            scores = np.take_along_axis(probs, top, axis=1).astype(np.float32)
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("labels", labels.astype(np.object_)), pb_utils.Tensor("scores", scores)]))
        return responses
