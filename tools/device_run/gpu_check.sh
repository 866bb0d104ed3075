#!/usr/bin/env bash
# Issue 35's measurements on a lent GPU machine, in one call (see README.md, "GPU encoding").
#
#   run(command="bash tools/device_run/gpu_check.sh", carry=[".whl", ".gpukodak"], timeout_s=540)
#
# .whl: constriction's cp312 wheel (the device image lacks it); .gpukodak: the 24 Kodak PNGs.
# Writes under $OUT: pytest_gpu.log, measure.log, gpu_check.json and files/ (the .lic files the
# GPU wrote), for `python -m benchmarks.gpu_check verify <files_at> ../shared/data/kodak` here.
# Locally, DEV=cpu runs the same steps on the CPU with small sizes (OUT and KODAK to set).
set -o pipefail
OUT=${OUT:?set OUT}
KODAK=${KODAK:-.gpukodak}
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1 && [ "${DEV:-cuda}" != cpu ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/nvidia_smi.txt"
if [ "${DEV:-cuda}" = cpu ]; then
  python3 -m benchmarks.gpu_check measure "$KODAK" --out "$OUT" --device cpu --limit 2 --copies 1 --jobs 1 --mp 1 \
    --cpu-limit 1 2>&1 | tee "$OUT/measure.log"
  exit $?
fi
timeout 120 python3 -m pytest -q -m gpu tests/test_determinism.py -p no:cacheprovider 2>&1 | tee "$OUT/pytest_gpu.log"
timeout 360 python3 -m benchmarks.gpu_check measure "$KODAK" --out "$OUT" --device cuda --jobs 4,16 --mp 48 \
  2>&1 | tee "$OUT/measure.log"
