"""Triton python-backend model using BLS (business logic scripting): it calls other models itself.

Image bytes in; it asks the preprocessing model for the tensor and the classifier for the logits,
then applies a rule an ensemble cannot express: below a confidence threshold the answer is
"unsure". The models it calls are named in its config's parameters. Self-contained: it runs in
Triton's python stub.
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils


def _parameter(config, key, default):
    return ((config.get("parameters") or {}).get(key) or {}).get("string_value") or default


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.preprocess = _parameter(config, "preprocess_model", "preprocess")
        self.classifier = _parameter(config, "classifier_model", "efficientnet_lite0")
        self.threshold = float(_parameter(config, "threshold", "0.5"))
        with open(os.path.join(args["model_repository"], "labels.txt"), encoding="utf-8") as handle:
            self.labels = [line.rstrip("\n") for line in handle]

    def _call(self, model, output, tensor):
        response = pb_utils.InferenceRequest(model_name=model, requested_output_names=[output],
                                             inputs=[tensor]).exec()
        if response.has_error():
            raise RuntimeError(response.error().message())
        return pb_utils.get_output_tensor_by_name(response, output)

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                image = pb_utils.get_input_tensor_by_name(request, "image")
                pixels = self._call(self.preprocess, "input", pb_utils.Tensor("image", image.as_numpy()))
                logits = self._call(self.classifier, "logits", pb_utils.Tensor("input", pixels.as_numpy()))
                scores = logits.as_numpy().astype(np.float64)
                probs = np.exp(scores - scores.max(axis=1, keepdims=True))
                probs /= probs.sum(axis=1, keepdims=True)
                best = probs.argmax(axis=1)
                confident = probs[np.arange(len(best)), best] >= self.threshold
                labels = np.array([[self.labels[b] if ok else "unsure"] for b, ok in zip(best, confident)],
                                  dtype=np.object_)
                top = probs[np.arange(len(best)), best].astype(np.float32).reshape(-1, 1)
                responses.append(pb_utils.InferenceResponse(output_tensors=[
                    pb_utils.Tensor("label", labels), pb_utils.Tensor("score", top)]))
            except RuntimeError as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
        return responses
