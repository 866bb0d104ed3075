"""The onnxruntime transforms (codec.onnx_runtime) against the torch modules they were exported from."""
from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

import codec

from .conftest import ROOT

pytest.importorskip("onnxruntime")

from codec.backends import installed
from codec.onnx_runtime import TRANSFORMS, OnnxGraphError, OnnxTransforms
from codec.shipped import ENCODER_TRANSFORMS, WEIGHTS_DIR, shipped_files

ENGINES = [OnnxTransforms]  # and OpenVINO's, which reads the same graphs, where installed
if installed("openvino"):
    from codec.openvino_runtime import OpenVinoTransforms

    ENGINES.append(OpenVinoTransforms)

FILES = shipped_files()  # the package's and lic-legacy's
SHIPPED = sorted(FILES, key=lambda n: n != "lic-default.safetensors")


@pytest.mark.parametrize("name", SHIPPED)
def test_matches_torch(name, sample_image):
    """Each graph agrees with its fp32 torch module on realistic inputs: a photo crop for g_a, its y'
    at a middle rate for h_a, the quantised ŷ for g_s and the quantised ẑ (medians added) for h_s
    (to 1e-3 of the output's magnitude)."""
    import torch

    from codec.weights import load_weights

    path = FILES[name]
    onnx_t, model = OnnxTransforms(path, threads=2), load_weights(path)
    encoder = model if model.g_a is not None else load_weights(FILES[SHIPPED[0]])  # decode-only: no g_a
    x = torch.from_numpy(np.asarray(sample_image.crop((100, 80, 292, 208)), np.float32) / 255).permute(2, 0, 1)[None]
    t = torch.tensor([5.0])
    medians = model.z_medians.view(1, -1, 1, 1)
    with torch.no_grad():
        y = encoder.g_a(x)
        y_gained = y * model.gains.gain(t)
        y_hat = torch.round(y_gained) * model.gains.inv_gain(t)
        z = encoder.h_a(y_gained)
        z_hat = torch.round(z - medians) + medians
        cases = [("g_a", x, y), ("h_a", y_gained, z)] if encoder is model else []
        cases += [("g_s", y_hat, model.g_s(y_hat)), ("h_s", z_hat, model.h_s(z_hat))]
    assert y.shape == (1, model.config.M, 8, 12) and z_hat.shape == (1, model.config.N, 2, 3)
    for transform, inp, ref in cases:
        out = getattr(onnx_t, transform)(inp.numpy())
        assert out.dtype == np.float32 and out.shape == ref.shape, transform
        scale = max(1.0, float(ref.abs().max()))
        diff = float(np.abs(out - ref.numpy()).max())
        assert diff < 1e-3 * scale, f"{name} {transform}: max abs diff {diff:.3g} (output scale {scale:.3g})"


def test_runtime_does_not_import_torch():
    """The decoder's transforms (h_s, g_s) run in a fresh interpreter without torch or safetensors,
    and make only their own sessions."""
    code = ("import sys, numpy as np\n"
            "from codec.onnx_runtime import OnnxTransforms\n"
            "o = OnnxTransforms(sys.argv[1], threads=1)\n"
            "p = o.h_s(np.zeros((1, 64, 2, 3), np.float32))\n"
            "assert p.shape == (1, 384, 8, 12), p.shape\n"
            "x = o.g_s(np.zeros((1, 192, 2, 3), np.float32))\n"
            "assert x.shape == (1, 3, 32, 48), x.shape\n"
            "assert sorted(o.sessions) == ['g_s', 'h_s'], sorted(o.sessions)\n"
            "print('torch' in sys.modules, 'safetensors' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code, str(FILES[SHIPPED[0]])], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False False"


def _copy_graphs(src_stem: str, dst_stem: str, folder):
    for transform in TRANSFORMS:
        shutil.copy(WEIGHTS_DIR / f"{src_stem}.{transform}.onnx", folder / f"{dst_stem}.{transform}.onnx")


@pytest.mark.parametrize("engine", ENGINES)
def test_refuses_graphs_of_other_weights(tmp_path, engine):
    """Same-shaped weights, other bytes: the graphs' recorded SHA-256 does not match, so they are refused
    (here the other file is larger, so every external reference still lies inside it)."""
    shutil.copy(WEIGHTS_DIR / "lic-default.safetensors", tmp_path / "lic-ms-n64r2m192.safetensors")
    _copy_graphs("lic-ms-n64r2m192", "lic-ms-n64r2m192", tmp_path)
    o = engine(tmp_path / "lic-ms-n64r2m192.safetensors")
    for transform in TRANSFORMS:
        with pytest.raises(OnnxGraphError, match="exported from weights 50c52d9893ff.*re-export"):
            o.session(transform)
    assert not o.sessions


@pytest.mark.parametrize("engine", ENGINES)
def test_refuses_graphs_reaching_past_the_weights(tmp_path, engine):
    """A smaller file of other weights: onnxruntime cannot read the references; still an OnnxGraphError."""
    shutil.copy(WEIGHTS_DIR / "lic-ms-n64r2m192.safetensors", tmp_path / "lic-default.safetensors")
    _copy_graphs("lic-default", "lic-default", tmp_path)
    o = engine(tmp_path / "lic-default.safetensors")
    with pytest.raises(OnnxGraphError, match=f"exported from weights {codec.weights_info()['sha256'][:12]}.*re-export"):
        o.g_a(np.zeros((1, 3, 16, 16), np.float32))
    with pytest.raises(OnnxGraphError, match="re-export"):
        o.h_s(np.zeros((1, 64, 1, 1), np.float32))


@pytest.mark.parametrize("engine", ENGINES)
def test_missing_graph(tmp_path, engine):
    shutil.copy(FILES[SHIPPED[0]], tmp_path / SHIPPED[0])
    _copy_graphs("lic-default", "lic-default", tmp_path)
    (tmp_path / "lic-default.h_a.onnx").unlink()
    o = engine(tmp_path / SHIPPED[0])
    assert o.g_s(np.zeros((1, 192, 1, 1), np.float32)).shape == (1, 3, 16, 16)  # the others still work
    with pytest.raises(OnnxGraphError, match="h_a graph not found"):
        o.h_a(np.zeros((1, 192, 4, 4), np.float32))


def test_graphs_hold_no_weights():
    """The weights ship once, in the safetensors file: each graph is operators and a few shape constants."""
    for name in SHIPPED:
        decode_only = codec.weights_info(FILES[name])["decode_only"]  # no g_a, h_a graphs
        for transform in (t for t in TRANSFORMS if not (decode_only and t in ENCODER_TRANSFORMS)):
            assert (FILES[name]).with_suffix(f".{transform}.onnx").stat().st_size < 32 << 10


def test_g_s_has_no_transposed_convolutions():
    """g_s's ConvTransposes are exported as sub-pixel convolutions (onnxruntime's ConvTranspose holds a
    C_out·25 × H·W column buffer: ~120 MB more peak memory on a Kodak image), their kernels still the file's."""
    onnx = pytest.importorskip("onnx")
    for name in SHIPPED:
        model = onnx.load(str(FILES[name].with_name(name.replace(".safetensors", ".g_s.onnx"))), load_external_data=False)
        ops = [n.op_type for n in model.graph.node]
        assert "ConvTranspose" not in ops and ops.count("DepthToSpace") == 4, name
        external = {i.name for i in model.graph.initializer if i.data_location == onnx.TensorProto.EXTERNAL}
        assert {f"g_s.{i}.weight" for i in (0, 2, 4, 6)} <= external, name


@pytest.mark.parametrize("stored", ["float16", "float32"])
@pytest.mark.parametrize("bias", [True, False])
def test_subpixel_rewrite_matches_conv_transpose(stored, bias):
    """The rewrite computes torch's ConvTranspose2d(5, stride 2, padding 2, output_padding 1) to rounding,
    from a kernel stored as fp16 (then Cast, as the exported graphs) or fp32."""
    onnx = pytest.importorskip("onnx")
    torch = pytest.importorskip("torch")
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from codec.training.export_onnx import subpixel_deconvs

    rng = np.random.default_rng(0)
    cin, cout = 6, 5
    w = rng.standard_normal((cin, cout, 5, 5)).astype(stored)
    b = rng.standard_normal(cout).astype(np.float32)
    x = rng.standard_normal((2, cin, 7, 4)).astype(np.float32)
    inits, nodes, kernel = [numpy_helper.from_array(w, "w")], [], "w"
    if stored == "float16":
        nodes.append(helper.make_node("Cast", ["w"], ["w.float"], to=TensorProto.FLOAT))
        kernel = "w.float"
    inputs = ["x", kernel]
    if bias:
        inits.append(numpy_helper.from_array(b, "b"))
        inputs.append("b")
    nodes.append(helper.make_node("ConvTranspose", inputs, ["out"], name="deconv", kernel_shape=[5, 5], strides=[2, 2],
                                  pads=[2, 2, 2, 2], output_padding=[1, 1]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, cin, None, None])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [None, cout, None, None])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert subpixel_deconvs(model) == 1
    onnx.checker.check_model(model, full_check=True)
    ops = [n.op_type for n in model.graph.node]
    assert "ConvTranspose" not in ops and ops.count("Cast") == (stored == "float16")
    out = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    ref = torch.nn.functional.conv_transpose2d(torch.from_numpy(x).double(), torch.from_numpy(w.astype(np.float64)),
                                               torch.from_numpy(b).double() if bias else None,
                                               stride=2, padding=2, output_padding=1).numpy()
    assert out.shape == ref.shape == (2, cout, 14, 8)
    assert np.abs(out - ref).max() < 1e-5 * np.abs(ref).max()
