"""A model's widths and rate range (the weights file's ``config``): plain data, no torch.

Kept apart from :mod:`codec.transforms` (the nn modules) because every runtime needs
it — the torch one, and the light one that decodes without torch (:mod:`codec.onnx_runtime`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ModelConfig:
    """Widths and rate range of a model; stored in the weights file."""

    N: int = 64  # channels of the hidden layers at 1/2 and 1/4 scale, and of z
    M: int = 128  # channels of the latent y
    deep: int = 0  # channels of the 1/8-scale hidden layer of g_a and g_s; 0: N (format 1.0 weights)
    res_blocks: int = 0  # residual blocks in g_a and g_s, at the deepest hidden scales first (0–3)
    analysis_blocks: int = 0  # g_a's residual blocks where it has more than g_s (0: res_blocks, as g_s)
    lambdas: tuple[float, ...] = (
        0.00045, 0.0009, 0.0018, 0.0035, 0.0067, 0.013, 0.025, 0.0483, 0.0932, 0.18, 0.36)
    groups: tuple[int, ...] = ()  # channels per context group of y (codec.context); () none
    residual: int = 0  # hidden channels of the latent residual predictor (codec.context.LatentResidual); 0 none

    def __post_init__(self):
        if self.groups and (sum(self.groups) != self.M or min(self.groups) < 1):
            raise ValueError(f"context groups {self.groups} must be positive and sum to M = {self.M}")
        if self.analysis_blocks and not self.res_blocks < self.analysis_blocks <= len(_BLOCK_SCALES):
            raise ValueError(f"analysis_blocks must exceed res_blocks = {self.res_blocks} and be at most "
                             f"{len(_BLOCK_SCALES)} (or 0: as g_s), got {self.analysis_blocks}")
        if self.residual < 0:
            raise ValueError(f"the residual predictor's width must be positive (or 0: none), got {self.residual}")

    @property
    def deep_channels(self) -> int:
        """Width at 1/8 scale, where a layer of N channels carries 8×8×3 = 192 pixel values.

        Widening only there (and M) adds capacity where the channels-per-value ratio is
        tightest, at a fraction of the cost of widening the 1/2- and 1/4-scale layers.
        """
        return self.deep or self.N

    @property
    def encoder_blocks(self) -> int:
        """Residual blocks in g_a.  More there than in g_s (``analysis_blocks``) is capacity that only
        the encoder pays for: decoding, and the files, stay as they are."""
        return self.analysis_blocks or self.res_blocks

    @property
    def levels(self) -> int:
        return len(self.lambdas)

    @property
    def halos(self) -> tuple[int, int]:
        """(analysis halo in pixels, synthesis halo in latents) that tiles need to show no seams.

        Four 5×5 stride-2 layers: a latent sees ±30 px, a pixel ±2 latents.  A residual
        block (two 3×3 convolutions) at scale 1/s adds ±2·s px to the reach of its transform
        (g_a's blocks to the analysis halo, g_s's to the synthesis's); the latent residual
        predictor (two 3×3 convolutions on the latent) adds ±2 latents to the synthesis's.
        """
        extra_a, extra_s = _block_reach(self.encoder_blocks), _block_reach(self.res_blocks)
        analysis_halo = -(-(30 + extra_a) // 16) * 16  # whole latents keep the stride phase
        return analysis_halo, 2 + -(-extra_s // 16) + (2 if self.residual else 0)

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("deep", "res_blocks", "analysis_blocks", "groups", "residual"):  # files written before these fields stay byte-identical
            if not d[key]:
                del d[key]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return cls(N=int(d["N"]), M=int(d["M"]), deep=int(d.get("deep", 0)),
                   res_blocks=int(d.get("res_blocks", 0)), analysis_blocks=int(d.get("analysis_blocks", 0)),
                   lambdas=tuple(float(v) for v in d["lambdas"]),
                   groups=tuple(int(g) for g in d.get("groups", ())), residual=int(d.get("residual", 0)))


_BLOCK_SCALES = (8, 4, 2)  # where residual blocks go, deepest first (1/8, 1/4, 1/2 of the image side)


def _block_reach(blocks: int) -> int:
    """Pixels that the first ``blocks`` residual blocks add to a transform's reach (±2·s at scale 1/s)."""
    return sum(2 * s for s in _BLOCK_SCALES[:blocks])
