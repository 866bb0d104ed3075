"""Export g_a, h_a, g_s and h_s of a frozen model as ONNX graphs whose weights stay in the safetensors file.

Export time only (needs torch and ``onnx``); the runtime that reads the graphs is
:mod:`codec.onnx_runtime`, which needs neither.  Each graph is written beside the weights
file as ``<stem>.<g_a|h_a|g_s|h_s>.onnx`` (and ``<stem>.residual.onnx``, the latent residual
predictor's, (ŷ', μ, σ) stacked on channels, beside weights that have one) and holds operators only: every initializer that
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

g_s's transposed convolutions (5×5, stride 2) are rewritten as sub-pixel convolutions
(:func:`subpixel_deconvs`): a 3×3 stride-1 Conv to the 4 output phases, then DepthToSpace.
onnxruntime's ConvTranspose unfolds a column buffer of C_out·25 × H_in·W_in floats (~160 MB
in g_s's third layer on a Kodak image), while its Conv works in small blocks: measured on
Kodak's g_s (2 threads), peak RSS 299 → 176 MB, first run 198 → 146 ms, warm 133 → 121 ms.
The phase kernels are gathered in-graph from the stored 5×5 kernel (still the file's
tensor; onnxruntime folds the re-arrangement when a session starts, +20 ms), so nothing is
stored twice.  h_s keeps its ConvTranspose: its buffers are small at a tile's size, and
folding its larger kernels cost 50 ms and ~30 MB at session start.

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
from ..onnx_runtime import RESIDUAL, TRANSFORMS, graph_path
from ..shipped import shipped_files
from ..weights import load_weights

OPSET = 17
SHA_KEY = "weights_sha256"
MAX_EMBEDDED = 64 << 10  # bytes of non-file constants a graph may carry (shape constants: ~100 B)
# per transform: (input name, output name, channels of a dummy input ("M"/"N"/int), its side)
_IO = {"g_a": ("x", "y", 3, 64), "h_a": ("y", "z", "M", 8), "g_s": ("y", "x_hat", "M", 4),
       "h_s": ("z", "params", "N", 2), RESIDUAL: ("yms", "y", "3M", 4)}
_ONNX_DTYPE = {"F16": onnx.TensorProto.FLOAT16, "F32": onnx.TensorProto.FLOAT}
SUBPIXEL = ("g_s",)  # transforms whose transposed convolutions become sub-pixel convolutions
# ConvTranspose(5×5, stride 2, pads 2, output_padding 1): output row 2m + r sums input rows m + j − 1 (j = 0…2)
# times kernel row 4 + r − 2j, which is 5 (outside the kernel: zero) for r = 1, j = 0; so tap (jy, jx) of
# phase (ry, rx) of the equivalent 3×3 convolution is flat kernel tap ky·5 + kx, or 25, a zero appended.
_TAPS = np.array([[[[(4 + ry - 2 * jy) * 5 + 4 + rx - 2 * jx if 4 + ry - 2 * jy < 5 and 4 + rx - 2 * jx < 5 else 25
                     for jx in range(3)] for jy in range(3)] for rx in (0, 1)] for ry in (0, 1)], np.int64)


class _Stacked(torch.nn.Module):
    """The latent residual predictor with one input, (ŷ', μ, σ) stacked on channels: the graphs'
    single-input convention.  Its parameters keep their names, so they refer into the weights file."""

    def __init__(self, residual: torch.nn.Module):
        super().__init__()
        self.inp, self.mix, self.out, self.act, self.forward_three = (residual.inp, residual.mix, residual.out,
                                                                       residual.act, residual.forward)

    def forward(self, yms: torch.Tensor) -> torch.Tensor:
        return self.forward_three(*yms.chunk(3, 1))


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
    if isinstance(channels, str):
        channels = int(channels[:-1] or 1) * getattr(config, channels[-1])
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
    return _embedded(graph)


def _embedded(graph: onnx.GraphProto) -> int:
    """Bytes of the constants a graph carries itself (not external references)."""
    embedded = sum(len(i.SerializeToString()) for i in graph.initializer if i.data_location != onnx.TensorProto.EXTERNAL)
    return embedded + sum(len(n.SerializeToString()) for n in graph.node if n.op_type == "Constant")


def subpixel_deconvs(model: onnx.ModelProto) -> int:
    """Rewrite each ConvTranspose(5×5, stride 2, pads 2, output_padding 1) of ``model`` whose kernel is an
    initializer (or a Cast of one) as Conv(3×3, pads 1) to 4·C_out channels + DepthToSpace(2, CRD): the
    same sums, in another order.  The kernel (C_in, C_out, 5, 5) is re-arranged in-graph, in its stored
    dtype (onnxruntime folds it at session start; fp16 halves the folding's buffers), then Cast to float:
    Reshape (C_in, C_out, 25) → Concat a zero → Gather the taps (C_in, C_out, 2, 2, 3, 3) → Transpose
    (C_out, 2, 2, C_in, 3, 3) → Reshape (4·C_out, C_in, 3, 3); the bias repeats 4 times.  Returns the count.
    """
    graph, TP, make = model.graph, onnx.TensorProto, onnx.helper.make_node
    inits = {i.name: i for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    uses: dict[str, int] = {}
    for n in graph.node:
        for v in n.input:
            uses[v] = uses.get(v, 0) + 1
    nodes, constants, dropped, count = [], {}, set(), 0
    for node in graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        w = node.input[1] if len(node.input) > 1 else ""
        cast = producer.get(w)
        src = cast.input[0] if cast is not None and cast.op_type == "Cast" and cast.input[0] in inits else w
        if (node.op_type != "ConvTranspose" or src not in inits or list(inits[src].dims[2:]) != [5, 5]
                or attrs.get("strides") != [2, 2] or attrs.get("pads") != [2, 2, 2, 2]
                or attrs.get("output_padding") != [1, 1] or attrs.get("dilations", [1, 1]) != [1, 1]
                or attrs.get("group", 1) != 1 or attrs.get("auto_pad", b"NOTSET") != b"NOTSET" or "output_shape" in attrs):
            nodes.append(node)
            continue
        if src != w and uses[w] == 1:
            dropped.add(w)  # the kernel's own Cast: the re-arranged kernel is cast instead
        cin, cout, dtype, p = *inits[src].dims[:2], inits[src].data_type, f"{node.name or node.output[0]}.subpixel"
        shapes = {"flat": [cin, cout, 25], "zeros": [cin, cout, 1], "kernel": [4 * cout, cin, 3, 3]}
        constants.update({f"{p}.{k}.shape": v for k, v in shapes.items()})
        kernel = f"{p}.kernel" if dtype == TP.FLOAT else f"{p}.kernel.stored"
        nodes += [make("Reshape", [src, f"{p}.flat.shape"], [f"{p}.flat"]),
                  make("ConstantOfShape", [f"{p}.zeros.shape"], [f"{p}.zeros"],
                       value=onnx.helper.make_tensor("value", dtype, [1], [0])),
                  make("Concat", [f"{p}.flat", f"{p}.zeros"], [f"{p}.padded"], axis=2),
                  make("Gather", [f"{p}.padded", "subpixel.taps"], [f"{p}.phases"], axis=2),
                  make("Transpose", [f"{p}.phases"], [f"{p}.transposed"], perm=[1, 2, 3, 0, 4, 5]),
                  make("Reshape", [f"{p}.transposed", f"{p}.kernel.shape"], [kernel])]
        if dtype != TP.FLOAT:
            nodes.append(make("Cast", [kernel], [f"{p}.kernel"], to=TP.FLOAT))
        inputs = [node.input[0], f"{p}.kernel"]
        if len(node.input) > 2 and node.input[2]:
            constants.update({f"{p}.bias.column.shape": [cout, 1], f"{p}.bias.repeat.shape": [cout, 4],
                              f"{p}.bias.flat.shape": [4 * cout]})
            nodes += [make("Reshape", [node.input[2], f"{p}.bias.column.shape"], [f"{p}.bias.column"]),
                      make("Expand", [f"{p}.bias.column", f"{p}.bias.repeat.shape"], [f"{p}.bias.repeat"]),
                      make("Reshape", [f"{p}.bias.repeat", f"{p}.bias.flat.shape"], [f"{p}.bias"])]
            inputs.append(f"{p}.bias")
        nodes += [make("Conv", inputs, [f"{p}.conv"], name=f"{p}.conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
                  make("DepthToSpace", [f"{p}.conv"], list(node.output), name=f"{p}.shuffle", blocksize=2, mode="CRD")]
        count += 1
    if count:
        del graph.node[:]
        graph.node.extend(n for n in nodes if not (n.op_type == "Cast" and n.output[0] in dropped))
        graph.initializer.append(numpy_helper.from_array(_TAPS, "subpixel.taps"))
        graph.initializer.extend(numpy_helper.from_array(np.array(v, np.int64), k) for k, v in constants.items())
    return count


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
    """Export g_a, h_a, g_s, h_s (and the residual predictor, if any; decode-only weights: no g_a, h_a)
    of ``weights_path`` (fp32, dynamic batch/height/width) → the written paths."""
    weights_path = Path(weights_path)
    frozen = load_weights(weights_path)
    digest = sha256_file(weights_path).hex()
    layout = safetensors_layout(weights_path)
    with safe_open(str(weights_path), framework="numpy") as f:
        keys = [k for k in f.keys() if k.split(".")[0] in TRANSFORMS + (RESIDUAL,)]  # noqa: SIM118  (not a dict)
        file_tensors = {k: f.get_tensor(k).astype(np.float32) for k in keys}
    written = []
    for transform in TRANSFORMS + ((RESIDUAL,) if frozen.config.residual else ()):
        module = _Stacked(frozen.residual) if transform == RESIDUAL else getattr(frozen, transform)
        if module is None:  # decode-only weights (codec.training.retire): no analysis transforms
            continue
        model = _export(module.float().eval(), transform, frozen.config)
        onnx.checker.check_model(model)
        embedded = _externalise(model, transform, file_tensors, layout, weights_path.name)
        if transform in SUBPIXEL:
            subpixel_deconvs(model)
            embedded = _embedded(model.graph)
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
    paths = [Path(a) for a in args] or [path for _, path in sorted(shipped_files().items())]
    for path in paths:
        export_graphs(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
