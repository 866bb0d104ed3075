"""The OpenVINO transforms (codec.openvino_runtime) against onnxruntime's, on the same exported graphs."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import codec

pytest.importorskip("openvino")

from codec.backends import make_backend
from codec.frozen import read_weights
from codec.onnx_runtime import RESIDUAL, TRANSFORMS, OnnxTransforms
from codec.openvino_runtime import OpenVinoTransforms, native_bf16
from codec.shipped import WEIGHTS_DIR, shipped_files

FILES = shipped_files()  # the package's and lic-legacy's
SHIPPED = sorted(FILES, key=lambda n: n != "lic-default.safetensors")


def _inputs(sample_image, weights_path):
    """Realistic inputs of every transform, made by onnxruntime: a photo crop for g_a, its y' at a
    middle level for h_a, the rounded ŷ for g_s, ẑ with medians for h_s, (ŷ', μ, σ) for the residual."""
    ort_t, frozen = OnnxTransforms(weights_path, threads=2), read_weights(weights_path)
    encoder = OnnxTransforms(FILES[SHIPPED[0]], threads=2) if frozen.decode_only else ort_t  # no g_a
    backend = make_backend(frozen, "onnxruntime")
    x = np.asarray(sample_image.crop((100, 80, 292, 208)), np.float32).transpose(2, 0, 1)[None] / 255
    y = encoder.g_a(x) * backend.gain(5.0)[None, :, None, None]
    z = encoder.h_a(y)
    medians = frozen.z_medians[None, :, None, None]
    inputs = {} if frozen.decode_only else {"g_a": x, "h_a": y}
    inputs.update({"g_s": np.round(y) * backend.inv_gain(5.0)[None, :, None, None],
                   "h_s": (np.round(z - medians) + medians).astype(np.float32)})
    if frozen.config.residual:
        rng = np.random.default_rng(0)
        inputs[RESIDUAL] = np.concatenate([np.round(y), rng.normal(0, 1, y.shape), rng.uniform(0.1, 4, y.shape)],
                                          axis=1).astype(np.float32)
    return ort_t, inputs


@pytest.mark.parametrize("name", SHIPPED)
def test_fp32_matches_onnxruntime(name, sample_image):
    """Every graph of every shipped weights file: OpenVINO fp32 agrees with onnxruntime to 1e-3 of the
    output's magnitude."""
    ort_t, inputs = _inputs(sample_image, FILES[name])
    ov_t = OpenVinoTransforms(FILES[name], threads=2, bf16=False)
    for transform, x in inputs.items():
        ref, out = getattr(ort_t, transform)(x), getattr(ov_t, transform)(x)
        assert out.dtype == np.float32 and out.shape == ref.shape, transform
        scale = max(1.0, float(np.abs(ref).max()))
        assert np.abs(out - ref).max() < 1e-3 * scale, (name, transform, float(np.abs(out - ref).max()))
        if transform == "g_s":  # pixels in 0..1: within a thousandth of a level of 255
            assert np.abs(out - ref).max() < 4e-6, (name, float(np.abs(out - ref).max()))


@pytest.mark.parametrize("bf16", [False, True])
def test_outputs_are_not_overwritten_by_the_next_call(sample_image, bf16):
    """A request reuses its output buffer (and g_s in bf16 is a chain of two): a result must survive
    the next call."""
    _, inputs = _inputs(sample_image, FILES[SHIPPED[0]])
    ov_t = OpenVinoTransforms(FILES[SHIPPED[0]], threads=2, bf16=bf16)
    first = ov_t.g_s(inputs["g_s"])
    kept = first.copy()
    ov_t.g_s(np.zeros_like(inputs["g_s"]))
    assert np.array_equal(first, kept) and np.abs(first).max() > 0.1


def test_only_g_a_and_g_s_run_in_bf16(sample_image):
    """With bf16 on, g_a and g_s move a little (where the CPU has bf16) and every other transform is
    bit for bit the fp32 one: h_s chooses tables."""
    _, inputs = _inputs(sample_image, FILES[SHIPPED[0]])
    fp32 = OpenVinoTransforms(FILES[SHIPPED[0]], threads=2, bf16=False)
    bf16 = OpenVinoTransforms(FILES[SHIPPED[0]], threads=2, bf16=True)
    for transform, x in inputs.items():
        a, b = getattr(fp32, transform)(x), getattr(bf16, transform)(x)
        if transform not in ("g_a", "g_s"):
            assert np.array_equal(a, b), transform
        else:
            assert np.abs(a - b).max() < 0.05 * max(1.0, np.abs(a).max()), transform
            if native_bf16():  # bf16 really runs where the CPU has it (elsewhere OpenVINO may emulate it or not)
                assert not np.array_equal(a, b), transform


def test_files_cross_between_openvino_and_onnxruntime(small_image):
    """A file from either runtime decodes with the other to the same latents; fp32 pixels within ±1,
    bf16 pixels within 0.1 dB of PSNR."""
    ov, ov16 = codec.Codec(backend="openvino", bf16=False), codec.Codec(backend="openvino", bf16=True)
    ort = codec.Codec(backend="onnxruntime")
    for encoder in (ov, ov16, ort):
        for tile in (None, 64):
            data = encoder.encode(small_image, 55, tile=tile)
            assert ov.entropy_decode(data).digest() == ort.entropy_decode(data).digest()
            a, b = (np.asarray(c.decode(data), np.int16) for c in (ov, ort))
            assert np.abs(a - b).max() <= 1
            fast = ov16.decode(data)
            assert abs(codec.psnr(small_image, fast) - codec.psnr(small_image, ort.decode(data))) < 0.1


def test_the_default_backend_is_openvino_where_installed():
    lic = codec.Codec()
    assert lic.backend.name == "openvino" and lic.backend.bf16 == native_bf16()


def test_missing_graph_and_failures_are_codec_errors(tmp_path, small_image):
    shutil.copy(FILES[SHIPPED[0]], tmp_path / SHIPPED[0])
    for transform in TRANSFORMS + (RESIDUAL,):
        shutil.copy(WEIGHTS_DIR / f"lic-default.{transform}.onnx", tmp_path)
    (tmp_path / "lic-default.g_a.onnx").unlink()
    lic = codec.Codec(tmp_path / SHIPPED[0], backend="openvino")
    with pytest.raises(codec.CodecError, match="g_a graph not found"):
        lic.encode(small_image, 50)
    data = codec.Codec(backend="onnxruntime").encode(small_image, 50)
    assert lic.decode(data).size == small_image.size  # the decoder's graphs still work
    for bf16 in (False, True):  # a real OpenVINO failure: its reason, not its source locations
        backend = codec.Codec(backend="openvino", bf16=bf16).backend
        with pytest.raises(codec.CodecError, match=r"^openvino failed \(ParameterMismatch: .*192") as caught:
            backend.synthesis(np.zeros((1, 7, 4, 4), np.float32))
        assert "Exception from" not in str(caught.value) and "\n" not in str(caught.value)


def test_a_broken_openvino_falls_back_or_says_so(monkeypatch):
    """Installed but not starting (a missing library, a CPU plugin that fails): the default goes on
    with onnxruntime; asked for by name, one line says so."""
    import codec.openvino_runtime as ov_runtime

    def broken(*args, **kwargs):
        raise RuntimeError("Exception from src/inference/src/cpp/core.cpp:112:\nlibopenvino_intel_cpu_plugin.so: cannot open")

    monkeypatch.setattr(ov_runtime, "OpenVinoBackend", broken)
    assert codec.Codec().backend.name == "onnxruntime"
    with pytest.raises(codec.CodecError, match="^openvino does not start here"):
        codec.Codec(backend="openvino")


def test_a_missing_openvino_is_one_clear_line(monkeypatch):
    import codec.backends as backends

    monkeypatch.setattr(backends, "installed", lambda name: name != "openvino")
    with pytest.raises(codec.CodecError, match=r"openvino backend needs openvino: pip install 'lic\[openvino\]'"):
        codec.Codec(backend="openvino")
    assert codec.Codec().backend.name == "onnxruntime"


def test_a_tree_runs_on_the_backend_asked_for(tmp_path, small_image):
    """lic encode -r passes --backend to its workers (it did not: they took the default).  Weights
    without their graphs: onnxruntime, asked for, must fail each image; torch codes them."""
    pytest.importorskip("torch")
    from cli.main import main

    (tmp_path / "in").mkdir()
    small_image.save(tmp_path / "in" / "a.png")
    weights = tmp_path / "lic-default.safetensors"
    shutil.copy(WEIGHTS_DIR / "lic-default.safetensors", weights)
    tree = ["encode", "-r", str(tmp_path / "in"), "--weights", str(weights), "--jobs", "1", "--quiet", "-o"]
    assert main(tree + [str(tmp_path / "ort"), "--backend", "onnxruntime"]) != 0
    assert not (tmp_path / "ort" / "a.lic").exists()
    assert main(tree + [str(tmp_path / "torch"), "--backend", "torch"]) == 0
    assert (tmp_path / "torch" / "a.lic").is_file()


def test_g_s_cut_at_its_last_convolution_computes_the_same(sample_image):
    """The two parts of g_s, both in fp32, give the whole graph's output; in bf16 the body with an
    fp32 tail is closer to fp32 than g_s all in bf16 (the pixels' own rounding is the larger error)."""
    import openvino as ov

    from codec.onnx_runtime import graph_path
    from codec.openvino_runtime import _core, split_last_convolution

    _, inputs = _inputs(sample_image, FILES[SHIPPED[0]])
    y = inputs["g_s"]
    path = str(graph_path(FILES[SHIPPED[0]], "g_s"))

    def compiled(model, precision):
        return _core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": precision}).create_infer_request()

    whole = compiled(_core().read_model(path), "f32").infer([y])[0].copy()
    body, tail = split_last_convolution(_core().read_model(path))
    assert isinstance(body, ov.Model) and len(tail.inputs) == 2
    assert [op.get_type_name() for op in tail.get_ordered_ops()].count("Convolution") == 1
    hidden = compiled(body, "f32").infer([y])[0].copy()
    assert hidden.shape[1] == 64 and hidden.shape[2:] == (y.shape[2] * 8, y.shape[3] * 8)
    assert np.allclose(compiled(tail, "f32").infer([hidden, y])[0], whole, atol=1e-5)
    if native_bf16():
        all_bf16 = compiled(_core().read_model(path), "bf16").infer([y])[0]
        mixed = OpenVinoTransforms(FILES[SHIPPED[0]], bf16=True).g_s(y)
        assert np.mean((mixed - whole) ** 2) < 0.75 * np.mean((all_bf16 - whole) ** 2)  # measured: 0.57


def test_threads_share_a_bf16_codec(small_image):
    """Each thread runs its own requests of the two-part g_s: concurrent decodes equal serial ones."""
    import threading

    lic = codec.Codec(backend="openvino", bf16=True)
    files = [lic.encode(small_image.rotate(angle), q) for angle, q in ((0, 20), (90, 50), (180, 80))]
    serial = [np.asarray(lic.decode(d)) for d in files]
    results = {}

    def work(i):
        for _ in range(3):
            results[i] = np.asarray(lic.decode(files[i]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(results[i], serial[i]) for i in range(3))


def test_a_tree_refuses_a_missing_backend_in_one_line(tmp_path, small_image, monkeypatch, capsys):
    """-r checks the backend before starting workers: one line, not a traceback per worker."""
    import codec.backends as backends
    from cli.main import main

    (tmp_path / "in").mkdir()
    small_image.save(tmp_path / "in" / "a.png")
    monkeypatch.setattr(backends, "installed", lambda name: name != "openvino")
    code = main(["encode", "-r", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--backend", "openvino", "-j", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "lic[openvino]" in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "out").exists()
