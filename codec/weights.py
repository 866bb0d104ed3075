"""The frozen model and its weights file (safetensors, fp16 transforms + integer tables).

A :class:`FrozenModel` is the *codec* state: transforms without the training
entropy models, plus the frozen probability tables.  It is made once from a
trained :class:`~codec.training.model.LicModel` by
:func:`codec.training.freeze.freeze` (training wing), written with
:func:`save_weights`, and read back by :func:`load_weights`, which checks the
file's SHA-256 against the manifest shipped beside it.  Nothing here imports
compressai: the runtime's GDNs are :class:`~codec.transforms.FrozenGDN`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .container import sha256_file
from .context import ChannelContext
from .entropy import TableSet
from .errors import WeightsError
from .shipped import DEFAULT_WEIGHTS, MANIFEST, WEIGHTS_DIR, manifest_hash  # noqa: F401  (MANIFEST: export's)
from .transforms import (
    FrozenGDN, GainUnits, ModelConfig, analysis, hyper_analysis, hyper_synthesis, synthesis,
)

FORMAT_TAG = "lic-weights-1"
TRANSFORM_KEYS = ("g_a", "g_s", "h_a", "h_s", "gains", "context")  # what a frozen model keeps of a trained one


class FrozenModel(nn.Module):
    """Transforms + medians + frozen tables: what encode and decode need, nothing to train."""

    def __init__(self, config: ModelConfig, name: str, z_tables: TableSet, y_tables: TableSet,
                 z_medians: np.ndarray):
        super().__init__()
        self.config, self.name = config, name
        N, M = config.N, config.M
        D = config.deep_channels  # no compressai at run time: FrozenGDN
        R = config.res_blocks
        self.g_a, self.g_s = analysis(N, M, FrozenGDN, D, R), synthesis(N, M, FrozenGDN, D, R)
        self.h_a, self.h_s = hyper_analysis(N, M), hyper_synthesis(N, M)
        self.gains = GainUnits(M, config.lambdas)
        self.context = ChannelContext(config.groups) if config.groups else None  # format 1.3's steps
        self.z_tables, self.y_tables = z_tables, y_tables
        self.register_buffer("z_medians", torch.as_tensor(np.asarray(z_medians, np.float32)))
        self.sha256 = b"\0" * 32  # set by load_weights: identifies the weights in file headers
        self.requires_grad_(False).eval()


def _flat(tables: TableSet) -> tuple[torch.Tensor, torch.Tensor]:
    rows = [tables.freqs[k, : 2 * int(r) + 2] for k, r in enumerate(tables.radius)]
    return torch.from_numpy(np.concatenate(rows)), torch.from_numpy(tables.radius.copy())


def _unflat(flat: torch.Tensor, radius: torch.Tensor) -> TableSet:
    flat_np, radius_np = flat.numpy().astype(np.int32), radius.numpy().astype(np.int32)
    lengths = 2 * radius_np.astype(np.int64) + 2
    if (radius_np < 0).any() or lengths.sum() != len(flat_np):
        raise WeightsError("weights file: probability tables are malformed")
    freqs = np.zeros((len(radius_np), int(lengths.max())), dtype=np.int32)
    for k, start in enumerate(np.concatenate([[0], np.cumsum(lengths)[:-1]])):
        freqs[k, : lengths[k]] = flat_np[start : start + lengths[k]]
    return TableSet(freqs, radius_np)


def save_weights(frozen: FrozenModel, path: str | os.PathLike, extra: dict | None = None) -> bytes:
    """Write fp16 transforms + tables atomically; returns the file's SHA-256.

    The same model always gives the same bytes (and so the same hash in file headers):
    safetensors writes its metadata in hash-map order, which changes from call to call,
    so the JSON header is rewritten with sorted keys before the file is written.
    """
    from safetensors.torch import save

    params = dict(frozen.named_parameters())  # learned weights go fp16; buffers (GDN bounds,
    tensors = {k: v.detach().to(torch.float16 if k in params else torch.float32).contiguous()
               for k, v in frozen.state_dict().items()}  # medians) stay fp32: they are tiny
    tensors["tables.z.freqs"], tensors["tables.z.radius"] = _flat(frozen.z_tables)
    tensors["tables.y.freqs"], tensors["tables.y.radius"] = _flat(frozen.y_tables)
    meta = {"format": FORMAT_TAG, "name": frozen.name, "config": json.dumps(frozen.config.to_dict()),
            "extra": json.dumps(extra or {})}
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(_canonical(save(tensors, metadata=meta)))
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return sha256_file(path)


def _canonical(blob: bytes) -> bytes:
    """A safetensors file with its JSON header in sorted-key form (offsets are relative to the
    data, so only the 8-byte length and the header change); padded with spaces to 8 bytes."""
    size = int.from_bytes(blob[:8], "little")
    header = json.dumps(json.loads(blob[8 : 8 + size]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header + blob[8 + size :]


def load_weights(path: str | os.PathLike | None = None, verify: bool = True) -> FrozenModel:
    """Read a weights file; for files listed in the manifest, the SHA-256 must match."""
    from safetensors import safe_open

    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    digest = sha256_file(path)
    expected = manifest_hash(path) if verify and path.parent == WEIGHTS_DIR else None
    if expected is not None and digest.hex() != expected:
        raise WeightsError(f"weights file {path.name} is corrupt (SHA-256 does not match the manifest)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        if meta.get("format") != FORMAT_TAG:
            raise WeightsError(f"{path.name} is not a lic weights file")
        config = ModelConfig.from_dict(json.loads(meta["config"]))
        z_tables = _unflat(tensors.pop("tables.z.freqs"), tensors.pop("tables.z.radius"))
        y_tables = _unflat(tensors.pop("tables.y.freqs"), tensors.pop("tables.y.radius"))
        frozen = FrozenModel(config, meta["name"], z_tables, y_tables, tensors["z_medians"].numpy())
        frozen.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=True)
    except WeightsError:
        raise
    except Exception as exc:  # safetensors/json/state-dict errors all mean a bad file
        raise WeightsError(f"weights file {path.name} is unreadable: {exc}") from None
    frozen.sha256 = digest
    return frozen


@dataclass(frozen=True)
class ModelInfo:
    name: str
    sha256: str
    config: ModelConfig
    parameters: int


def describe(frozen: FrozenModel) -> ModelInfo:
    return ModelInfo(frozen.name, frozen.sha256.hex(), frozen.config,
                     sum(p.numel() for p in frozen.parameters()))
