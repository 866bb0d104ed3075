"""Bitstreams decode identically anywhere: the exact (integer) probability path."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import codec
from codec import container
from codec.exact import ACT_BITS, H_S_LAYERS, ExactHyperSynthesis


class Noisy(nn.Module):
    """A module whose output carries the tiny relative error another device or BLAS would add."""

    def __init__(self, inner: nn.Module, relative: float = 1e-5, seed: int = 0):
        super().__init__()
        self.inner, self.relative = inner, relative
        self.gen = torch.Generator().manual_seed(seed)

    def forward(self, x):
        out = self.inner(x)
        noise = torch.randn(out.shape, generator=self.gen).to(out.device, out.dtype)
        return out * (1 + self.relative * noise)


@pytest.fixture(scope="module")
def photo(sample_image):
    return np.asarray(sample_image.crop((0, 0, 256, 192)))


HYPERPRIOR = codec.shipped.WEIGHTS_DIR / "lic-ms-n64r2m192.safetensors"  # the float profile needs it


def _noisy(transform: nn.Sequential) -> nn.Sequential:
    """``transform`` with Noisy's error on its output, still a Sequential of layers (the torch
    backend runs g_s's last layer apart from the others in bf16)."""
    return nn.Sequential(*transform[:-1], Noisy(transform[-1]))


def _perturbed_codec(profile: str) -> codec.Codec:
    c = codec.Codec(HYPERPRIOR if profile == "float" else None, profile=profile, backend="torch")
    for name in ("g_a", "g_s", "h_a", "h_s"):
        setattr(c.model, name, _noisy(getattr(c.model, name)))
    return c


def test_new_files_use_the_exact_profile_and_old_ones_still_decode(lic, photo):
    data = lic.encode(photo, 40)
    assert codec.read_header(data).profile == "int"
    old = codec.Codec(HYPERPRIOR, profile="float").encode(photo, 40)  # decoded by the default codec too
    assert codec.read_header(old).profile == "float"
    assert codec.psnr(photo, lic.decode(old)) == pytest.approx(codec.psnr(photo, lic.decode(data)), abs=0.2)
    with pytest.raises(codec.CodecError, match="profile"):
        codec.Codec(profile="fixed")


def test_device_noise_in_every_float_part_leaves_decoded_latents_exact(lic, photo):
    data = lic.encode(photo, 40, tile=128)
    reference = lic.entropy_decode(data).digest()
    noisy = _perturbed_codec("int")
    assert noisy.entropy_decode(data).digest() == reference
    assert codec.psnr(np.asarray(lic.decode(data)), noisy.decode(data)) > 40  # pixels may move a little
    # a file encoded by the noisy codec is just as decodable by the clean one
    other = noisy.encode(photo, 40, tile=128)
    assert lic.entropy_decode(other).digest() == noisy.entropy_decode(other).digest()


def test_the_same_noise_breaks_the_float_profile(photo):
    """Why the exact path exists: float h_s with device noise picks other tables."""
    clean = codec.Codec(HYPERPRIOR, profile="float")
    data = clean.encode(photo, 40)
    noisy = _perturbed_codec("float")
    noisy.model.h_s.relative = 1e-3
    try:
        broken = noisy.entropy_decode(data).digest() != clean.entropy_decode(data).digest()
    except codec.CorruptFileError:
        broken = True
    assert broken


@pytest.mark.parametrize("encode_threads, decode_threads", [(1, 2), (2, 1)])
def test_thread_count_does_not_change_latents(lic, photo, encode_threads, decode_threads):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(encode_threads)
        data = lic.encode(photo, 60)
        encoded = lic.to_latents(photo, 60).digest()
        torch.set_num_threads(decode_threads)
        assert lic.entropy_decode(data).digest() == encoded
    finally:
        torch.set_num_threads(before)


def test_scale_thresholds_are_the_grid_in_fixed_point():
    from codec.entropy import scale_grid
    from codec.exact import SCALE_THRESHOLDS

    assert len(SCALE_THRESHOLDS) == 64 and list(SCALE_THRESHOLDS) == sorted(set(SCALE_THRESHOLDS))
    assert np.abs(np.array(SCALE_THRESHOLDS) - scale_grid() * 2**ACT_BITS).max() < 1


def test_exact_path_is_integer_valued_and_guards_its_range(lic, photo):
    lat = lic.to_latents(photo, 50)
    z = lat.tiles[0].z
    mean, index = lic.paths["int"].network(z)
    scaled = mean.astype(np.float64) * 2**ACT_BITS
    assert np.array_equal(scaled, scaled.round())  # fixed point, no float residue
    assert index.dtype == np.uint8 and int(index.max()) <= 63  # 64 tables: a byte each
    extreme = np.full_like(z, 2**31 - 1)  # hostile symbols are clamped, never overflow
    assert np.isfinite(lic.paths["int"].network(extreme)[0]).all()
    huge = {k: np.ones_like(v) * (1e6 if k == "h_s.4.weight" else 1) for k, v in lic.weights.arrays.items()}
    with pytest.raises(ValueError, match="2\\^53"):
        ExactHyperSynthesis(huge)


def test_the_exact_layers_are_the_modules_of_h_s(torch_lic):
    """H_S_LAYERS, the integer network's layout, is the nn h_s's: kinds, strides, paddings."""
    lic = torch_lic
    layers = [m for m in lic.model.h_s]
    assert len(layers) == len(H_S_LAYERS)
    for module, (kind, *spec) in zip(layers, H_S_LAYERS):
        if kind == "leaky":
            assert isinstance(module, nn.LeakyReLU) and module.negative_slope == 0.01
            continue
        key, stride, padding, output_padding = spec
        assert isinstance(module, nn.ConvTranspose2d if kind == "deconv" else nn.Conv2d)
        assert lic.model.get_submodule(key) is module
        assert module.stride == (stride, stride) and module.padding == (padding, padding)
        assert getattr(module, "output_padding", (0, 0)) == (output_padding, output_padding)


@pytest.mark.parametrize("chunk", [1 << 22, 64])
def test_numpy_convolutions_are_torch_s(monkeypatch, chunk):
    """The exact path's convolutions (numpy, float64) give torch's float64 results on integers,
    whether they run in one matrix product or in bands of rows (``chunk``: bounded memory)."""
    import torch.nn.functional as F
    from codec import exact

    monkeypatch.setattr(exact, "CHUNK", chunk)
    rng = np.random.default_rng(0)
    a = rng.integers(-2**20, 2**20, (6, 7, 9)).astype(np.float64)
    for k, stride, padding in ((3, 1, 1), (5, 2, 2), (1, 1, 0)):
        w = rng.integers(-2**14, 2**14, (4, 6, k, k)).astype(np.float64)
        b = rng.integers(-2**24, 2**24, 4).astype(np.float64)
        ref = F.conv2d(torch.from_numpy(a)[None], torch.from_numpy(w), torch.from_numpy(b), stride, padding)[0]
        assert np.array_equal(exact.conv2d(a, w, b, stride, padding), ref.numpy())
    w = rng.integers(-2**14, 2**14, (6, 4, 5, 5)).astype(np.float64)
    b = rng.integers(-2**24, 2**24, 4).astype(np.float64)
    ref = F.conv_transpose2d(torch.from_numpy(a)[None], torch.from_numpy(w), torch.from_numpy(b), 2, 2, 1)[0]
    assert np.array_equal(exact.conv_transpose2d(a, w, b, 2, 2, 1), ref.numpy())


def test_verify_checks_the_round_trip(lic, photo, monkeypatch):
    data = lic.encode(photo, 30, verify=True, target_size=3000)
    assert len(data) <= 3000
    original = lic.entropy_encode

    def corrupting(lat):  # an encoder bug: one y symbol changes after the latents were hashed
        lat.tiles[0].y.flat[0] += 1
        return original(lat)

    monkeypatch.setattr(lic, "entropy_encode", corrupting)
    with pytest.raises(codec.CodecError, match="verification failed"):
        lic.encode(photo, 30, verify=True)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_encode_cpu_decode_identical_latents(lic, photo):
    gpu = codec.Codec(device="cuda")
    for tile in (None, 128):
        data = gpu.encode(photo, 50, tile=tile, verify=True)
        assert lic.entropy_decode(data).digest() == gpu.entropy_decode(data).digest()
        assert lic.entropy_decode(data).digest() == gpu.to_latents(photo, 50, tile=tile).digest()
        assert codec.psnr(np.asarray(lic.decode(data)), gpu.decode(data)) > 40
    assert container.unpack(data).header.profile == "int"
