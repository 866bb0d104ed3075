"""The exact path's largest matrix product on each engine that computes it exactly, side by side.

    python -m benchmarks.exact_gemm [--threads 2] [--rounds 9]

Why: the exact probability path is integer arithmetic, and its speed is that of the engine
doing it.  h_s's last layer on a Kodak-sized latent is one product of 384 × 2592 weights by
2592 × 1536 unfolded activations (1.5 GMAC).  Measured, rounds interleaved:

- numpy ``@`` in float64 (what OpenBLAS detects for this CPU; ``OPENBLAS_VERBOSE=2`` says which);
- onnxruntime's float64 MatMul (what the exact path runs, :mod:`codec.exact_matmul`);
- onnxruntime's MatMulInteger, uint8 activations by int8 weights of 7 bits into int32: the
  product an integer profile with 8-bit activations would need.  7-bit weights keep AVX2's
  pairwise int16 sums (``vpmaddubsw``) from saturating, so every x86 CPU gives the same
  integers; each result is checked against int64 arithmetic.

Needs the ``export`` extra (the ``onnx`` package builds the graphs).
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

M, K, N = 384, 2592, 1536  # h_s's last 3×3 layer: 384 outputs, 288 × 9 inputs, 48 × 32 positions


def _session(op: str, a_type: int, b_type: int, out_type: int, threads: int) -> ort.InferenceSession:
    graph = helper.make_graph(
        [helper.make_node(op, ["a", "b"], ["c"])], op,
        [helper.make_tensor_value_info("a", a_type, ["m", "k"]), helper.make_tensor_value_info("b", b_type, ["k", "n"])],
        [helper.make_tensor_value_info("c", out_type, ["m", "n"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.exact_gemm", description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2, help="onnxruntime's threads (numpy's: OPENBLAS_NUM_THREADS)")
    p.add_argument("--rounds", type=int, default=9)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    w = rng.integers(-2**14, 2**14, (M, K)).astype(np.float64)  # the exact path's fixed point
    a = rng.integers(-2**18, 2**18, (K, N)).astype(np.float64)
    u8 = rng.integers(0, 256, (N, K)).astype(np.uint8)  # uint8 activations (positions × inputs)
    s8 = rng.integers(-64, 64, (K, M)).astype(np.int8)  # 7-bit weights
    f64 = _session("MatMul", TensorProto.DOUBLE, TensorProto.DOUBLE, TensorProto.DOUBLE, args.threads)
    i8 = _session("MatMulInteger", TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32, args.threads)
    engines = {
        "numpy float64": (lambda: w @ a, w @ a),
        "onnxruntime float64 MatMul": (lambda: f64.run(None, {"a": w, "b": a})[0], w @ a),
        "onnxruntime MatMulInteger u8 × s8(7 bits) → int32": (
            lambda: i8.run(None, {"a": u8, "b": s8})[0], u8.astype(np.int64) @ s8.astype(np.int64)),
    }
    times = {name: [] for name in engines}
    for name, (run, expected) in engines.items():
        if not np.array_equal(run(), expected):
            raise SystemExit(f"{name}: not exact")
    for _ in range(args.rounds):
        for name, (run, _) in engines.items():
            t = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t)
    print(f"{M}×{K} @ {K}×{N} ({M * K * N / 1e9:.2f} GMAC), median of {args.rounds} interleaved rounds, every result exact")
    print("| engine | ms | G multiply-adds/s |\n|---|---|---|")
    for name, t in times.items():
        ms = statistics.median(t) * 1000
        print(f"| {name} | {ms:.1f} | {M * K * N / ms / 1e6:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
