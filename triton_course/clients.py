"""tritonclient's pieces, made in one place: a client for a server or an address, request tensors from NumPy
arrays, the outputs to ask for, and letting go of a shared-memory region. `triton_course.inference` re-exports
the first three for the lessons."""

from __future__ import annotations

import json
import time
from typing import Iterable

import numpy as np

PROTOCOLS = ("http", "grpc")
DEFAULT_TIMEOUT_S = 60.0  # tritonclient's own HTTP default: long enough for a first request that loads kernels

# URL scheme -> (the protocol it goes with, whether it needs TLS)
_SCHEMES = {"http": ("http", False), "https": ("http", True), "grpc": ("grpc", False)}
_FORMS = "host:port (127.0.0.1:8000), http://host:port, https://host (a proxy) or grpc://host:port"


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be 'http' or 'grpc', not {protocol!r}")


def address(server, protocol: str = "http") -> tuple[str, bool]:
    """(host:port as tritonclient takes it, whether TLS is needed) for `server`: a server object (anything with
    http_address and grpc_address: a TritonServer, a Balancer) or an address: host:port, or a URL with http://,
    https:// or grpc:// before it. An address that cannot be one raises a ValueError naming it."""
    _check_protocol(protocol)
    if not isinstance(server, str):
        if not hasattr(server, f"{protocol}_address"):
            raise TypeError(f"{server!r:.80} is neither a server (it has no {protocol}_address) nor an address. "
                            f"Give a server object or {_FORMS}.")
        return getattr(server, f"{protocol}_address"), False
    text = server.strip().rstrip("/")
    scheme, found, rest = text.partition("://")
    if not found:
        scheme, rest = "", text
    if scheme and scheme not in _SCHEMES:
        raise ValueError(f"{server!r} is not a Triton address: its scheme '{scheme}://' is none of "
                         f"http, https, grpc. Give {_FORMS}.")
    if scheme and _SCHEMES[scheme][0] != protocol:
        raise ValueError(f"The URL {server!r} ({scheme}://) does not go with protocol {protocol!r}: give the "
                         f"server's {protocol} address (server.{protocol}_address).")
    tls = bool(scheme) and _SCHEMES[scheme][1]
    host_port = rest.split("/", 1)[0]  # an HTTP address may go on with a path (a proxy's prefix)
    host, colon, port = host_port.rpartition(":")
    if not colon:
        host, port = host_port, ""
    port_ok = port.isdigit() and 0 < int(port) < 65536 if port else tls  # only https may leave the port out
    if not host or any(c.isspace() for c in rest) or not port_ok or (protocol == "grpc" and "/" in rest):
        raise ValueError(f"{server!r} is not a Triton {protocol} address. Give {_FORMS}.")
    return rest, tls


def grpc_retry_channel_args(max_attempts: int = 5, request_bytes: int = 16 << 20) -> list[tuple[str, object]]:
    """gRPC channel arguments that make the client send an inference again when it gets UNAVAILABLE (a server died
    with the request in flight): gRPC's retry policy, set in the channel's service config. For `channel_args=` of
    tritonclient.grpc.InferenceServerClient. Safe only for requests that may run twice: stateless inference, not a
    sequence's step or a decoupled stream.
    - the policy names Triton's gRPC service and its ModelInfer method (grpc_service.proto, package `inference`);
    - gRPC resends only what it still buffers: a request larger than the per-call retry buffer (256 KiB by default;
      one FP32 image is 588 KiB) is never retried, so the buffer is raised to `request_bytes`;
    - channel_args replaces tritonclient's own channel options, so its message size limits are set again."""
    service_config = {"methodConfig": [{
        "name": [{"service": "inference.GRPCInferenceService", "method": "ModelInfer"}],
        "retryPolicy": {"maxAttempts": max_attempts, "initialBackoff": "0.05s", "maxBackoff": "0.5s",
                        "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}}]}
    return [("grpc.enable_retries", 1),
            ("grpc.service_config", json.dumps(service_config)),
            ("grpc.per_rpc_retry_buffer_size", request_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.max_receive_message_length", -1)]


def client(server, protocol: str = "http", *, timeout: float = DEFAULT_TIMEOUT_S, **options):
    """A tritonclient InferenceServerClient (tritonclient.http or tritonclient.grpc, after `protocol`) for
    `server`: a server object or an address/URL ("127.0.0.1:8000", "http://127.0.0.1:8000", "grpc://...").
    Over HTTP, `timeout` bounds connecting and each answer; over gRPC a call takes its own `client_timeout`.
    `options` go to tritonclient as they are (concurrency=..., say). Close it, or use it in a `with`."""
    target, tls = address(server, protocol)
    if protocol == "http":
        import tritonclient.http as httpclient

        settings = {"connection_timeout": timeout, "network_timeout": timeout, "ssl": tls, **options}
        return httpclient.InferenceServerClient(target, **settings)
    import tritonclient.grpc as grpcclient

    return grpcclient.InferenceServerClient(target, **{"ssl": tls, **options})


def _module(protocol: str):
    _check_protocol(protocol)
    if protocol == "http":
        import tritonclient.http as module
    else:
        import tritonclient.grpc as module
    return module


def infer_inputs(values: dict[str, np.ndarray], protocol: str, *, shared_memory: dict[str, str] | None = None):
    """tritonclient InferInputs (HTTP or gRPC) for a dict of input name -> array (a BYTES input as an object
    array of bytes), the datatype taken from each array's NumPy dtype. An input named in `shared_memory` refers
    to that registered system shared-memory region, which already holds its bytes, instead of carrying them."""
    from tritonclient.utils import np_to_triton_dtype

    module = _module(protocol)
    shared_memory = shared_memory or {}
    inputs = []
    for name, value in values.items():
        value = np.asarray(value)
        item = module.InferInput(name, list(value.shape), np_to_triton_dtype(value.dtype))
        if name in shared_memory:
            item.set_shared_memory(shared_memory[name], value.nbytes)
        else:
            item.set_data_from_numpy(value)
        inputs.append(item)
    return inputs


def requested_outputs(names: Iterable[str], protocol: str):
    """tritonclient InferRequestedOutputs (HTTP or gRPC) for the output names to ask for."""
    module = _module(protocol)
    return [module.InferRequestedOutput(name) for name in names]


def unregister_shared_memory(triton, name: str, within_s: float = 10.0) -> None:
    """Unregister a system shared-memory region from the server that the client `triton` talks to. Triton may
    still hold it for a moment after answering the last request that used it ("currently in use"): ask again
    until it lets go, within a deadline."""
    from tritonclient.utils import InferenceServerException

    deadline = time.monotonic() + within_s
    while True:
        try:
            triton.unregister_system_shared_memory(name)
            return
        except InferenceServerException as exc:
            if "currently in use" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
