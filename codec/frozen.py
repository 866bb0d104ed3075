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
from .container import quality_code, sha256_file
from .entropy import TableSet
from .errors import WeightsError
from .shipped import CUT_FROM_KEY, DEFAULT_WEIGHTS, ENCODER_TRANSFORMS, manifest_hash, weights_dirs

FORMAT_TAG = "lic-weights-1"
# weights whose g_s input needs more than ŷ' (a latent residual predictor): a tag older readers refuse,
# since they would otherwise decode such files without it, silently wrong
RESIDUAL_FORMAT_TAG = "lic-weights-2"
# weights whose z tables come one set per rate level (docs/FORMAT.md, step 2): older readers would code z
# with the first set at every quality, so they must refuse these (with or without a residual predictor)
Z_LEVELS_FORMAT_TAG = "lic-weights-3"
FORMAT_TAGS = (FORMAT_TAG, RESIDUAL_FORMAT_TAG, Z_LEVELS_FORMAT_TAG)
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
    z_levels: int = 1  # z-table sets: 1 (one for every quality), or config.levels (one per rate level)
    # the sets z_tables_at has cut, and the z_tables they were cut from (a copy or a replace starts again)
    _z_sets: tuple = field(default_factory=lambda: (None, {}), init=False, repr=False, compare=False)

    def __post_init__(self):
        check_z_sets(len(self.z_tables), self.z_levels, self.config)

    def z_tables_at(self, quality: float) -> TableSet:
        """The z tables a file of this ``quality`` codes with: the one set, or that of the nearest level."""
        if self.z_levels == 1:
            return self.z_tables
        of, sets = self._z_sets
        if of is not self.z_tables:  # built for other tables (replaced since, or a copy's): start again
            self._z_sets = of, sets = self.z_tables, {}
        k = z_table_level(quality, self.z_levels)
        if k not in sets:
            n = self.config.N
            sets[k] = TableSet(self.z_tables.freqs[k * n : (k + 1) * n], self.z_tables.radius[k * n : (k + 1) * n])
        return sets[k]

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


def check_z_sets(tables: int, z_levels: int, config: ModelConfig) -> None:
    """WeightsError unless there are ``z_levels`` sets of N z tables, one set or one per rate level."""
    if z_levels not in (1, config.levels) or tables != z_levels * config.N:
        raise WeightsError(f"{tables} z tables in {z_levels} set(s): expected {config.N} tables in one set, "
                           f"or in one set per level ({config.levels})")


def z_table_level(quality: float, levels: int) -> int:
    """The rate level nearest to ``quality`` as the header stores it (Q = quality × 100, an integer):
    (Q·(levels − 1) + 5000) // 10000, integers only, so encoder and decoder agree on every machine."""
    return (quality_code(quality) * (levels - 1) + 5000) // 10000


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
        if meta.get("format") not in FORMAT_TAGS:
            raise WeightsError(f"{path.name} is not a lic weights file")
        config = ModelConfig.from_dict(json.loads(meta["config"]))
        if config.residual and not any(k.startswith("residual.") for k in arrays):
            raise WeightsError(f"{path.name} names a latent residual predictor in its config but holds none")
        z_tables = unflat_tables(arrays.pop(TABLE_KEYS[0]), arrays.pop(TABLE_KEYS[1]))
        y_tables = unflat_tables(arrays.pop(TABLE_KEYS[2]), arrays.pop(TABLE_KEYS[3]))
        z_levels = config.levels if meta["format"] == Z_LEVELS_FORMAT_TAG else 1
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
    try:  # FrozenWeights checks the z-table sets against the tag's count
        weights = FrozenWeights(meta["name"], config, z_tables, y_tables, arrays, weights_id, path, extra, digest, z_levels)
    except WeightsError as exc:
        raise WeightsError(f"{path.name}: {exc}") from None
    if weights_id != digest and not weights.decode_only:  # decode-only: cut_from named, g_a and h_a gone
        raise WeightsError(f"{path.name} names weights it was cut from but still holds analysis transforms")
    if weights_id == digest and weights.decode_only:
        raise WeightsError(f"{path.name} has no analysis transforms and names no weights it was cut from")
    return weights
