# The course's stand-in for nvcr.io/nvidia/tritonserver:24.10-py3, built offline by
# scripts/docker_engine.sh: Triton 2.51.0 (from the nvidia-pytriton wheel) in the NGC layout,
# python backend only, with what the course's ONNX runner imports.
FROM local/debian:bookworm-min
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      python3 python3-pip libpython3.11 curl iproute2 \
 && rm -rf /var/lib/apt/lists/*
COPY wheels /tmp/wheels
RUN python3 -m pip install --no-index --find-links /tmp/wheels --break-system-packages -q \
      numpy onnxruntime pillow \
 && rm -rf /tmp/wheels
COPY tritonserver /opt/tritonserver
RUN chmod +x /opt/tritonserver/bin/tritonserver /opt/tritonserver/backends/python/triton_python_backend_stub
ENV PATH=/opt/tritonserver/bin:$PATH \
    LD_LIBRARY_PATH=/opt/tritonserver/lib \
    TRITON_SERVER_VERSION=2.51.0 \
    NVIDIA_TRITON_SERVER_VERSION=24.10-course-ci
WORKDIR /opt/tritonserver
