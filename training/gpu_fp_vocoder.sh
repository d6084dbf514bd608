#!/bin/bash
# Train the frame-parallel vocoder on one lent GPU (device tool) and bring the checkpoints back.
#
# The fp vocoder has no per-sample loop, so one run fills the GPU with a large batch (the
# FARGAN-style vocoder was latency-bound there). A command may run 10 minutes and a session
# has 15 minutes of device time, start-up included: MIN=8.5 leaves room for the start and the copy back.
#
# Here:   .venv/bin/python training/pack_gpu_subset.py --out training/runs/gpu_fp --frames-per-copy 60000
#             (whole files, copy 0 and augmented copy 1 disjoint; training/runs/ is git-ignored)
#         optional, to continue the CPU run:
#             mkdir -p training/runs/gpu_fp/init && cp training/checkpoints/fp_vocoder/latest.pt training/runs/gpu_fp/init/
# There:  run(command="MIN=8.5 bash training/gpu_fp_vocoder.sh", carry=["training/runs/gpu_fp"], timeout_s=600)
# Back:   files_at/ holds log.txt, latest.pt (weights, config, step) and the last model-only
#         snapshots; continue on the CPU with
#             cp <files_at>/latest.pt training/checkpoints/fp_vocoder/latest.pt && rm -f training/runs/fp_vocoder/latest_full.pt
#             .venv/bin/python training/train_fp_vocoder.py --resume ...
# CPU dry run: PY=.venv/bin/python DEVICE=cpu BATCH=8 MIN=0.5 OUT=/tmp/fp_gpu_out bash training/gpu_fp_vocoder.sh
set -u
export PYTHONUNBUFFERED=1
J=${J:-training/runs/gpu_fp}; R=/tmp/fp_runs; mkdir -p "$R"
OUT=${OUT:-$R/out}; mkdir -p "$OUT"
MIN=${MIN:-8.5}
DEVICE=${DEVICE:-cuda}
BATCH=${BATCH:-256}
LR=${LR:-4e-4}  # as on the CPU: larger Adam steps collapsed the output to noise (docs/vocoder.md)
PY=${PY:-python3}  # the device image has torch; here: PY=.venv/bin/python
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
nvidia-smi --query-gpu=name,memory.used,memory.total,utilization.gpu --format=csv 2>/dev/null
INIT=""
if [ -f "$J/init/latest.pt" ]; then INIT="--init $J/init/latest.pt"; fi
$PY training/train_fp_vocoder.py --device "$DEVICE" --batch "$BATCH" --lr "$LR" --warmup-steps 100 --data "$J" $INIT \
  --max-minutes "$MIN" --ckpt-minutes 2 --snapshot-every 200 --log-every 20 \
  --ckpt-dir $R/ck --run-dir $R/run > $R/train.out 2>&1 &
PID=$!
# GPU load while it runs (one line a minute)
( while kill -0 $PID 2>/dev/null; do
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null; sleep 60
  done ) > $R/gpu_util.txt &
wait $PID
tail -n 5 $R/train.out
cp $R/run/log.txt $OUT/log.txt
cp $R/gpu_util.txt $OUT/gpu_util.txt
cp $R/ck/latest.pt $OUT/latest.pt
(cd $R/run && ls model_*.pt 2>/dev/null | tail -n 3 | xargs -r -I{} cp {} $OUT/)
ls -la $OUT
