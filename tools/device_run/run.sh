# Device run (see README.md here): fine-tune the codec from .gpupack/init.pt on the packed training set,
# or, with INIT=none, train a new model from scratch (e.g. INIT=none WIDTH="--N 128 --M 320" LR=1e-3).
# run(command="bash tools/device_run/run.sh", carry=[".gpupack"], timeout_s=570)
set -u
START=$(date +%s)
MIN=${MIN:-7.5}; DEADLINE=${DEADLINE:-520}
export PYTHONPATH=$PWD/.gpupack/site PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p $OUT /tmp/run
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, numpy, PIL; print('torch', torch.__version__, 'numpy', numpy.__version__, 'PIL', PIL.__version__, torch.cuda.is_available())"
[ "${INIT:-.gpupack/init.pt}" = none ] || cp ${INIT:-.gpupack/init.pt} /tmp/run/train.pt
LEFT=$(( DEADLINE - $(date +%s) + START ))
timeout -s TERM -k 30 $LEFT python3 -c "import sys; sys.modules['constriction'] = None; from codec.train import main; sys.exit(main(sys.argv[1:]))" \
  --device ${DEV:-cuda} --data .gpupack/data --cache /tmp/run/patches.npy --crops-per-image ${CROPS:-24} \
  --checkpoint /tmp/run/train.pt --log-file $OUT/gpu_log.jsonl --batch ${BATCH:-16} --lr ${LR:-1e-4} \
  --lr-final ${LR_FINAL:-1e-5} --decay-start ${DECAY:-0.65} --warmup 300 ${WIDTH:-} --minutes $MIN --save-every 2 --eval-every 1e9 \
  --log-every ${LOGN:-250} --threads 8 ${EXTRA:-} 2>&1 | tee $OUT/gpu_train.out
echo "script seconds $(( $(date +%s) - START ))"
python3 tools/device_run/parts.py split /tmp/run/train.pt $OUT
ls -la $OUT
