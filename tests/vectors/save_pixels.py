"""Write tests/vectors/pixels/<vector>.png: each stored vector as the torch fp32 decoder decodes it.

Run once (``python tests/vectors/save_pixels.py``): writes the vectors that have no PNG yet; refuses to write a vector whose decoded
pixels no longer match the digest stored with it in manifest.json, so the PNGs are the pixels
the vectors always decoded to.  The light runtime (onnxruntime) is checked against them to ±1.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

import codec

HERE = Path(__file__).resolve().parent


def main() -> None:
    manifest = json.loads((HERE / "manifest.json").read_text())
    lic = codec.Codec(bf16=False, backend="torch")
    (HERE / "pixels").mkdir(exist_ok=True)
    for name, row in sorted(manifest.items()):
        if (HERE / "pixels" / f"{name}.png").exists():  # frozen, as first written (torch fp32 differs ±1 by CPU)
            continue
        image = lic.decode((HERE / name).read_bytes())
        rgb = image.convert("RGB") if image.mode == "RGBA" else image
        if hashlib.sha256(np.asarray(rgb).tobytes()).hexdigest() != row["pixels"]:
            raise SystemExit(f"{name}: decoded pixels differ from the stored digest; not writing")
        rgb.save(HERE / "pixels" / f"{name}.png")
        print(name, rgb.mode, rgb.size)


if __name__ == "__main__":
    main()
