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
from .context import ChannelContext, LatentResidual
from .entropy import TableSet
from .errors import WeightsError
from .frozen import (
    FORMAT_TAG, RESIDUAL_FORMAT_TAG, Z_LEVELS_FORMAT_TAG, FrozenWeights, check_z_sets, flat_tables, read_weights,
)
from .shipped import DEFAULT_WEIGHTS, MANIFEST  # noqa: F401  (export's)
from .transforms import (
    FrozenGDN, GainUnits, ModelConfig, analysis, hyper_analysis, hyper_synthesis, split_hyper_params, synthesis,
)

TRANSFORM_KEYS = ("g_a", "g_s", "h_a", "h_s", "gains", "context", "residual")  # what a frozen model keeps of a trained one


class FrozenModel(nn.Module):
    """Transforms + medians + frozen tables: what encode and decode need, nothing to train."""

    def __init__(self, config: ModelConfig, name: str, z_tables: TableSet, y_tables: TableSet,
                 z_medians: np.ndarray, z_levels: int = 1):
        super().__init__()
        self.config, self.name = config, name
        N, M = config.N, config.M
        D = config.deep_channels  # no compressai at run time: FrozenGDN
        self.g_a = analysis(N, M, FrozenGDN, D, config.encoder_blocks)
        self.g_s = synthesis(N, M, FrozenGDN, D, config.res_blocks)
        self.h_a, self.h_s = hyper_analysis(N, M), hyper_synthesis(N, M)
        self.gains = GainUnits(M, config.lambdas)
        self.context = ChannelContext(config.groups) if config.groups else None  # format 1.3's steps
        self.residual = LatentResidual(M, config.residual) if config.residual else None  # g_s's input
        self.z_tables, self.y_tables = z_tables, y_tables
        self.z_levels = z_levels  # z-table sets: 1, or one per rate level (rows level·N + channel)
        self.register_buffer("z_medians", torch.as_tensor(np.asarray(z_medians, np.float32)))
        self.sha256 = b"\0" * 32  # set by load_weights: identifies the weights in file headers
        self.requires_grad_(False).eval()

    def arrays(self) -> dict[str, np.ndarray]:
        """Every tensor as a host numpy array by weights-file key: what the exact path reads."""
        return {k: v.detach().cpu().numpy() for k, v in self.state_dict().items()}

    @classmethod
    def from_weights(cls, weights: FrozenWeights) -> FrozenModel:
        """The torch modules of a weights file read with :func:`codec.frozen.read_weights`."""
        frozen = cls(weights.config, weights.name, weights.z_tables, weights.y_tables, weights.z_medians,
                     weights.z_levels)
        if weights.decode_only:  # a former default without its analysis transforms (codec.training.retire)
            frozen.g_a = frozen.h_a = None
        try:
            frozen.load_state_dict({k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in weights.arrays.items()},
                                   strict=True)
        except RuntimeError as exc:
            name = weights.path.name if weights.path else weights.name
            raise WeightsError(f"weights file {name} is unreadable: {exc}") from None
        frozen.sha256 = weights.sha256
        return frozen

    def frozen_weights(self) -> FrozenWeights:
        """These modules as the runtime-neutral :class:`~codec.frozen.FrozenWeights`."""
        return FrozenWeights(self.name, self.config, self.z_tables, self.y_tables, self.arrays(), self.sha256,
                             z_levels=self.z_levels)

    @torch.inference_mode()
    def hyper_params(self, z_sym: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Format 1.0's float h_s on the model's device: ẑ symbols (N, h, w) → (mean, |scale|) float32."""
        z = torch.from_numpy(np.asarray(z_sym))[None].to(self.z_medians.device).float()
        mean, scale = split_hyper_params(self.h_s(z + self.z_medians.view(1, -1, 1, 1)))
        return mean[0].cpu().numpy(), scale[0].cpu().numpy()


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
    for prefix, tables in (("tables.z", frozen.z_tables), ("tables.y", frozen.y_tables)):
        tensors[f"{prefix}.freqs"], tensors[f"{prefix}.radius"] = map(torch.from_numpy, flat_tables(tables))
    check_z_sets(len(frozen.z_tables), frozen.z_levels, frozen.config)
    tag = Z_LEVELS_FORMAT_TAG if frozen.z_levels > 1 else RESIDUAL_FORMAT_TAG if frozen.config.residual else FORMAT_TAG
    meta = {"format": tag, "name": frozen.name, "config": json.dumps(frozen.config.to_dict()), "extra": json.dumps(extra or {})}
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
    """Read a weights file (:func:`codec.frozen.read_weights`) into a torch FrozenModel."""
    return FrozenModel.from_weights(read_weights(path, verify))


@dataclass(frozen=True)
class ModelInfo:
    name: str
    sha256: str
    config: ModelConfig
    parameters: int


def describe(frozen: FrozenModel) -> ModelInfo:
    return ModelInfo(frozen.name, frozen.sha256.hex(), frozen.config,
                     sum(p.numel() for p in frozen.parameters()))
