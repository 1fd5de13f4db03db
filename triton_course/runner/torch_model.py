"""Triton python-backend model that serves a TorchScript file with PyTorch, on the GPU when the
instance group says KIND_GPU.

The course copies this file as model.py next to model.pt. It runs inside Triton's python stub, not
in the notebook, and needs nothing of the course but, for a config written for model.onnx (the
onnx_model_filename parameter), the ONNX runner copied beside it as onnx_model.py, whose checks it
applies. Inputs arrive in host memory; each execute() moves the batch the scheduler formed to the
device in one copy.
"""

import importlib.util
import json
import os

import numpy as np
import torch
import triton_python_backend_utils as pb_utils


def _check_against_onnx(config, version_dir, onnx_filename):
    """Check config.pbtxt against the ONNX file with the ONNX runner's own checks (the course puts
    onnx_model.py beside model.py), so a config mistake fails the load on the GPU as on the CPU."""
    onnx_path = os.path.join(version_dir, onnx_filename)
    if not os.path.exists(onnx_path):
        raise FileNotFoundError(f"unable to find '{onnx_path}' for model '{config['name']}'")
    spec = importlib.util.spec_from_file_location("course_onnx_runner", os.path.join(version_dir, "onnx_model.py"))
    onnx_runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(onnx_runner)
    session = onnx_runner.ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    onnx_runner.check_config(config, session)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.name = config["name"]
        self.max_batch_size = int(config.get("max_batch_size", 0))
        params = config.get("parameters") or {}
        filename = (params.get("torchscript_filename") or {}).get("string_value") or "model.pt"
        path = os.path.join(args["model_repository"], args["model_version"], filename)
        if not os.path.exists(path):
            raise FileNotFoundError(f"unable to find '{path}' for model '{self.name}'")
        onnx_filename = (params.get("onnx_model_filename") or {}).get("string_value")
        if onnx_filename:  # the config was written for model.onnx: the onnxruntime backend's checks apply
            _check_against_onnx(config, os.path.join(args["model_repository"], args["model_version"]), onnx_filename)
        if args.get("model_instance_kind") == "GPU":
            if not torch.cuda.is_available():
                raise RuntimeError(f"model '{self.name}' asks for KIND_GPU but PyTorch sees no CUDA device "
                                   f"(torch {torch.__version__}, CUDA build {torch.version.cuda})")
            self.device = torch.device(f"cuda:{int(args.get('model_instance_device_id', 0))}")
        else:
            self.device = torch.device("cpu")
        # Full FP32 on the GPU (no TF32 in matmuls and convolutions), so that the answers match the ONNX model's.
        # Calls run with TorchScript's optimizer off (below): it re-optimizes a graph after its first calls and per
        # batch size, and its fused kernels change the last digits, so one image would not get one answer.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        self.model = torch.jit.load(path, map_location=self.device).eval()
        self.input_names = [t["name"] for t in config["input"]]
        self.output_names = [t["name"] for t in config["output"]]
        where = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "CPU"
        pb_utils.Logger.log_info(f"torch runner: '{self.name}' serves {filename} with PyTorch {torch.__version__} "
                                 f"on {self.device} ({where})")

    def execute(self, requests):
        try:
            arrays = [[pb_utils.get_input_tensor_by_name(r, n).as_numpy() for n in self.input_names]
                      for r in requests]
            sizes = [a[0].shape[0] for a in arrays] if self.max_batch_size > 0 else [None] * len(arrays)
            if self.max_batch_size > 0:
                # The requests the dynamic batcher grouped become one batch on the device.
                feeds = [torch.from_numpy(np.concatenate([a[i] for a in arrays])).to(self.device)
                         for i in range(len(self.input_names))]
                with torch.inference_mode(), torch.jit.optimized_execution(False):
                    outputs = self.model(*feeds)
                outputs = [o.cpu().numpy() for o in (outputs if isinstance(outputs, (tuple, list)) else [outputs])]
                responses, start = [], 0
                for size in sizes:
                    tensors = [pb_utils.Tensor(n, o[start:start + size]) for n, o in zip(self.output_names, outputs)]
                    responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
                    start += size
                return responses
            responses = []
            for a in arrays:
                with torch.inference_mode(), torch.jit.optimized_execution(False):
                    outputs = self.model(*[torch.from_numpy(x).to(self.device) for x in a])
                outputs = outputs if isinstance(outputs, (tuple, list)) else [outputs]
                tensors = [pb_utils.Tensor(n, o.cpu().numpy()) for n, o in zip(self.output_names, outputs)]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            return responses
        except Exception as exc:  # noqa: BLE001 - every request must get an answer
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{type(exc).__name__}: {exc}"))
                    for _ in requests]
