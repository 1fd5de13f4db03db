"""The CPU counterpart of TensorRT: graph optimizations and INT8 quantization, checked in-process
and served by a real Triton; the photo alterations the accuracy check uses."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from triton_course import ConfigError, ModelLoadError, artifact, onnx_optimization, start_server
from triton_course.model_config import ModelConfig, ModelInstanceGroup
from triton_course.photos import augmented, batch, photos
from triton_course.repository import add_model


def _run(path, inputs: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {artifact.INPUT_NAME: inputs})[0]


@pytest.fixture(scope="module")
def inputs() -> np.ndarray:
    return batch(photos().values())


@pytest.fixture(scope="module")
def variants(tmp_path_factory, inputs) -> dict:
    work = tmp_path_factory.mktemp("variants")
    source = artifact.ensure_onnx()
    calibration = batch(augmented(photos(), per_photo=2, seed=1).values())
    return {
        "fp32": source,
        "extended": onnx_optimization.optimize_graph(source, work / "extended.onnx", level="extended"),
        "int8_dynamic": onnx_optimization.quantize_dynamic_int8(source, work / "dynamic.onnx"),
        "int8_static": onnx_optimization.quantize_static_int8(source, work / "static.onnx", calibration),
    }


def test_saved_graph_optimizations_fuse_nodes_and_keep_the_answers(variants, inputs):
    exported, optimized = (onnx.load(str(variants[k])).graph.node for k in ("fp32", "extended"))
    assert len(optimized) < len(exported) / 2
    assert "FusedConv" in {n.op_type for n in optimized}
    np.testing.assert_allclose(_run(variants["extended"], inputs), _run(variants["fp32"], inputs), atol=1e-3)
    with pytest.raises(ValueError, match="this CPU only"):
        onnx_optimization.optimize_graph(variants["fp32"], variants["fp32"].parent / "all.onnx", level="all")


def test_int8_models_are_a_quarter_of_the_size_and_mostly_agree(variants, inputs):
    reference = _run(variants["fp32"], inputs)
    for name in ("int8_dynamic", "int8_static"):
        assert onnx_optimization.size_mb(variants[name]) < onnx_optimization.size_mb(variants["fp32"]) / 3
    static_graph = onnx.load(str(variants["int8_static"])).graph
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in static_graph.node}
    assert onnx_optimization.top1_agreement(reference, _run(variants["int8_static"], inputs)) >= 0.8


def test_static_quantization_needs_calibration_inputs(tmp_path):
    with pytest.raises(ConfigError, match="calibration"):
        onnx_optimization.quantize_static_int8(artifact.ensure_onnx(), tmp_path / "x.onnx",
                                               np.zeros((0, 3, 224, 224), np.float32))


def test_top1_agreement_and_verdict():
    a = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    b = np.array([[0.2, 0.8], [0.1, 0.9], [0.4, 0.6], [0.9, 0.1]])
    assert onnx_optimization.top1_agreement(a, b) == 0.75
    with pytest.raises(ValueError, match="shape"):
        onnx_optimization.top1_agreement(a, b[:2])
    rows = [{"variant": "fp32", "MB": 18.6, "p99 ms": 30.0, "top-1 agreement": 1.0},
            {"variant": "faster", "MB": 5.0, "p99 ms": 15.0, "top-1 agreement": 0.96},
            {"variant": "same", "MB": 18.6, "p99 ms": 31.0, "top-1 agreement": 1.0},
            {"variant": "slower", "MB": 4.8, "p99 ms": 90.0, "top-1 agreement": 0.9},
            {"variant": "close", "MB": 18.6, "p99 ms": 29.0, "top-1 agreement": 1.0}]
    # Alternating runs of each: fp32 spreads over 90..110 infer/s.
    runs = {"fp32": [100.0, 90.0, 110.0], "faster": [180.0, 170.0, 190.0], "same": [95.0, 105.0, 99.0],
            "slower": [30.0, 28.0, 33.0], "close": [108.0, 115.0, 112.0]}
    faster, same, slower, close = onnx_optimization.verdict(rows, reference="fp32", throughputs=runs,
                                                            stable={"slower": False})
    assert faster.startswith("faster: x1.80 the throughput of fp32 (medians of 3 runs, 180 infer/s in 170..190 "
                             "against 100 in 90..110): faster on this CPU, it pays;")
    assert "on 96% of the images" in faster and "not stable" not in faster
    assert "x0.99" in same and "within the noise" in same  # inside fp32's spread
    # Above fp32's median but one run below fp32's fastest: still within the noise, not "faster".
    assert "x1.12" in close and "within the noise" in close and "faster on this CPU" not in close
    assert slower.startswith("slower: x0.30 the throughput of fp32")
    assert "slower on this CPU, it does not pay here (measurement not stable: slower)" in slower
    assert "file x0.26" in slower
    one_run = onnx_optimization.verdict(rows[:2], reference="fp32", throughputs={"fp32": [100.0], "faster": [180.0]})
    assert "too few runs to tell a difference from the noise" in one_run[0]


def test_augmented_photos_are_repeatable_and_varied():
    images = photos()
    first, again, other = (augmented(images, per_photo=3, seed=s) for s in (0, 0, 1))
    assert len(first) == 3 * len(images) and list(first) == list(again)
    assert all(np.array_equal(np.asarray(first[k]), np.asarray(again[k])) for k in first)
    assert list(first) != list(other) or any(
        not np.array_equal(np.asarray(first[k]), np.asarray(other[k])) for k in first)


@pytest.mark.server
def test_variants_served_by_triton(variants, inputs, tmp_path):
    """Quantized models and the graph level are served by a real Triton; a level onnxruntime does not
    know fails the load with a message that names it."""
    base = artifact.reference_config()

    def named(name, level=None):
        config = ModelConfig()
        config.CopyFrom(base)
        config.name = name
        config.instance_group.add(kind=ModelInstanceGroup.KIND_CPU, count=1)  # onnxruntime on the CPU everywhere
        if level is not None:
            config.optimization.graph.level = level
        return config

    repo, labels = tmp_path / "repo", artifact.labels()
    models = [(named("fp32"), variants["fp32"]), (named("no_graph_opt", level=2), variants["fp32"]),
              (named("int8_static"), variants["int8_static"]), (named("bad_level", level=7), variants["fp32"])]
    for config, path in models:
        add_model(repo, config, path, filename="model.onnx", labels=labels)
    with start_server(repo, model_control_mode="explicit", load_models=["fp32", "no_graph_opt", "int8_static"]) as s:
        served = {name: onnx_optimization.served_scores(s.grpc_address, name, inputs)
                  for name in ("fp32", "no_graph_opt", "int8_static")}
        np.testing.assert_allclose(served["fp32"], _run(variants["fp32"], inputs), atol=1e-4)
        np.testing.assert_allclose(served["no_graph_opt"], served["fp32"], atol=1e-3)
        np.testing.assert_allclose(served["int8_static"], _run(variants["int8_static"], inputs), atol=1e-4)
        with pytest.raises(ModelLoadError, match="optimization graph level 7"):
            s.load_model("bad_level")
