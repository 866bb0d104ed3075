from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "boothbay.png"
KODAK = ROOT.parent / "shared" / "data" / "kodak"


@pytest.fixture(scope="session")
def lic():
    """The default Codec with fp32 synthesis: tests compare pixels between call patterns (a crop,
    a partial decode, tiles) that give the same pixels only in fp32; a bf16 g_s (the default where
    the CPU has it natively) may move one by a level where the windows differ.  bf16 has its own
    tests (test_codec.py, test_openvino_runtime.py)."""
    import codec

    return codec.Codec(bf16=False)


@pytest.fixture(scope="session")
def torch_lic():
    """The default weights on the torch backend, fp32 synthesis: for tests of the torch modules
    themselves (the default Codec runs onnxruntime where it is installed)."""
    import codec

    return codec.Codec(backend="torch", bf16=False)


@pytest.fixture(scope="session")
def hyperprior_lic():
    """A Codec of the hyperprior weights (no context model) that are still shipped for old files."""
    import codec

    return codec.Codec(codec.shipped.WEIGHTS_DIR / "lic-ms-n64r2m192.safetensors")


@pytest.fixture(scope="session")
def sample_image() -> Image.Image:
    return Image.open(SAMPLE).convert("RGB")


@pytest.fixture(scope="session")
def small_image(sample_image) -> Image.Image:
    """A 96×64 crop of the sample photo: fast to code."""
    return sample_image.crop((100, 80, 196, 144))


# -- the tiny training setup shared by the training-wing tests ---------------------------------
def train_args(tmp_path, steps: int) -> list[str]:
    """`lic train` arguments for a tiny model (N=8, M=12) on 64² crops of the sample photo."""
    return ["--data", str(tmp_path / "data"), "--cache", str(tmp_path / "cache.npy"),
            "--checkpoint", str(tmp_path / "ckpt.pt"), "--log-file", str(tmp_path / "log.jsonl"),
            "--N", "8", "--M", "12", "--patch", "64", "--batch", "2", "--steps", str(steps),
            "--log-every", "2", "--eval-dir", str(tmp_path / "none"), "--threads", "1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A folder with a tiny model trained 3 steps: data/, cache.npy, ckpt.pt (copy before changing)."""
    from codec.training.train import main as train_main

    tmp = tmp_path_factory.mktemp("trained")
    (tmp / "data").mkdir()
    shutil.copy(SAMPLE, tmp / "data" / "a.png")
    assert train_main(train_args(tmp, 3)) == 0
    return tmp


def copy_trained(trained, tmp_path) -> None:
    for name in ("data", "cache.npy", "ckpt.pt"):
        src = trained / name
        if src.is_dir():
            shutil.copytree(src, tmp_path / name, dirs_exist_ok=True)
        else:
            shutil.copy(src, tmp_path / name)


def model_from(state: dict, config: dict):
    """A LicModel of a checkpoint's ``config`` with ``state`` loaded, in eval mode."""
    from codec.training.model import LicModel
    from codec.transforms import ModelConfig

    model = LicModel(ModelConfig.from_dict(config))
    model.load_state_dict(state)
    return model.eval()


def outputs_before_and_after(before: dict, after: dict) -> list[tuple[dict, dict]]:
    """(old, new) forward outputs of the model and of the EMA of two checkpoints, same input."""
    import torch

    x = torch.rand(2, 3, 64, 128, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([1.5, 8.0])
    pairs = []
    for key in ("model", "ema"):
        old, new = model_from(before[key], before["config"]), model_from(after[key], after["config"])
        with torch.no_grad():
            pairs.append((old(x, t), new(x, t)))
    return pairs
