"""Writes ``codec/graphs/matmul_f64.onnx``: one float64 MatMul, the exact path's matrix products.

    python -m codec.training.export_matmul [--out PATH]

Why a graph: :mod:`codec.exact_matmul` runs the exact path's float64 products in
onnxruntime, whose kernels are chosen by the CPU's feature flags, because numpy's
bundled OpenBLAS can misidentify a CPU and fall back to SSE3 kernels (six times
slower here).  The light runtime has onnxruntime but not the ``onnx`` package that
builds graphs, so the graph ships as a file; this script is how it was made, and a
test checks that the shipped file is what it makes.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import onnx
from onnx import TensorProto, helper

OUT = Path(__file__).resolve().parent.parent / "graphs" / "matmul_f64.onnx"
OPSET = 13  # MatMul's float64 kernel is registered since opset 13 in onnxruntime's CPU provider


def matmul_model() -> onnx.ModelProto:
    """c = a @ b on float64, (m, k) @ (k, n) → (m, n), every dimension dynamic."""
    node = helper.make_node("MatMul", ["a", "b"], ["c"])
    graph = helper.make_graph(
        [node], "lic_exact_matmul_f64",
        [helper.make_tensor_value_info("a", TensorProto.DOUBLE, ["m", "k"]),
         helper.make_tensor_value_info("b", TensorProto.DOUBLE, ["k", "n"])],
        [helper.make_tensor_value_info("c", TensorProto.DOUBLE, ["m", "n"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="lic")
    model.ir_version = 8  # readable by every onnxruntime the light install admits (>= 1.17)
    onnx.checker.check_model(model)
    return model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m codec.training.export_matmul", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(matmul_model().SerializeToString())
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
