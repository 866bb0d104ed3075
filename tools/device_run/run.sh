# Device run (see README.md here).  Two verbs:
#   bash tools/device_run/run.sh stash .gpudata1    # a call that only carries a data part: keep it in $DATA
#   bash tools/device_run/run.sh                    # the last call: gather the data, train, split the checkpoint
# Training resumes .gpupack/init.pt (INIT=none: a new model, e.g. INIT=none WIDTH="--N 128 --M 320" LR=1e-3).
# With --compile in COMPILE (the default), a failed start is retried eager in the time left.
set -u
START=$(date +%s)
DATA=${DATA:-/tmp/lic_data}
mkdir -p $DATA
gather() { for p in "$@"; do [ -d "$p" ] && cp -r "$p"/. $DATA/; done; echo "$DATA: $(find $DATA -type f | wc -l) images, $(du -sm $DATA | cut -f1) MB"; }
if [ "${1:-}" = stash ]; then shift; gather "$@"; exit 0; fi

MIN=${MIN:-7.5}; DEADLINE=${DEADLINE:-545}
export PYTHONPATH=$PWD/.gpupack/site PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p $OUT /tmp/run
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, numpy, PIL; print('torch', torch.__version__, 'numpy', numpy.__version__, 'PIL', PIL.__version__, torch.cuda.is_available())"
gather .gpupack/data .gpudata*
[ "${INIT:-.gpupack/init.pt}" = none ] || cp ${INIT:-.gpupack/init.pt} /tmp/run/train.pt

train() {  # train MINUTES [flags...]: one run of codec.training.train, stopped by SIGTERM at DEADLINE at the latest
  local minutes=$1; shift
  local left=$(( DEADLINE - $(date +%s) + START ))
  timeout -s TERM -k 30 $left python3 -c "import sys; sys.modules['constriction'] = None; from codec.training.train import main; sys.exit(main(sys.argv[1:]))" \
    --device ${DEV:-cuda} --data $DATA --cache /tmp/run/patches.npy --crops-per-image ${CROPS:-32} \
    --checkpoint /tmp/run/train.pt --log-file $OUT/gpu_log.jsonl --batch ${BATCH:-32} --lr ${LR:-1e-4} \
    --lr-final ${LR_FINAL:-1e-5} --decay-start ${DECAY:-0.3} --warmup ${WARMUP:-0} ${WIDTH:-} --minutes $minutes \
    --save-every 2 --eval-every 1e9 --log-every ${LOGN:-500} --threads 8 ${EXTRA:-} "$@" 2>&1 | tee -a $OUT/gpu_train.out
  return ${PIPESTATUS[0]}
}
train $MIN ${COMPILE---compile}
rc=$?
LEFT=$(( DEADLINE - $(date +%s) + START ))
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ -n "${COMPILE---compile}" ] && [ $LEFT -gt 90 ]; then
  echo "exit $rc: retrying eager for the $LEFT s left"
  train $(python3 -c "print(round(($LEFT - 45) / 60, 2))")
fi
echo "script seconds $(( $(date +%s) - START ))"
python3 tools/device_run/parts.py split /tmp/run/train.pt $OUT
ls -la $OUT
