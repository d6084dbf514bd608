import json
import subprocess
import sys

import numpy as np
import pytest

from edge_dred.audio.wavio import load_audio, write_wav
from edge_dred.cli.main import main

from conftest import voiced


@pytest.fixture
def wav(tmp_path):
    p = tmp_path / "in.wav"
    write_wav(p, voiced(2.0))
    return p


def test_simulate_end_to_end_with_report(tmp_path, wav, capsys):
    out, rep = tmp_path / "o.wav", tmp_path / "r.json"
    assert main(["simulate", str(wav), "--loss", "20", "--burst", "3", "--lbrr", "-o", str(out), "--report", str(rep)]) == 0
    r = json.loads(rep.read_text())
    y = load_audio(out).pcm
    assert len(y) == len(load_audio(wav).pcm)
    pk = r["packets"]
    assert len(pk) == sum(r["decision_counts"].values())
    assert all((p["decision"] == "regular") == (not p["lost"]) for p in pk)
    assert 0.05 < r["loss"]["loss_rate"] < 0.45
    assert "lbrr" in r["decision_counts"]
    assert "decisions" in capsys.readouterr().out


def test_simulate_neural_plc_reports_what_it_did(tmp_path, wav, capsys):
    tr = tmp_path / "t.txt"
    tr.write_text("0\n" * 12 + "1\n1\n1\n0\n0\n0\n" * 12)
    rep = tmp_path / "r.json"
    assert main(["simulate", str(wav), "--trace", str(tr), "--neural-plc", "-o", str(tmp_path / "o.wav"),
                 "--report", str(rep)]) == 0
    r = json.loads(rep.read_text())
    st = r["neural_plc"]
    assert r["decision_counts"]["neural_plc"] == st["slots"] > 0
    # Every loss has its 20 ms libopus lead, or the voicing gate left all of it to libopus.
    assert st["lead_slots"] == st["losses"] - st["gated_losses"]
    assert st["slots"] - st["lead_slots"] - st["gated_slots"] > 0  # voiced input: the vocoder ran
    assert st["shaped_slots"] == st["gated_slots"]   # shape_gated is on by default
    assert "neural " in capsys.readouterr().out
    assert main(["simulate", str(wav), "--trace", str(tr), "-o", str(tmp_path / "p.wav"), "--report", str(rep)]) == 0
    assert json.loads(rep.read_text())["neural_plc"] is None


def test_simulate_with_trace(tmp_path, wav):
    tr = tmp_path / "t.txt"
    tr.write_text("0\n0\n1\n1\n0\n" * 20)
    rep = tmp_path / "r.json"
    assert main(["simulate", str(wav), "--trace", str(tr), "-o", str(tmp_path / "o.wav"), "--report", str(rep)]) == 0
    lost = [p["lost"] for p in json.loads(rep.read_text())["packets"]]
    assert lost[:5] == [False, False, True, True, False]


def test_bad_inputs_give_clear_errors_and_write_nothing(tmp_path, wav, capsys):
    bad_trace = tmp_path / "t.txt"
    bad_trace.write_text("0\n1\nx\n")
    out = tmp_path / "o.wav"
    assert main(["simulate", str(wav), "--trace", str(bad_trace), "-o", str(out)]) == 2
    assert "error" in capsys.readouterr().err
    corrupt = tmp_path / "c.wav"
    corrupt.write_bytes(b"RIFF1234WAVEjunk")
    assert main(["simulate", str(corrupt), "-o", str(out)]) == 2
    assert not out.exists()
    with pytest.raises(SystemExit) as e:
        main(["simulate", "--no-such-option"])
    assert e.value.code == 2


def test_stereo_44k_input_is_converted_with_a_note(tmp_path, capsys):
    import struct
    x = voiced(1.0, sr=44100)
    st = np.stack([x, x], 1).astype("<i2")
    body = st.tobytes()
    hdr = (b"RIFF" + struct.pack("<I", 36 + len(body)) + b"WAVE" + b"fmt "
           + struct.pack("<IHHIIHH", 16, 1, 2, 44100, 44100 * 4, 4, 16) + b"data" + struct.pack("<I", len(body)))
    p = tmp_path / "st.wav"
    p.write_bytes(hdr + body)
    assert main(["simulate", str(p), "-o", str(tmp_path / "o.wav")]) == 0
    o = capsys.readouterr().out
    assert "downmixed" in o and "resampled 44100" in o


def test_console_script_entry_runs_demo_without_input(tmp_path):
    import os
    from pathlib import Path

    import edge_dred

    env = dict(os.environ, PYTHONPATH=str(Path(edge_dred.__file__).resolve().parents[1]))
    r = subprocess.run([sys.executable, "-m", "edge_dred", "simulate", "--loss", "10", "-o", str(tmp_path / "d.wav")],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert "no input given" in r.stdout
    assert len(load_audio(tmp_path / "d.wav").pcm) > 16000
