import json
import os
import stat
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


def _parser_actions():
    """(command, action) for every argument of every subcommand."""
    import argparse

    from edge_dred.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return [(name, a) for name, p in sub.choices.items() for a in p._actions]


def test_every_option_of_every_command_has_help():
    import argparse

    missing = [f"{cmd} {'/'.join(a.option_strings) or a.dest}" for cmd, a in _parser_actions()
               if a.help != argparse.SUPPRESS and not (a.help or "").strip()]
    assert missing == []


def test_recovery_ms_is_one_option_with_one_meaning():
    import argparse

    shared = {cmd: a for cmd, a in _parser_actions() if "--recovery-ms" in a.option_strings}
    assert {"simulate", "recv", "live", "eval"} <= set(shared)
    assert len({(a.type, a.help) for cmd, a in shared.items() if cmd != "eval"}) == 1
    assert shared["simulate"].default is None  # same default rule as live: 60 with DRED, else the receiver's own
    # Where --jitter-ms exists it is the live jitter buffer's target delay.
    jitter = {cmd: a for cmd, a in _parser_actions()
              if "--jitter-ms" in a.option_strings and a.help != argparse.SUPPRESS}
    assert set(jitter) == {"send", "recv", "live"}
    assert all("jitter buffer target delay" in a.help for a in jitter.values())


@pytest.mark.parametrize("cmd", [["simulate"], ["eval", "--speech", ".", "--traces", ".", "-o", "x"]])
def test_jitter_ms_in_offline_commands_points_to_recovery_ms(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main(cmd + ["--jitter-ms", "60"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--jitter-ms" in err and "--recovery-ms" in err


def test_simulate_recovery_ms_sets_the_dred_look_ahead(tmp_path, capsys):
    p = tmp_path / "in.wav"
    write_wav(p, voiced(1.2))
    tr = tmp_path / "t.txt"
    tr.write_text("0\n" * 10 + "1\n1\n" + "0\n" * 60)  # one 40 ms burst
    counts = {}
    for look in (None, "0", "20"):
        rep = tmp_path / f"r{look}.json"
        extra = [] if look is None else ["--recovery-ms", look]
        assert main(["simulate", str(p), "--trace", str(tr), "--dred", "-o", str(tmp_path / "o.wav"),
                     "--report", str(rep)] + extra) == 0
        r = json.loads(rep.read_text())
        counts[look] = r["decision_counts"].get("dred", 0)
        assert r["dred"]["recovery_ms"] == (60 if look is None else int(look))
    # Nothing arrives in time with no look-ahead; 20 ms reaches one slot of the burst, 60 ms both.
    assert counts["0"] == 0 and counts["20"] == 1 and counts[None] == 2
    assert "recovery look-ahead 60 ms" in capsys.readouterr().out


def _run(args, capsys):
    rc = main(args)
    return rc, capsys.readouterr().err


def test_output_errors_name_the_users_path_not_a_temporary_file(tmp_path, wav, capsys):
    d = tmp_path / "adir"
    d.mkdir()
    rc, err = _run(["simulate", str(wav), "-o", str(d)], capsys)
    assert rc == 2 and str(d) in err and "directory" in err and ".tmp" not in err
    f = tmp_path / "afile"
    f.write_text("x")
    for flag in ("-o", "--report"):
        target = f / "out.wav"
        rc, err = _run(["simulate", str(wav), "-o", str(tmp_path / "ok.wav"), flag, str(target)], capsys)
        assert rc == 2 and str(target) in err and ".tmp" not in err, err
    assert not (tmp_path / "ok.wav").exists()  # refused before any work


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_output_into_a_read_only_folder_names_the_users_path(tmp_path, wav, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        rc, err = _run(["simulate", str(wav), "-o", str(ro / "o.wav")], capsys)
    finally:
        ro.chmod(0o755)
    assert rc == 2 and str(ro / "o.wav") in err and ".tmp" not in err


def test_output_equal_to_the_input_is_refused(tmp_path, wav, capsys, monkeypatch):
    before = wav.read_bytes()
    link = tmp_path / "link.wav"
    link.symlink_to(wav)
    monkeypatch.chdir(tmp_path)
    for out in (str(wav), str(link), "in.wav", "./sub/../in.wav"):
        rc, err = _run(["simulate", str(wav), "-o", out], capsys)
        assert rc == 2 and "input" in err and "overwrite" in err, (out, err)
    rc, err = _run(["simulate", "in.wav", "-o", str(tmp_path / "o.wav"), "--report", str(wav)], capsys)
    assert rc == 2 and "--report" in err
    rc, err = _run(["simulate", "in.wav", "-o", "same.wav", "--report", "same.wav"], capsys)
    assert rc == 2 and "same.wav" in err
    assert wav.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["in.wav", "link.wav"]


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_outputs_get_ordinary_permissions(tmp_path, wav, umask):
    old = os.umask(umask)
    try:
        assert main(["simulate", str(wav), "-o", str(tmp_path / "o.wav"), "--report", str(tmp_path / "r.json")]) == 0
    finally:
        os.umask(old)
    for name in ("o.wav", "r.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name


def test_truncated_wav_is_read_with_a_warning_naming_the_file(tmp_path, wav, capsys):
    cut = tmp_path / "cut.wav"
    cut.write_bytes(wav.read_bytes()[:44 + 2 * 16000 + 1])  # 1 s and half a sample of the 2 s
    assert main(["simulate", str(cut), "-o", str(tmp_path / "o.wav")]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and str(cut) in err and "read 16000 of 32000 samples" in err
    assert len(load_audio(tmp_path / "o.wav").pcm) == 16000


def test_simulate_adaptive_playout_reports_the_delay_trace(tmp_path, capsys):
    wav = tmp_path / "long.wav"
    write_wav(wav, voiced(5.0, seed=4))
    out, rep = tmp_path / "o.wav", tmp_path / "r.json"
    assert main(["simulate", str(wav), "--loss", "25", "--burst", "6", "--seed", "3", "--lbrr", "--dred",
                 "--playout", "adaptive", "--max-delay-ms", "160", "-o", str(out), "--report", str(rep)]) == 0
    r = json.loads(rep.read_text())
    po = r["playout"]
    assert po["mode"] == "adaptive" and po["aligned_with_input"] is False and "not sample-aligned" in po["note"]
    assert po["max_ms"] == 160 and po["p95_delay_ms"] <= 160 and po["trace"] and po["changes"]
    lost = [p for p in r["packets"] if p["lost"]]
    assert all(p["outcome"] in ("in_time", "too_late", "concealed") for p in lost)
    assert sum(r["loss_outcomes"].values()) == len(lost)
    assert "playout   adaptive" in capsys.readouterr().out
    assert main(["simulate", str(wav), "--dred", "--playout", "adaptive", "--max-delay-ms", "40",
                 "-o", str(out)]) == 2
