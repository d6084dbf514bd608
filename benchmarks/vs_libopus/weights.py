"""Random weights of libopus's shipped model shapes, written by upstream's own export scripts.

    python benchmarks/vs_libopus/weights.py OPUS_SRC [--seed N]

For each network libopus needs with DRED and deep PLC (RDO-VAE encoder/decoder and
its statistics, FARGAN, the PLC predictor, PitchDNN), a randomly initialised model
of the shipped hyper-parameters is saved in the checkpoint layout the matching
upstream export script reads, and that script (run from ``OPUS_SRC/dnn/torch``)
writes the C weight files into ``OPUS_SRC/dnn``.  The RDO-VAE's sparsifiers are
run to their final density first, so its block-sparse layers have the shipped
number of non-zero blocks.  Instruction counts do not depend on the weight
values beyond that sparsity.  Needs torch; nothing here is committed.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

# Shipped shapes of the libopus 1.6 models (dnn/*_data.h of the release): the RDO-VAE's layer
# widths are fixed in rdovae.py, only these arguments vary; FARGAN's cond_size is fixed by
# dump_fargan_weights.py; PitchDNN is its default constructor.
RDOVAE_ARGS = dict(feature_dim=20, latent_dim=25, quant_levels=16, cond_size=256, cond_size2=256, state_dim=50)
PLC_KWARGS = {"cond_size": 128, "gru_size": 192}

# Files the export scripts write (what libopus's build needs besides the code).
OUTPUTS = ["dred_rdovae_enc_data.c", "dred_rdovae_dec_data.c", "dred_rdovae_stats_data.c",
           "dred_rdovae_constants.h", "fargan_data.c", "plc_data.c", "pitchdnn_data.c"]


def _import_from(path: str, module: str):
    sys.path.insert(0, path)
    try:
        return __import__(module)
    finally:
        sys.path.remove(path)


def _export(torch_dir: str, sub: str, script: str, args: list[str], cwd: str) -> None:
    cmd = [sys.executable, os.path.join(torch_dir, sub, script), *args]
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"{sub}/{script} failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")


def _fix_up(out_dir: str) -> None:
    """Two details in which the export scripts lag behind the generator of the release's files.

    ``export_plc.py`` declares ``struct PLCModel`` where libopus uses the type name
    ``PLCModel`` (the release's file has the typedef), ``init_pitchdnn`` is declared
    with the type name ``PitchDNN`` before ``pitchdnn.h`` defines it, and the RDO-VAE export leaves
    an empty ``struct Model`` with an ``init_model`` in its statistics and constants
    files, which do not compile and are absent from the release's files.
    """
    p = os.path.join(out_dir, "plc_data.h")
    s = open(p).read()
    if "typedef struct {" not in s:
        s = re.sub(r"struct PLCModel \{(.*?)\n\};", r"typedef struct {\1\n} PLCModel;", s, count=1, flags=re.S)
        open(p, "w").write(s)
    for name in ("pitchdnn_data.h", "pitchdnn_data.c"):
        p = os.path.join(out_dir, name)
        s = open(p).read().replace("int init_pitchdnn(PitchDNN *model", "int init_pitchdnn(struct PitchDNN *model")
        open(p, "w").write(s)
    for name in ("dred_rdovae_stats_data.h", "dred_rdovae_constants.h"):
        p = os.path.join(out_dir, name)
        s = open(p).read()
        s = re.sub(r"\nstruct Model \{\s*\};\s*int init_model\(Model \*model, const WeightArray \*arrays\);\n", "\n", s)
        open(p, "w").write(s)
    p = os.path.join(out_dir, "dred_rdovae_stats_data.c")
    s = open(p).read()
    s = re.sub(r"const WeightArray model_arrays\[\] = \{.*?\n\};\n"
               r"int init_model\(Model \*model, const WeightArray \*arrays\) \{.*?\n\}\n", "", s, flags=re.S)
    open(p, "w").write(s)


def generate(opus_src: str, seed: int = 1) -> list[str]:
    """Write the weight C files into ``opus_src/dnn``; return their paths."""
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    opus_src = os.path.abspath(opus_src)
    torch_dir = os.path.join(opus_src, "dnn", "torch")
    out_dir = os.path.join(opus_src, "dnn")
    with tempfile.TemporaryDirectory(prefix="opus_w_") as tmp:
        # RDO-VAE: checkpoint as train_rdovae.py saves it.
        rdovae = _import_from(os.path.join(torch_dir, "rdovae"), "rdovae")
        a = RDOVAE_ARGS
        margs = (a["feature_dim"], a["latent_dim"], a["quant_levels"], a["cond_size"], a["cond_size2"])
        mkw = {"state_dim": a["state_dim"], "split_mode": "split", "pvq_num_pulses": 82,
               "state_dropout_rate": 0.0, "softquant": False, "chunks_per_offset": 4, "adapt": False}
        model = rdovae.RDOVAE(*margs, **mkw)
        for part in (model.core_encoder.module, model.core_decoder.module):
            for sp in getattr(part, "sparsifier", []):
                sp.step_counter = sp.stop    # the next step prunes to the final density
                sp.step()
        ck = os.path.join(tmp, "rdovae_random.pth")
        torch.save({"model_args": margs, "model_kwargs": mkw, "state_dict": model.state_dict()}, ck)
        _export(torch_dir, "rdovae", "export_rdovae_weights.py", [ck, out_dir], tmp)

        # FARGAN: dump_fargan_weights.py rebuilds the model with its own arguments.
        fargan = _import_from(os.path.join(torch_dir, "fargan"), "fargan")
        model = fargan.FARGAN(cond_size=256, gamma=0.9)
        ck = os.path.join(tmp, "fargan_random.pth")
        torch.save({"state_dict": model.state_dict()}, ck)
        _export(torch_dir, "fargan", "dump_fargan_weights.py", [ck, out_dir, "--quantize"], tmp)

        # PLC predictor: checkpoint as train_plc.py saves it.
        plc = _import_from(os.path.join(torch_dir, "plc"), "plc")
        model = plc.PLC(**PLC_KWARGS)
        ck = os.path.join(tmp, "plc_random.pth")
        torch.save({"model_args": (), "model_kwargs": PLC_KWARGS, "state_dict": model.state_dict()}, ck)
        _export(torch_dir, "plc", "export_plc.py", [ck, out_dir], tmp)

        # PitchDNN.
        models = _import_from(os.path.join(torch_dir, "neural-pitch"), "models")
        model = models.PitchDNN()
        ck = os.path.join(tmp, "pitchdnn_random.pth")
        torch.save({"state_dict": model.state_dict()}, ck)
        _export(torch_dir, "neural-pitch", "export_neuralpitch_weights.py", [ck, out_dir], tmp)
    _fix_up(out_dir)
    paths = [os.path.join(out_dir, f) for f in OUTPUTS]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise SystemExit(f"export scripts did not write {', '.join(missing)}")
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("opus_src", help="libopus source tree (its dnn/torch export scripts are used)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    for p in generate(args.opus_src, args.seed):
        print(p)


if __name__ == "__main__":
    main()
