"""The DRED entropy tables as their own model file, shared by sender and receiver."""
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_dred.dred.decoder import load_decoder_weights
from edge_dred.dred.quantizer import EntropyTables
from edge_dred.dred.ratecontrol import encode_dred
from edge_dred.dred.tables import DredModelError, load_tables, shipped_tables, table_arrays
from edge_dred.models.loader import MODELS_DIR, manifest_entry

#: sha256 of the payloads below, coded with the tables as they shipped inside dred_decoder.npz
#: before they had their own file: moving them must not change a single payload bit.
PAYLOADS_SHA256 = "a6fe7f8282078d3a836f66f24f43425595e3e3e21f891d46057b443fad6ecc88"


def _payload_digest(tables: EntropyTables) -> str:
    rng = np.random.default_rng(19)
    h = hashlib.sha256()
    for _ in range(40):
        z = rng.laplace(0, 2.0, (26, tables.latent_dim)).astype(np.float32)
        s = rng.laplace(0, 2.0, tables.state_dim).astype(np.float32)
        d = encode_dred(z, s, tables, budget_bytes=int(rng.integers(20, 120)))
        p = d.payload or b""
        h.update(len(p).to_bytes(2, "little") + p)
    return h.hexdigest()


def test_shipped_tables_code_the_same_payloads_as_before():
    assert _payload_digest(shipped_tables()) == PAYLOADS_SHA256


def test_tables_file_is_small_listed_and_shared_with_the_decoder():
    entry = manifest_entry("dred_tables")
    assert entry["file"] == "dred_tables.npz" and entry["bytes"] < 32_000 and entry["version"] == "rdovae-1"
    t = shipped_tables()
    w = load_decoder_weights()
    assert w.tables is t and (t.latent_dim, t.state_dim) == (w.latent_dim, w.state_dim)
    with np.load(MODELS_DIR / "dred_decoder.npz") as z:
        assert "p0" not in z.files and "quant_scale" not in z.files  # one copy of the tables


def test_bad_tables_files_are_refused_with_the_file_named(tmp_path):
    good = table_arrays(shipped_tables())
    p = tmp_path / "t.npz"
    np.savez(p, **good)
    assert np.array_equal(load_tables(p).p0_q15, shipped_tables().p0_q15)
    with pytest.raises(DredModelError, match="not found"):
        load_tables(tmp_path / "missing.npz")
    for name, bad in (("p0", np.full_like(good["p0"], 1.5)), ("version", np.array("rdovae-0")),
                      ("quant_scale", np.ones((16, 3), np.float32))):
        np.savez(p, **{**good, name: bad})
        with pytest.raises(DredModelError, match="t.npz"):
            load_tables(p)
    np.savez(p, **{k: v for k, v in good.items() if k != "decay"})
    with pytest.raises(DredModelError, match="decay"):
        load_tables(p)
    p.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DredModelError, match="not a readable"):
        load_tables(p)
    # A copy that does not match the manifest is refused.
    mdir = tmp_path / "models"
    mdir.mkdir()
    shutil.copy(MODELS_DIR / "manifest.json", mdir)
    data = bytearray((MODELS_DIR / "dred_tables.npz").read_bytes())
    data[len(data) // 2] ^= 1
    (mdir / "dred_tables.npz").write_bytes(bytes(data))
    with pytest.raises(DredModelError, match="corrupted"):
        load_tables(mdir / "dred_tables.npz", verify=True)
    (mdir / "dred_tables.npz").write_bytes(bytes(data[:-10]))
    with pytest.raises(DredModelError, match="truncated"):
        load_tables(mdir / "dred_tables.npz", verify=True)


def test_the_sender_never_reads_the_decoder_file():
    pytest.importorskip("ai_edge_litert", reason="no TFLite runtime")
    code = """
import sys
opened = []
sys.addaudithook(lambda ev, args: opened.append(str(args[0])) if ev == "open" and args else None)
import numpy as np
from edge_dred.dred.encoder import DredStreamEncoder
enc = DredStreamEncoder(1040, 80)
for i in range(10):
    enc.push_pcm((3000 * np.sin(np.arange(320) * 0.05 * (i + 1))).astype(np.int16))
assert not [p for p in opened if p.endswith("dred_decoder.npz")], opened
assert "edge_dred.dred.decoder" not in sys.modules
assert any(p.endswith("dred_tables.npz") for p in opened)
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=str(Path(__file__).resolve().parents[1]))
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
