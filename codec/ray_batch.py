"""Collections on a Ray cluster: codec.batch's jobs as a Ray Dataset coded by actors.

Why Ray (Ray Data) rather than Dask or a hand-rolled scheduler: it is what ML teams already
run batch inference over files and GPUs with; an actor holds one loaded Codec for many files
(the weights load once per actor, not per file), ``num_gpus`` places actors on GPU nodes,
and the same code runs on a laptop (``ray.init()`` starts a local cluster) or a cluster
(``address="ray://…"`` or ``"auto"``).  The plan, the per-file work, the atomic writes and
the rows are codec.batch's, so a file coded here is byte-identical to ``lic encode`` of it::

    jobs (codec.batch.plan) ─ray.data.from_items─▶ map_batches(Coder actors × concurrency)
        ─▶ rows (codec.batch.Row), in the jobs' order

Outputs are written by the actors, so on a multi-machine cluster the output directory must
be storage every node sees (a shared or network file system).  Needs the ``ray`` extra:
``pip install "lic[ray]"``.
"""
from __future__ import annotations

import logging
import os
from dataclasses import asdict
from pathlib import Path

from .workers import Job, Row, code_file, failed_row, refused_row, start_worker
from .errors import CodecError, first_line


class _Coder:
    """A Ray actor: one Codec, then each batch of jobs coded by codec.batch's worker code; with
    ``keep_bytes`` the coded bytes go into the dataset (column ``data``) instead of files."""

    def __init__(self, codec_args: dict, kind: str, options: dict, threads: int, keep_bytes: bool = False):
        start_worker(codec_args, kind, options, threads)
        self.keep_bytes = keep_bytes

    def __call__(self, batch: dict) -> dict:
        jobs = [Job(Path(s), Path(o)) for s, o in zip(batch["source"], batch["output"])]
        if not self.keep_bytes:
            return {"index": batch["index"], "row": [asdict(code_file(j)) for j in jobs]}
        coded = [code_file(j, write=False) for j in jobs]
        return {"index": batch["index"], "row": [asdict(r) for r, _ in coded],
                "source": batch["source"], "data": [b"" if d is None else d for _, d in coded]}


def run_on_ray(jobs: list[Job], kind: str, options: dict | None = None, *, address: str | None = None,
               actors: int = 2, codec_args: dict | None = None, num_gpus: float = 0.0,
               parquet: str | os.PathLike | None = None) -> list[Row]:
    """Code ``jobs`` (codec.batch.plan) with ``actors`` Ray actors → one row per job, in order.

    ``address``: a running cluster (``"auto"``, ``"ray://host:10001"``); None starts a local
    one if none is running in this process.  ``num_gpus``: per actor (with ``device="cuda"``
    in ``codec_args``).  Jobs the plan refused come back as skipped / failed rows, as in
    :func:`codec.batch.run`.  ``parquet``: instead of one file per job, a Parquet dataset in
    that folder with a row per coded file (``source``, ``data``: the coded bytes; empty where
    it failed) — the form data pipelines read, written by Ray.
    """
    try:
        import ray
    except ImportError:
        raise CodecError('Ray is not installed: pip install "lic[ray]"') from None
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        except Exception as exc:  # noqa: BLE001  (no cluster at that address, ...: one line, named)
            raise CodecError(f"Ray cannot start or connect{f' to {address}' if address else ''}: "
                             f"{first_line(exc, type(exc).__name__)}") from None
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # the caller reports progress, not Ray
    ray.data.DataContext.get_current().enable_progress_bars = False
    rows: dict[int, Row] = {}
    for i, j in enumerate(jobs):
        if j.refused is not None:
            rows[i] = refused_row(j)
        elif not _utf8(j):  # Arrow's strings are UTF-8: such a name cannot go into the dataset
            rows[i] = failed_row(j, "a file name that is not UTF-8 cannot go through Ray (code it without --ray)")
    # absolute paths: an actor runs in its raylet's directory, not in the caller's
    todo = [{"index": i, "source": os.path.abspath(j.source), "output": os.path.abspath(j.output)}
            for i, j in enumerate(jobs) if i not in rows]
    if todo:
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        actors, threads = actor_shape(nodes, actors, num_gpus)
        blocks = min(len(todo), 8 * actors)  # enough blocks to keep every actor busy
        coded = ray.data.from_items(todo, override_num_blocks=blocks).map_batches(
            _Coder, fn_constructor_args=(codec_args or {}, kind, options or {}, threads, parquet is not None),
            batch_size=1, concurrency=actors, num_cpus=threads, num_gpus=num_gpus or None).materialize()
        for record in coded.select_columns(["index", "row"]).iter_rows():
            i = int(record["index"])  # the row names the files as the plan did, relative or not
            rows[i] = Row(**{**record["row"], "source": str(jobs[i].source), "output": str(jobs[i].output)})
        if parquet is not None:
            coded.select_columns(["source", "data"]).write_parquet(str(parquet))
    return [rows[i] for i in range(len(jobs))]


def actor_shape(nodes: list[dict], actors: int, num_gpus: float = 0.0) -> tuple[int, int]:
    """(actors, CPUs each) that the cluster can place: ``nodes`` are the live nodes' resources
    (``ray.nodes()``).  An actor lives on one node, so the CPUs each asks for are the most that
    still let all of them be packed onto the nodes (a cluster-wide share could fit no node, and
    Ray would wait for it for ever); with ``num_gpus`` per actor, only nodes with a GPU count,
    and there are no more actors than their GPUs hold."""
    slots = [(max(1, int(n.get("CPU", 0))), int(n.get("GPU", 0) // num_gpus) if num_gpus else actors)
             for n in nodes] or [(os.cpu_count() or 1, actors)]
    if num_gpus:
        slots = [(cpus, gpus) for cpus, gpus in slots if gpus >= 1]
        if not slots:
            raise CodecError("the Ray cluster has no GPU for --device cuda")

    def placed(each: int) -> int:  # actors of ``each`` CPUs the nodes hold
        return sum(min(cpus // each, room) for cpus, room in slots)

    actors = max(1, min(actors, placed(1)))
    return actors, max(t for t in range(1, max(c for c, _ in slots) + 1) if placed(t) >= actors)


def _utf8(job: Job) -> bool:
    try:
        (str(job.source) + str(job.output)).encode("utf-8")
        return True
    except UnicodeEncodeError:  # undecodable bytes of a name, kept by Python as lone surrogates
        return False
