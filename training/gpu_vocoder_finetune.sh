#!/bin/bash
# Vocoder fine-tunes side by side on one lent GPU (device tool), as run in session 6.
# Each run is latency-bound (a 160-step recurrent loop per sequence), so three share one GPU.
#
# Here:   .venv/bin/python training/pack_gpu_subset.py --out gpu_job   (gpu_job/ listed in .git/info/exclude)
#         mkdir -p gpu_job/init/plain gpu_job/init/gan
#         cp training/checkpoints/vocoder/latest.pt gpu_job/init/plain/   (spectral model, step 5020)
#         cp <previous GAN checkpoint> gpu_job/init/gan/latest.pt
# There:  run(command="MIN=6.3 bash training/gpu_vocoder_finetune.sh", carry=["gpu_job"], timeout_s=540)
# A: GAN from the spectral model (--spec-weight 2): snapshot 450 is the shipped vocoder.
# B: the previous GAN continued.  C: spectral training continued.
set -u
export PYTHONUNBUFFERED=1
J=${J:-gpu_job}; R=/tmp/runs; mkdir -p "$R"
OUT=${OUT:-$R/out}; mkdir -p "$OUT"
MIN=${MIN:-6.3}
python3 training/train_vocoder_gan.py --init $J/init/plain/latest.pt --spec-weight 2 --batch 64 --device cuda \
  --data $J --ckpt-dir $R/A/ck --run-dir $R/A --max-minutes $MIN --snapshot-every 150 --ckpt-minutes 100 > $R/A.out 2>&1 &
python3 training/train_vocoder_gan.py --resume --spec-weight 2 --batch 64 --device cuda --d-warmup-steps 0 \
  --data $J --ckpt-dir $J/init/gan --run-dir $R/B --max-minutes $MIN --snapshot-every 150 --ckpt-minutes 100 > $R/B.out 2>&1 &
python3 training/train_vocoder.py --resume --batch 128 --device cuda --lr 5e-4 \
  --data $J --ckpt-dir $J/init/plain --run-dir $R/C --max-minutes $MIN --snapshot-every 150 --ckpt-minutes 100 > $R/C.out 2>&1 &
wait
# The tool returns at most 8 files of 16 MiB: one log and one tar of model-only snapshots per run.
for r in A B C; do
  cp $R/$r.out $OUT/out_$r.txt
  (cd $R/$r && ls model_*.pt | tail -n 6 | tar -cf $OUT/snap_$r.tar -T -)
done
ls -la $OUT
