"""Triton python-backend model for the sequence batcher: one camera stream is one sequence.

Each request carries one preprocessed frame; the model asks the classifier (by BLS) for the frame's
class probabilities and answers with the frame's own label and the label averaged over the last
`window` frames of the same sequence. The state (those probabilities) lives in this model, one entry
per correlation ID: START empties it, END frees it. A frame whose READY control is 0 is a slot the
batcher filled with no request (the direct strategy keeps slot positions): it changes nothing.
Self-contained: it runs in Triton's python stub.
"""

import collections
import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils


def _parameter(config, key, default):
    return ((config.get("parameters") or {}).get(key) or {}).get("string_value") or default


def _flag(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return tensor is not None and bool(tensor.as_numpy().reshape(-1)[0])


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.classifier = _parameter(config, "classifier_model", "efficientnet_lite0")
        self.window = int(_parameter(config, "window", "5"))
        with open(os.path.join(args["model_repository"], "labels.txt"), encoding="utf-8") as handle:
            self.labels = [line.rstrip("\n") for line in handle]
        self.frames = {}  # correlation ID -> the last `window` probability vectors of that sequence

    def _probabilities(self, frame):
        request = pb_utils.InferenceRequest(model_name=self.classifier, requested_output_names=["logits"],
                                            inputs=[pb_utils.Tensor("input", frame)])
        response = request.exec()
        if response.has_error():
            raise RuntimeError(response.error().message())
        logits = pb_utils.get_output_tensor_by_name(response, "logits").as_numpy()[0].astype(np.float64)
        shifted = np.exp(logits - logits.max())
        return shifted / shifted.sum()

    def _answer(self, frame_label, mean, count):
        best = int(np.argmax(mean))
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor("frame_label", np.array([[frame_label.encode()]], dtype=np.object_)),
            pb_utils.Tensor("smoothed_label", np.array([[self.labels[best].encode()]], dtype=np.object_)),
            pb_utils.Tensor("smoothed_score", np.array([[mean[best]]], dtype=np.float32)),
            pb_utils.Tensor("frames", np.array([[count]], dtype=np.int32)),
            # how many sequences this model holds state for: one that idled out stays until its ID STARTs again
            pb_utils.Tensor("sequences_held", np.array([[len(self.frames)]], dtype=np.int32))])

    def execute(self, requests):
        responses = []
        for request in requests:
            sequence = request.correlation_id()
            if not _flag(request, "READY"):
                pb_utils.Logger.log_info("smoother: a request with READY=0 (an empty batch slot)")
                responses.append(self._answer("", np.zeros(len(self.labels)), 0))
                continue
            try:
                frame = pb_utils.get_input_tensor_by_name(request, "input").as_numpy()
                probs = self._probabilities(frame)
            except Exception as exc:  # noqa: BLE001 - a bad frame fails its own request, the model keeps serving
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"smoother: {exc}")))
                continue
            if _flag(request, "START") or sequence not in self.frames:
                self.frames[sequence] = collections.deque(maxlen=self.window)
            history = self.frames[sequence]
            history.append(probs)
            responses.append(self._answer(self.labels[int(np.argmax(probs))], np.mean(history, axis=0),
                                          len(history)))
            if _flag(request, "END"):
                del self.frames[sequence]
        return responses
