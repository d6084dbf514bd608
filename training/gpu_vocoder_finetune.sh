#!/bin/bash
# Vocoder fine-tunes side by side on one lent GPU (device tool), as run for the shipped vocoder.
# Each run is latency-bound (a 160-step recurrent loop per sequence, ~0.8 s/step at batch 64
# whether one or three share the GPU), so three runs share it.  The checkpoints travel
# model-only; a GAN resumed from one gets a new discriminator (trained alone first).
#
# Here:   .venv/bin/python training/pack_gpu_subset.py --out gpu_job   (gpu_job/ in .git/info/exclude)
#   stage 1: mkdir -p gpu_job/init/plain gpu_job/init/gan
#            cp <spectral checkpoint, step 5020> gpu_job/init/plain/latest.pt
#            cp <GAN checkpoint shipped before, step 520> gpu_job/init/gan/latest.pt
#   stage 2: mkdir -p gpu_job/init/c5400 gpu_job/init/a450
#            cp <stage-1 C model_0005400.pt> gpu_job/init/c5400/latest.pt
#            cp <stage-1 A model_0000450.pt> gpu_job/init/a450/latest.pt
# There:  run(command="STAGE=1 MIN=6.3 bash training/gpu_vocoder_finetune.sh", carry=["gpu_job"], timeout_s=540)
#         run(command="STAGE=2 MIN=4.8 bash training/gpu_vocoder_finetune.sh", carry=["gpu_job"], timeout_s=380)
# Stage 1 -- A: GAN from the spectral model; B: the previous GAN continued; C: spectral training continued.
# Stage 2 -- D1/D3: GAN from C's step 5400 with --spec-weight 2 / 3; D2: A continued.
# Shipped: D1 snapshot 300 (chosen on training speech, eval_copy_synthesis.py --speech .../train/vcc2016),
# then continued on the CPU with DRED-decoded features (docs/training-log.md).
# Stage 3 (not run yet; it needs dred_feats_0.npz in gpu_job, packed when the twins exist):
#   mkdir -p gpu_job/init/gan && cp training/checkpoints/vocoder_gan/latest.pt gpu_job/init/gan/
#   run(command="STAGE=3 MIN=8 bash training/gpu_vocoder_finetune.sh", carry=["gpu_job"], timeout_s=560)
#   E1/E2: the shipped vocoder continued with --dred-p 0.5 at lr 1e-4 / 5e-5; E3: --spec-weight 3.
#   Snapshots every 100 steps: choose with tune_concealment.py --vocoder-twin and eval_vocoder_pair.py.
set -u
export PYTHONUNBUFFERED=1
J=${J:-gpu_job}; R=/tmp/runs; mkdir -p "$R"
OUT=${OUT:-$R/out}; mkdir -p "$OUT"
MIN=${MIN:-6.3}
G="python3 training/train_vocoder_gan.py --batch 64 --device cuda --data $J --max-minutes $MIN --ckpt-minutes 100"
if [ "${STAGE:-1}" = 1 ]; then
  RUNS="A B C"
  $G --init $J/init/plain/latest.pt --spec-weight 2 --snapshot-every 150 --ckpt-dir $R/A/ck --run-dir $R/A > $R/A.out 2>&1 &
  $G --resume --spec-weight 2 --d-warmup-steps 0 --snapshot-every 150 --ckpt-dir $J/init/gan --run-dir $R/B > $R/B.out 2>&1 &
  python3 training/train_vocoder.py --resume --batch 128 --device cuda --lr 5e-4 --data $J --max-minutes $MIN \
    --snapshot-every 150 --ckpt-minutes 100 --ckpt-dir $J/init/plain --run-dir $R/C > $R/C.out 2>&1 &
elif [ "${STAGE}" = 3 ]; then
  [ -f $J/dred_feats_0.npz ] || { echo "$J/dred_feats_0.npz missing: pack_gpu_subset.py after prepare_dred_features.py"; exit 2; }
  RUNS="E1 E2 E3"
  E="$G --init $J/init/gan/latest.pt --dred-p 0.5 --train-cond --snapshot-every 100"
  $E --spec-weight 2 --ckpt-dir $R/E1/ck --run-dir $R/E1 > $R/E1.out 2>&1 &
  $E --spec-weight 2 --lr-g 5e-5 --ckpt-dir $R/E2/ck --run-dir $R/E2 > $R/E2.out 2>&1 &
  $E --spec-weight 3 --ckpt-dir $R/E3/ck --run-dir $R/E3 > $R/E3.out 2>&1 &
else
  RUNS="D1 D2 D3"
  $G --init $J/init/c5400/latest.pt --spec-weight 2 --snapshot-every 100 --ckpt-dir $R/D1/ck --run-dir $R/D1 > $R/D1.out 2>&1 &
  $G --init $J/init/c5400/latest.pt --spec-weight 3 --snapshot-every 100 --ckpt-dir $R/D3/ck --run-dir $R/D3 > $R/D3.out 2>&1 &
  $G --resume --spec-weight 2 --snapshot-every 100 --ckpt-dir $J/init/a450 --run-dir $R/D2 > $R/D2.out 2>&1 &
fi
wait
# The tool returns at most 8 files of 16 MiB: one log and one tar of model-only snapshots per run.
for r in $RUNS; do
  cp $R/$r.out $OUT/out_$r.txt
  (cd $R/$r && ls model_*.pt | tail -n 6 | tar -cf $OUT/snap_$r.tar -T -)
done
ls -la $OUT
