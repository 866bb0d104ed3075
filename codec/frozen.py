"""The frozen codec's weights as plain arrays: what every runtime reads, torch or not.

A weights file (safetensors) holds the transforms' tensors (learned parameters in fp16,
buffers in fp32), the integer probability tables, and the model's name and config.
:func:`read_weights` turns it into a :class:`FrozenWeights` with numpy only, checking a
shipped file's SHA-256 against the manifest, so that the light runtime
(:mod:`codec.onnx_runtime`) and the exact probability path (:mod:`codec.exact`) need no torch.
The torch runtime builds its :class:`~codec.weights.FrozenModel` from the same object.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import ModelConfig
from .container import sha256_file
from .entropy import TableSet
from .errors import WeightsError
from .shipped import CUT_FROM_KEY, DEFAULT_WEIGHTS, ENCODER_TRANSFORMS, manifest_hash, weights_dirs

FORMAT_TAG = "lic-weights-1"
# weights whose g_s input needs more than ŷ' (a latent residual predictor): a tag older readers refuse,
# since they would otherwise decode such files without it, silently wrong
RESIDUAL_FORMAT_TAG = "lic-weights-2"
ENCODER_PREFIXES = tuple(f"{t}." for t in ENCODER_TRANSFORMS)  # their tensors' keys
TABLE_KEYS = ("tables.z.freqs", "tables.z.radius", "tables.y.freqs", "tables.y.radius")


@dataclass
class FrozenWeights:
    """A weights file read: identity, config, tables, and every tensor by key (as stored)."""

    name: str
    config: ModelConfig
    z_tables: TableSet
    y_tables: TableSet
    arrays: dict[str, np.ndarray]  # "g_s.0.weight" → fp16 array, "z_medians" → fp32 …
    sha256: bytes = b"\0" * 32  # identifies the weights in file headers
    path: Path | None = None
    extra: dict = field(default_factory=dict)
    file_sha256: bytes | None = None  # the file's own digest where it differs from the id (decode-only files)

    @property
    def z_medians(self) -> np.ndarray:
        return np.asarray(self.arrays["z_medians"], np.float32)

    @property
    def decode_only(self) -> bool:
        """Whether the analysis transforms were cut away (:mod:`codec.training.retire`): a former default
        kept so that its files keep decoding, which encodes nothing."""
        return not any(k.startswith(ENCODER_PREFIXES) for k in self.arrays)  # read_weights: iff cut_from

    def check_encodes(self) -> None:
        """WeightsError, naming these weights, if they are decode-only."""
        if self.decode_only:
            raise WeightsError(f"weights {self.name} ({self.sha256.hex()[:12]}) are decode-only: they decode "
                               "the files they made, and encode nothing")

    @property
    def file_digest(self) -> bytes:
        """SHA-256 of the weights file's own bytes: what its ONNX graphs record (the id, unless decode-only)."""
        return self.file_sha256 or self.sha256


def unflat_tables(flat: np.ndarray, radius: np.ndarray) -> TableSet:
    """The weights file's flat table layout (rows of 2·radius + 2 entries, concatenated) → TableSet."""
    flat, radius = np.asarray(flat).astype(np.int32), np.asarray(radius).astype(np.int32)
    lengths = 2 * radius.astype(np.int64) + 2
    if (radius < 0).any() or lengths.sum() != len(flat):
        raise WeightsError("weights file: probability tables are malformed")
    freqs = np.zeros((len(radius), int(lengths.max())), dtype=np.int32)
    for k, start in enumerate(np.concatenate([[0], np.cumsum(lengths)[:-1]])):
        freqs[k, : lengths[k]] = flat[start : start + lengths[k]]
    return TableSet(freqs, radius)


def flat_tables(tables: TableSet) -> tuple[np.ndarray, np.ndarray]:
    """:func:`unflat_tables` reversed (what :func:`codec.weights.save_weights` writes)."""
    rows = [tables.freqs[k, : 2 * int(r) + 2] for k, r in enumerate(tables.radius)]
    return np.concatenate(rows), tables.radius.copy()


def read_weights(path: str | os.PathLike | None = None, verify: bool = True) -> FrozenWeights:
    """Read a weights file with numpy; for files listed in the manifest, the SHA-256 must match."""
    from safetensors import safe_open

    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    digest = sha256_file(path)
    shipped = path.resolve().parent in [d.resolve() for d in weights_dirs()]
    expected = manifest_hash(path.resolve()) if verify and shipped else None
    if expected is not None and digest.hex() != expected:
        raise WeightsError(f"weights file {path.name} is corrupt (SHA-256 does not match the manifest)")
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            arrays = {k: f.get_tensor(k) for k in f.keys()}
        if meta.get("format") not in (FORMAT_TAG, RESIDUAL_FORMAT_TAG):
            raise WeightsError(f"{path.name} is not a lic weights file")
        config = ModelConfig.from_dict(json.loads(meta["config"]))
        if config.residual and not any(k.startswith("residual.") for k in arrays):
            raise WeightsError(f"{path.name} names a latent residual predictor in its config but holds none")
        z_tables = unflat_tables(arrays.pop(TABLE_KEYS[0]), arrays.pop(TABLE_KEYS[1]))
        y_tables = unflat_tables(arrays.pop(TABLE_KEYS[2]), arrays.pop(TABLE_KEYS[3]))
        extra = json.loads(meta.get("extra", "{}"))
        weights_id = bytes.fromhex(meta.get(CUT_FROM_KEY, digest.hex()))
        if len(weights_id) != 32:
            raise WeightsError(f"{path.name}: its {CUT_FROM_KEY} is not a SHA-256")
        if "z_medians" not in arrays:
            raise WeightsError(f"{path.name} has no z medians")
    except WeightsError:
        raise
    except Exception as exc:  # safetensors/json errors all mean a bad file
        raise WeightsError(f"weights file {path.name} is unreadable: {exc}") from None
    weights = FrozenWeights(meta["name"], config, z_tables, y_tables, arrays, weights_id, path, extra, digest)
    if weights_id != digest and not weights.decode_only:  # decode-only: cut_from named, g_a and h_a gone
        raise WeightsError(f"{path.name} names weights it was cut from but still holds analysis transforms")
    if weights_id == digest and weights.decode_only:
        raise WeightsError(f"{path.name} has no analysis transforms and names no weights it was cut from")
    return weights
