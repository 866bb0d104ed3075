"""The probability path: z symbols → the mean and table of every y symbol, walked step by step.

Why one type: the encoder, the decoder, the prior's sampler and scorer all need
the same answer to "which table codes this y element, and around which mean",
and a file decodes only if every one of them computes it identically.  The
profile (``float``: format 1.0's float32 h_s; ``int``: the exact integer h_s of
:mod:`codec.exact`) is chosen once, when a path is built, never per call.

A tile's y is coded in *steps*: each step is a set of y elements whose tables
are known once the steps before it are decoded.  Both directions walk the same
:meth:`ProbabilityPath.walk` and differ only in what they do at a step
(``visit``): the encoder rounds its latent there, the decoder reads symbols
from the stream, the sampler draws them.  The mean-scale hyperprior has one
step (every element's table follows from ẑ alone); a context model
(channel groups, checkerboard) adds steps behind this same interface::

    z_sym ─hyper─▶ (mean, index) of step 0 ─visit─▶ y_sym of step 0 ─▶ … ─▶ y_sym of the tile
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .container import CONTEXT_SINCE
from .errors import CodecError, CorruptFileError, WeightsError
from .exact import ACT_BITS, ExactHyperSynthesis, Weights
from .exact_context import ExactContext, anchor_mask, cross_neighbours, decoded_q
from .exact_matmul import Matmul, numpy_matmul


def z_groups(shape: tuple[int, ...]) -> np.ndarray:
    """The table of every z symbol of a (N, h, w) tile: its channel (the factorised prior)."""
    return np.broadcast_to(np.arange(shape[0], dtype=np.int32)[:, None, None], shape)


@dataclass(frozen=True)
class Elements:
    """The y elements one coding step codes: all of them (``channels`` None), or the channels
    ``channels`` at the ascending flat positions ``at`` of each, which selects without a mask
    the size of y (a context model's ten steps each read a tenth of it).  :meth:`select`'s order
    is channel, then row, then column; the coder takes a step's symbols table by table in that
    order (:func:`codec.coder.coding_plan`; docs/FORMAT.md, Decoding, step 4)."""

    channels: slice | None = None
    at: np.ndarray | None = None  # flat positions (row · w + column), ascending

    def select(self, a: np.ndarray) -> np.ndarray:
        """These elements of a (M, h, w) array in coding order (1-D), or ``a`` itself for all."""
        if self.channels is None:
            return a
        part = a[self.channels]
        return part.reshape(len(part), -1)[:, self.at].reshape(-1)

    def place(self, dst: np.ndarray, values: np.ndarray) -> None:
        """Write ``values`` (in :meth:`select`'s order and shape) to these elements of ``dst``
        (M, h, w), C-contiguous."""
        if self.channels is None:
            dst[...] = values
            return
        part = dst[self.channels]  # a view
        part.reshape(len(part), -1)[:, self.at] = np.reshape(values, (len(part), -1))


ALL = Elements()


@dataclass(frozen=True)
class CodingStep:
    """One step of a walk: its elements, and the mean and table index of every element of y
    (final for this step's elements and those of the steps before it)."""

    mean: np.ndarray  # (1, M, h, w) float32: the mean each symbol is coded around
    index: np.ndarray  # (M, h, w) table index of each element
    elements: Elements = ALL

    def select(self, a: np.ndarray) -> np.ndarray:
        return self.elements.select(a)

    def place(self, dst: np.ndarray, values: np.ndarray) -> None:
        self.elements.place(dst, values)


@dataclass(frozen=True)
class TileCode:
    """What the walk of one tile gives: y symbols and the mean and table index of each."""

    y: np.ndarray  # (M, h, w) int32
    mean: np.ndarray  # (1, M, h, w) float32
    index: np.ndarray  # (M, h, w)


Visit = Callable[[CodingStep], np.ndarray]  # a step → its symbols, int32, shaped as step.select(step.index)


class ProbabilityPath:
    """Base of the paths: ``hyper`` is what a profile changes; ``walk`` is shared.

    The steps' order is part of the format: the y stream holds the steps' symbols in the
    order of :meth:`steps`, the one description of it, which the walk, the coder's writer and
    (through the walk) its reader all follow.
    """

    profile: str

    def steps(self, shape: tuple[int, int, int]) -> list[Elements]:
        """The elements of a (M, h, w) y that each step codes, in coding order."""
        return [ALL]

    def hyper(self, z_sym: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """z symbols (N, h, w) → (mean (1, M, 4h, 4w) float32, table index (M, 4h, 4w))."""
        raise NotImplementedError

    def hyper_scales(self, z_sym: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """z symbols (N, h, w) → h_s's (mean, |scale|) (M, 4h, 4w) float32, as this path computes
        them: where an encoder's refinement (:mod:`codec.refine`) starts each step's walk from."""
        raise NotImplementedError

    def walk(self, z_sym: np.ndarray, visit: Visit) -> TileCode:
        """Every coding step of one tile in order, ``visit`` giving each step's symbols.

        Here every step's means and tables come from ẑ alone (the hyperprior); a context
        model recomputes them before each step from the symbols visited so far.
        """
        mean, index = self.hyper(z_sym)
        y = np.zeros(index.shape, dtype=np.int32)
        for elements in self.steps(index.shape):
            step = CodingStep(mean, index, elements)
            step.place(y, np.asarray(visit(step), dtype=np.int32))
        return TileCode(y, mean, index)


class FloatPath(ProbabilityPath):
    """Format 1.0's path: h_s in float32 (exact only on one machine); ``hyper_params(ẑ)`` is the
    runtime's float h_s: ẑ (N, h, w) → (mean, |scale|), each (M, 4h, 4w) float32."""

    profile = "float"

    def __init__(self, hyper_params: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]):
        self.hyper_params = hyper_params

    def hyper(self, z_sym: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from .entropy import scale_grid

        mean, scale = self.hyper_scales(z_sym)
        grid = scale_grid().astype(np.float32)  # the smallest grid σ ≥ scale (float32 compares)
        index = np.minimum(np.searchsorted(grid, scale, side="left"), len(grid) - 1)
        return mean[None], index

    def hyper_scales(self, z_sym: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.hyper_params(z_sym)


class ExactPath(ProbabilityPath):
    """The ``int`` profile: h_s as an integer network, identical on every machine (codec.exact)."""

    profile = "int"

    def __init__(self, weights: Weights, matmul=numpy_matmul):
        self.network = ExactHyperSynthesis(weights, matmul)

    def hyper(self, z_sym: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, index = self.network(z_sym)
        return mean[None], index

    def hyper_scales(self, z_sym: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The integer h_s's (mean_q, |scale_q|) / 2^A: a table's σ_q range is that of its grid σ."""
        mean_q, scale_q = self.network.integer(z_sym)
        return (mean_q / 2**ACT_BITS).astype(np.float32), (np.abs(scale_q) / 2**ACT_BITS).astype(np.float32)


class ContextPath(ExactPath):
    """The ``int`` profile of a model with a context model (format 1.3): exact h_s, then per channel
    group k two steps, k's anchors then k's other positions, each step's means and tables computed
    from the steps before it by the group's integer network (:mod:`codec.exact_context`)."""

    def __init__(self, weights: Weights, groups: tuple[int, ...], matmul=numpy_matmul):
        super().__init__(weights, matmul)
        self.context = ExactContext(weights, groups, matmul)

    def steps(self, shape: tuple[int, int, int]) -> list[Elements]:
        """Per group k: k's channels at the anchors ((row + column) even), then at the others."""
        anchor = anchor_mask(*shape[1:])
        halves = [np.flatnonzero(half) for half in (anchor, ~anchor)]  # flat positions, ascending
        return [Elements(slice(start, end), at) for start, end in self.context.bounds for at in halves]

    def walk(self, z_sym: np.ndarray, visit: Visit) -> TileCode:
        """The steps of :meth:`steps` in order, two per group; each step's means and tables from ẑ
        and the symbols visited before it (the encoder, decoder and sampler all come through here)."""
        hyper_mean, hyper_scale = self.network.integer(z_sym)
        np.abs(hyper_scale, out=hyper_scale)
        M, h, w = hyper_mean.shape
        anchor = anchor_mask(h, w)
        steps = self.steps((M, h, w))
        cross = cross_neighbours(h, w, steps[1].at)  # the non-anchors' positions, as every group's
        mean_q = np.zeros((M, h * w))
        mean = np.zeros((1, M, h, w), dtype=np.float32)  # mean_q / 2^A, kept up to date step by step
        index = np.zeros((M, h * w), dtype=np.uint8)  # 64 tables: a byte each (a large tile's y is millions)
        y = np.zeros((M, h, w), dtype=np.int32)
        decoded = []
        for k, (start, end) in enumerate(self.context.bounds):
            m_k, s_k = hyper_mean[start:end].reshape(end - start, -1), hyper_scale[start:end].reshape(end - start, -1)
            shared = self.context.nets[k].shared(np.concatenate(decoded) if decoded else None,
                                                 hyper_mean[start:end], hyper_scale[start:end])
            anchors_q = None
            for elements in steps[2 * k: 2 * k + 2]:  # k's anchors, then k's others
                at = elements.at
                mean_q[start:end, at], index[start:end, at] = self.context.params(k, shared, at, anchors_q, cross,
                                                                                   m_k, s_k)
                mean[0, start:end].reshape(end - start, -1)[:, at] = mean_q[start:end, at] / 2**ACT_BITS
                step = CodingStep(mean, index.reshape(M, h, w), elements)
                step.place(y, np.asarray(visit(step), dtype=np.int32))
                y_k = decoded_q(y[start:end], mean_q[start:end].reshape(-1, h, w))
                anchors_q = y_k * anchor  # pass 1 sees k's anchors; the others are still zero
            decoded.append(y_k)
        return TileCode(y, mean, index.reshape(M, h, w))


def path_for(paths: dict[str, ProbabilityPath], header) -> ProbabilityPath:
    """The path a file's header asks for; CorruptFileError if these weights cannot have written it."""
    path = paths.get(header.profile)
    if path is None or (isinstance(path, ContextPath) and header.version < CONTEXT_SINCE):
        raise CorruptFileError(f"a format {header.version[0]}.{header.version[1]} file with the {header.profile} "
                               "profile cannot hold a context model's streams (format 1.3, profile int)")
    return path


def probability_paths(weights, profile: str = "int", float_hyper: Callable | None = None,
                      threads: int | None = None, matmul=None) -> dict[str, ProbabilityPath]:
    """One path per determinism profile of ``weights`` (:class:`codec.frozen.FrozenWeights`), by name.

    A model with a context model (``groups``) has the ``int`` profile only: its steps exist only
    on integers.  Without, the ``float`` profile needs the runtime's float h_s (``float_hyper``).
    CodecError if ``profile`` (the one a Codec encodes with) is not among them.  ``matmul``: the
    exact path's products (default: :class:`codec.exact_matmul.Matmul` on ``threads`` threads;
    any engine gives the same integers).
    """
    matmul = matmul or Matmul(threads)
    try:
        if weights.config.groups:
            paths: dict[str, ProbabilityPath] = {"int": ContextPath(weights.arrays, weights.config.groups, matmul)}
        else:
            paths = {"int": ExactPath(weights.arrays, matmul)}
    except KeyError as exc:  # a weights file of another layout
        raise WeightsError(f"weights {weights.name} lack the tensor {exc}") from None
    if not weights.config.groups and float_hyper is not None:
        paths["float"] = FloatPath(float_hyper)
    if profile not in paths:
        raise CodecError(f"weights {weights.name} code only with the profile {', '.join(paths)}, not {profile}")
    return paths
