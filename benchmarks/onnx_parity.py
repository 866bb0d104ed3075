"""g_a and g_s in torch (fp32 channels_last, as codec.tiled runs them; bf16 autocast) and in onnxruntime.

    python -m benchmarks.onnx_parity [IMAGE] [--weights W.safetensors] [--rounds 5] [--threads 2]
                                     [--no-pause]

Why: the onnxruntime transforms (codec.onnx_runtime) are meant to replace torch at run time,
so they must give the same outputs and not cost speed.  All engines run in one process,
rounds interleaved (the shared VM's speed drifts), on one whole image (default: the first
Kodak file, sorted), with the same thread count (torch.set_num_threads and onnxruntime's
intra-op threads), after WARMUP untimed calls each (oneDNN and onnxruntime pick kernels and
plan memory then) and with SETTLE idle seconds before each timed call.
Torch runs as it does in the codec: inference_mode, fp32 weights and input channels_last;
"torch NCHW" (plain layout) and "torch bf16" (g_s under torch.autocast("cpu", bfloat16))
are the alternatives.  Start-up costs: import times of torch and onnxruntime in fresh
interpreters, onnxruntime session creation (all four graphs, and g_s alone, weights hash
included) in this one, and a fresh decoder-like process (import, h_s + g_s sessions, one
run each on the image's sizes), all medians of 3+.  A training process (``codec.training.train``) competes
for the cores: it is paused (SIGSTOP) while timing and always resumed (SIGCONT), at the
latest after MAX_PAUSE seconds by a watchdog.
"""
from __future__ import annotations

import argparse
import copy
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from codec.onnx_runtime import TRANSFORMS, OnnxTransforms
from codec.shipped import DEFAULT_WEIGHTS
from codec.weights import load_weights

ROOT = Path(__file__).resolve().parent.parent
KODAK = ROOT.parent / "shared" / "data" / "kodak"
MAX_PAUSE = 110.0  # seconds the training process may stay stopped
LEVEL = 5.0  # rate level of the quantised ŷ fed to g_s (middle of the range)
WARMUP = 2  # untimed calls per engine and transform: onnxruntime's second call is still ~25 % slow
SETTLE = 0.1  # seconds of idle before each timed call: both thread pools spin-wait after a call,
# which would slow the other engine's next call (rounds interleave the engines)


def _training_pids() -> list[int]:
    out = subprocess.run(["pgrep", "-f", "codec.training.train"], capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split() if int(p) != os.getpid()]


@contextmanager
def paused_training(enabled: bool = True):
    """SIGSTOP the training process(es) for the block; SIGCONT on exit, on a signal, or after MAX_PAUSE."""
    pids = _training_pids() if enabled else []

    def resume():
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    watchdog = threading.Timer(MAX_PAUSE, resume)
    old_term = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that finally runs
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        watchdog.start()
        yield pids
    finally:
        watchdog.cancel()
        resume()
        signal.signal(signal.SIGTERM, old_term)


def _fresh_seconds(code: str, *args: str, repeats: int = 3) -> list[float]:
    """Median over ``repeats`` fresh interpreters of the seconds ``code`` prints (space-separated)."""
    runs = [[float(v) for v in subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                                              check=True, cwd=ROOT).stdout.split()] for _ in range(repeats)]
    return [statistics.median(col) for col in zip(*runs)]


def _import_time(module: str) -> float:
    return _fresh_seconds(f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)")[0]


_DECODER = """import sys, time
t0 = time.perf_counter()
import numpy as np
from codec.onnx_runtime import OnnxTransforms
t1 = time.perf_counter()
o = OnnxTransforms(sys.argv[1], threads=int(sys.argv[2]))
o.session("h_s"), o.session("g_s")
t2 = time.perf_counter()
h, w = int(sys.argv[3]), int(sys.argv[4])
o.h_s(np.zeros((1, 64, h // 64, w // 64), np.float32)), o.g_s(np.zeros((1, 192, h // 16, w // 16), np.float32))
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2, t3)
"""


def _median_ms(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", nargs="?")
    parser.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-pause", action="store_true", help="leave the training process running")
    args = parser.parse_args(argv)

    path = Path(args.image) if args.image else min(KODAK.glob("*.png"))
    image = Image.open(path).convert("RGB")
    w, h = image.width // 16 * 16, image.height // 16 * 16
    pixels = np.asarray(image.crop((0, 0, w, h)), np.float32).transpose(2, 0, 1)[None] / 255

    torch.set_num_threads(args.threads)
    model = load_weights(args.weights).float()
    ort_t = OnnxTransforms(args.weights, threads=args.threads)
    x = torch.from_numpy(np.ascontiguousarray(pixels))
    level = torch.tensor([LEVEL])
    with torch.inference_mode():
        y_hat = torch.round(model.g_a(x) * model.gains.gain(level)) * model.gains.inv_gain(level)
    nchw = {"g_a": x, "g_s": y_hat}
    model_cl = copy.deepcopy(model)
    for name in nchw:
        getattr(model_cl, name).to(memory_format=torch.channels_last)
    cl = {k: v.contiguous(memory_format=torch.channels_last) for k, v in nchw.items()}
    arrays = {k: v.numpy() for k, v in nchw.items()}

    def torch_run(m, inputs, bf16=False):
        def run(name):
            with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                return getattr(m, name)(inputs[name]).float().contiguous().numpy()
        return run

    engines = {"torch fp32 CL": (torch_run(model_cl, cl), ("g_a", "g_s")),
               "torch fp32 NCHW": (torch_run(model, nchw), ("g_a", "g_s")),
               "torch bf16 CL": (torch_run(model_cl, cl, bf16=True), ("g_s",)),
               "onnxruntime fp32": (lambda name: getattr(ort_t, name)(arrays[name]), ("g_a", "g_s"))}
    jobs = [(e, n) for e, (_, names) in engines.items() for n in names]
    times = {job: [] for job in jobs}
    outputs = {}
    start = time.perf_counter()
    with paused_training(not args.no_pause) as pids:
        for engine, name in jobs * WARMUP:
            outputs[engine, name] = engines[engine][0](name)
        for _ in range(args.rounds):
            for engine, name in jobs:
                time.sleep(SETTLE)
                t = time.perf_counter()
                engines[engine][0](name)
                times[engine, name].append(time.perf_counter() - t)
        sessions_all = _median_ms(lambda: [OnnxTransforms(args.weights, threads=args.threads).session(t)
                                           for t in TRANSFORMS])
        sessions_gs = _median_ms(lambda: OnnxTransforms(args.weights, threads=args.threads).session("g_s"))
        imports = {m: _import_time(m) for m in ("torch", "onnxruntime", "codec.onnx_runtime")}
        t_launch = []
        for _ in range(3):
            t = time.time()
            parts = _fresh_seconds(_DECODER, args.weights, str(args.threads), str(h), str(w), repeats=1)
            t_launch.append((parts, time.time() - t))
        decoder = sorted(t_launch, key=lambda p: p[1])[1]
    paused_for = time.perf_counter() - start

    print(f"{path.name} {w}×{h}, {Path(args.weights).name}, {args.threads} threads, median of {args.rounds}; "
          f"training {'paused ' + str(pids) if pids else 'not paused'} for {paused_for:.0f} s")
    print(f"{'engine':<18}{'transform':<10}{'ms':>8}{'vs torch CL':>13}{'max |diff|':>12}{'output max':>12}")
    for engine, name in jobs:
        t_ms = statistics.median(times[engine, name]) * 1e3
        ref = outputs["torch fp32 CL", name]
        t_ref = statistics.median(times["torch fp32 CL", name]) * 1e3
        print(f"{engine:<18}{name:<10}{t_ms:>8.0f}{t_ms / t_ref:>13.2f}"
              f"{np.abs(outputs[engine, name] - ref).max():>12.2e}{np.abs(ref).max():>12.3g}")
    print("start-up, ms: import torch {:.0f}, onnxruntime {:.0f}, codec.onnx_runtime {:.0f} (fresh interpreters); "
          "ORT sessions: all 4 graphs {:.0f}, g_s alone {:.0f} (incl. weights SHA-256)".format(
              imports["torch"] * 1e3, imports["onnxruntime"] * 1e3, imports["codec.onnx_runtime"] * 1e3,
              sessions_all, sessions_gs))
    (t_imp, t_sess, t_run, _), wall = decoder
    print(f"fresh decoder process (import, h_s + g_s sessions, one run each at {w}×{h}): {wall * 1e3:.0f} ms wall; "
          f"import {t_imp * 1e3:.0f}, sessions {t_sess * 1e3:.0f}, first runs {t_run * 1e3:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
