"""The exact path's float64 matrix products, at the CPU's speed whatever numpy's BLAS detects.

Why: the exact path (:mod:`codec.exact`, :mod:`codec.exact_context`) is matrix products
of integers held in float64, and they are most of a decode's probability path.  numpy's
bundled OpenBLAS picks its kernels by CPU *model*; on a model it does not list (this
project's 2-core VMs, a recent Xeon) it falls back to SSE3 kernels ("Prescott"):
14 GFLOPS, against 89 for onnxruntime's MLAS, which dispatches on the CPU's feature
flags (AVX-512 here), on Kodak's largest product (384×2592 @ 2592×1536, 2 threads).
Which engine multiplies never changes a result: every product and partial sum is an
integer below 2^53 (``codec.exact.check_exact``), exact in float64 in any order, FMA
included.  So onnxruntime, a dependency of the light runtime already, multiplies
through a one-node graph (``graphs/matmul_f64.onnx``, made by
:mod:`codec.training.export_matmul`); numpy's ``@`` is the fallback where the graph
does not load, and for products too small to pay onnxruntime's call (~14 µs).

    a (m, k) float64 ─┐
                      ├─ MatMul (onnxruntime, or numpy) ─▶ (m, n) float64, exact integers
    b (k, n) float64 ─┘
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

GRAPH = Path(__file__).resolve().parent / "graphs" / "matmul_f64.onnx"
SMALL = 1 << 16  # multiply-adds below which numpy is quicker: onnxruntime 14 µs a call, numpy 13 µs at 37k (2 threads here)


def numpy_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """numpy's product: the reference, and the engine of paths built without a runtime."""
    return a @ b


class Matmul:
    """``matmul(a, b)``: a @ b of float64 arrays (integers below 2^53), in onnxruntime on
    ``threads`` intra-op threads (None: its default, all cores) once the first large product
    asks for it.  ``reason`` says why numpy multiplies instead, if the graph did not load."""

    def __init__(self, threads: int | None = None):
        self.threads, self.reason = threads, None
        self._session, self._lock = None, threading.Lock()

    def _load(self):
        with self._lock:
            if self._session is None and self.reason is None:
                try:
                    import onnxruntime as ort

                    options = ort.SessionOptions()
                    if self.threads is not None:
                        options.intra_op_num_threads = self.threads
                    # the walk runs numpy between products: threads spinning there would take its core
                    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                    self._session = ort.InferenceSession(str(GRAPH), options, providers=["CPUExecutionProvider"])
                except Exception as exc:  # noqa: BLE001  (no onnxruntime, or one without a float64 MatMul)
                    self.reason = f"{type(exc).__name__}: {exc}"
        return self._session

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if a.shape[0] * a.shape[1] * b.shape[1] < SMALL or (session := self._session or self._load()) is None:
            return a @ b
        return session.run(None, {"a": np.ascontiguousarray(a, np.float64),
                                  "b": np.ascontiguousarray(b, np.float64)})[0]
