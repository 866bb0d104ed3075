"""Export g_a, h_a, g_s and h_s of a frozen model as ONNX graphs whose weights stay in the safetensors file.

Export time only (needs torch and ``onnx``); the runtime that reads the graphs is
:mod:`codec.onnx_runtime`, which needs neither.  Each graph is written beside the weights
file as ``<stem>.<g_a|h_a|g_s|h_s>.onnx`` and holds operators only: every initializer that
is a tensor of the weights file becomes a standard ONNX *external-data* reference into the
safetensors file itself (``location`` = its file name, ``offset`` = the tensor's absolute
byte offset, 8 + header length + ``data_offsets[0]``, ``length`` = its bytes), named by its
safetensors key (``g_a.0.weight``) and typed as stored.  So the ~9 MB of weights ship once,
and onnxruntime maps them itself, with no loader of ours.  fp16 tensors (the learned
parameters) are consumed through a ``Cast`` to float, so the arithmetic stays fp32 as in
torch (onnxruntime folds the casts when a session starts); fp32 buffers (GDN bounds and
pedestals) are referenced as FLOAT.  A graph also records the SHA-256 of the weights file
(``metadata_props["weights_sha256"]``): the runtime refuses it for any other file, since
same-shaped weights would otherwise run silently.

Exporter: the TorchScript one (``dynamo=False``): it needs no ``onnxscript``, and with
``do_constant_folding=False`` it keeps the parameters as they are in the file, so GDN's
reparametrisation max(p, bound)² − pedestal stays in the graph.  It merges initializers of
equal value (the GDN bounds and pedestals), which then refer to one file key; harmless.

    python -m codec.training.export_onnx [WEIGHTS ...]   # default: every shipped weights file
"""
from __future__ import annotations

import io
import json
import os
import struct
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from safetensors import safe_open

from ..container import sha256_file
from ..onnx_runtime import TRANSFORMS, graph_path
from ..shipped import WEIGHTS_DIR, shipped_manifest
from ..weights import load_weights

OPSET = 17
SHA_KEY = "weights_sha256"
MAX_EMBEDDED = 64 << 10  # bytes of non-file constants a graph may carry (shape constants: ~100 B)
# per transform: (input name, output name, channels of a dummy input ("M"/"N"/int), its side)
_IO = {"g_a": ("x", "y", 3, 64), "h_a": ("y", "z", "M", 8), "g_s": ("y", "x_hat", "M", 4),
       "h_s": ("z", "params", "N", 2)}
_ONNX_DTYPE = {"F16": onnx.TensorProto.FLOAT16, "F32": onnx.TensorProto.FLOAT}


def safetensors_layout(path: str | os.PathLike) -> dict[str, tuple[str, int, int]]:
    """key → (dtype, absolute byte offset, byte length) of every tensor of a safetensors file."""
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    header.pop("__metadata__", None)
    return {k: (v["dtype"], 8 + size + v["data_offsets"][0], v["data_offsets"][1] - v["data_offsets"][0])
            for k, v in header.items()}


def _export(module: torch.nn.Module, transform: str, config) -> onnx.ModelProto:
    name_in, name_out, channels, side = _IO[transform]
    channels = getattr(config, channels) if isinstance(channels, str) else channels
    dummy = torch.randn(1, channels, side, side)
    axes = {0: "batch", 2: "height", 3: "width"}
    buf = io.BytesIO()
    with warnings.catch_warnings():  # the legacy exporter's deprecation notice
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (dummy,), buf, dynamo=False, opset_version=OPSET, do_constant_folding=False,
                          export_params=True, input_names=[name_in], output_names=[name_out],
                          dynamic_axes={name_in: axes, name_out: dict(axes)})
    return onnx.load_from_string(buf.getvalue())


def _externalise(model: onnx.ModelProto, transform: str, file_tensors: dict[str, np.ndarray],
                 layout: dict[str, tuple[str, int, int]], location: str) -> int:
    """Turn every initializer equal to a file tensor into an external-data reference into the file.

    Prefers the key of the initializer's own name (``<transform>.<name>``), else any file tensor
    of the same shape and exactly the same values.  fp16 tensors get a Cast to float, which their
    consumers read instead.  Returns the bytes of constants left embedded.
    """
    graph, renamed, taken, kept, casts = model.graph, {}, set(), [], []
    for init in graph.initializer:
        value = numpy_helper.to_array(init)
        own = f"{transform}.{init.name}"
        keys = [own] if own in file_tensors else []
        keys += [k for k in file_tensors if k != own and k.startswith(f"{transform}.")]
        key = next((k for k in keys if file_tensors[k].shape == value.shape
                    and np.array_equal(file_tensors[k], value)), None)
        if key is None:
            kept.append(init)
            continue
        dtype, offset, length = layout[key]
        renamed[init.name] = f"{key}.float" if dtype == "F16" else key
        if key in taken:  # a second initializer with the same values: refer to the first
            continue
        taken.add(key)
        ref = onnx.TensorProto(name=key, data_type=_ONNX_DTYPE[dtype], dims=init.dims,
                               data_location=onnx.TensorProto.EXTERNAL)
        for k, v in (("location", location), ("offset", str(offset)), ("length", str(length))):
            ref.external_data.add(key=k, value=v)
        kept.append(ref)
        if dtype == "F16":
            casts.append(onnx.helper.make_node("Cast", [key], [f"{key}.float"], name=f"{key}.cast",
                                               to=onnx.TensorProto.FLOAT))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    for node in graph.node:
        node.input[:] = [renamed.get(v, v) for v in node.input]
    nodes = casts + list(graph.node)  # casts first: the node list must stay topologically sorted
    del graph.node[:]
    graph.node.extend(nodes)
    embedded = sum(len(i.SerializeToString()) for i in graph.initializer if i.data_location != onnx.TensorProto.EXTERNAL)
    embedded += sum(len(n.SerializeToString()) for n in graph.node if n.op_type == "Constant")
    return embedded


def _verify(path: Path, file_tensors: dict[str, np.ndarray]) -> None:
    """The written graph passes the checker with its external data resolved, and every reference
    reads back exactly the file tensor of its name (so the offsets are right)."""
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path), load_external_data=True)
    for init in model.graph.initializer:
        if init.name in file_tensors:
            value = numpy_helper.to_array(init).astype(np.float32)
            if not np.array_equal(value, file_tensors[init.name]):
                raise RuntimeError(f"{path.name}: {init.name} does not read back from the weights file")


def export_graphs(weights_path: str | os.PathLike) -> list[Path]:
    """Export g_a, h_a, g_s, h_s of ``weights_path`` (fp32, dynamic batch/height/width) → the written paths."""
    weights_path = Path(weights_path)
    frozen = load_weights(weights_path)
    digest = sha256_file(weights_path).hex()
    layout = safetensors_layout(weights_path)
    with safe_open(str(weights_path), framework="numpy") as f:
        keys = [k for k in f.keys() if k.split(".")[0] in TRANSFORMS]  # noqa: SIM118  (not a dict)
        file_tensors = {k: f.get_tensor(k).astype(np.float32) for k in keys}
    written = []
    for transform in TRANSFORMS:
        model = _export(getattr(frozen, transform).float().eval(), transform, frozen.config)
        onnx.checker.check_model(model)
        embedded = _externalise(model, transform, file_tensors, layout, weights_path.name)
        if embedded > MAX_EMBEDDED:
            raise RuntimeError(f"{transform}: {embedded} bytes of constants are not tensors of {weights_path.name} "
                               "(did the exporter fold parameters?)")
        onnx.helper.set_model_props(model, {SHA_KEY: digest, "weights_file": weights_path.name,
                                            "transform": transform})
        path = graph_path(weights_path, transform)
        tmp = path.with_name(path.name + ".tmp")  # same folder, so the external data resolve
        tmp.write_bytes(model.SerializeToString())
        try:
            _verify(tmp, file_tensors)
        except BaseException:
            tmp.unlink()
            raise
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        written.append(path)
        print(f"{path.name}: {path.stat().st_size} bytes ({embedded} B embedded constants)", file=sys.stderr)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in args):
        print(__doc__)
        return 0
    paths = [Path(a) for a in args] or [WEIGHTS_DIR / name for name in sorted(shipped_manifest())]
    for path in paths:
        export_graphs(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
