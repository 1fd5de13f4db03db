"""Which in-process figure a served throughput is held against: the batch size Triton formed, same precision."""

import pytest

from triton_course.inprocess import GRAPH_FROM_HOST, GRAPH_ON_GPU, Limit, at_formed_batch, served_vs_ceiling

CPU = [Limit("onnxruntime", "CPU", b, rate, 1.0) for b, rate in ((1, 100.0), (4, 150.0), (8, 160.0))]
GPU = [Limit("pytorch", "cuda", b, rate, 1.0, precision, method, "NVIDIA H200")
       for precision, scale in (("FP32", 1.0), ("FP16", 1.5))
       for method, share in ((GRAPH_ON_GPU, 1.0), (GRAPH_FROM_HOST, 0.5))
       for b, rate in ((1, 1000.0 * scale * share), (8, 6000.0 * scale * share), (32, 11000.0 * scale * share))]


@pytest.mark.parametrize("formed, batch_size", [(1.0, 1), (1.2, 4), (4.0, 4), (5.5, 8), (20.0, 8)])
def test_the_cpu_ceiling_is_at_the_smallest_measured_batch_that_holds_the_formed_batches(formed, batch_size):
    assert at_formed_batch(CPU, formed).batch_size == batch_size


def test_on_a_gpu_the_ceiling_is_the_network_alone_at_the_same_precision():
    fp32 = at_formed_batch(GPU, 6.3)
    assert (fp32.batch_size, fp32.precision, fp32.method, fp32.throughput) == (8, "FP32", GRAPH_ON_GPU, 6000.0)
    fp16 = at_formed_batch(GPU, 6.3, "FP16")
    assert (fp16.batch_size, fp16.precision, fp16.throughput) == (8, "FP16", 9000.0)
    with pytest.raises(KeyError, match="TF32"):
        at_formed_batch(GPU, 1, "TF32")


def test_the_line_says_served_share_batch_and_where_the_ceiling_ran():
    line = served_vs_ceiling("dynamic_batching c=8", 120.0, 5.5, CPU)
    assert line == ("dynamic_batching c=8: served 120 infer/s in batches of 5.5 = 0.75 of the ceiling at batch 8 "
                    "(onnxruntime on the CPU: 160 infer/s)")
    assert "(FP32 CUDA graph on this GPU, NVIDIA H200: 6000 infer/s)" in served_vs_ceiling("x", 3000.0, 8.0, GPU)
