"""Helpers for the Triton Inference Server course: servers, repositories, configs, clients.

Notebooks import what they need, for example:

    from triton_course import start_server, photos, inference
"""

import os

# gRPC's C core writes some events (a refused TLS handshake, for one) at INFO level straight to the process's
# stderr, which a notebook then shows with a timestamp; errors only. Read once, when grpc is first imported.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from .errors import ConfigError, CourseError, InferenceError, ModelLoadError, PortInUseError, ServerStartError
from .paths import MODEL_NAME, course_root, models_dir, workspace_dir
from .runtimes import TritonServer, best_runtime, server, start_server

__version__ = "0.1.0"

__all__ = [
    "MODEL_NAME", "ConfigError", "CourseError", "InferenceError", "ModelLoadError", "PortInUseError",
    "ServerStartError", "TritonServer", "best_runtime", "course_root", "models_dir", "server",
    "start_server", "workspace_dir",
]
