"""Neural recovery in the live commands: DRED + neural PLC under the load governor.

Synthetic signals and mock devices only.  The governor is driven by injected
slot times (a fake clock under the session's LoadMeter, or ``observe`` calls),
never by real sleeps, so nothing here depends on how busy the machine is.
"""
from __future__ import annotations

import json
import socket
import threading
import types

import numpy as np
import pytest

from conftest import voiced
from edge_dred.audio import device as device_mod
from edge_dred.audio.device import MockDevice
from edge_dred.cli.main import main
from edge_dred.degrade import Level, LoadGovernor
from edge_dred.live import LiveConfig, LiveSession, LiveSetupError, RecvSession, SendSession, build_receiver
from edge_dred.loss import TraceLoss
from edge_dred.receiver import Decision, Receiver, ReceiverConfig
from edge_dred.sender import Sender
from edge_dred.transport.impair import Impairment

SLOT = 320
BUDGET = 0.014  # the governor's default: 70 % of a 20 ms slot


def _bursts(n: int, every: int, length: int, start: int = 10) -> np.ndarray:
    lost = np.zeros(n, bool)
    for s in range(start, n - length - 1, every):
        lost[s:s + length] = True
    return lost


def _d2(y: np.ndarray) -> np.ndarray:
    """Second difference: a step in the waveform shows up here far above the signal's own curvature."""
    return np.abs(y[2:] - 2 * y[1:-1] + y[:-2])


@pytest.fixture(scope="module")
def plc_models():
    from edge_dred.plc import default_models

    return default_models()


# ---------------------------------------------------------------- DRED end to end
def test_live_session_carries_and_recovers_with_dred():
    """Bursts of 3 with LBRR and a 60 ms look-ahead: LBRR takes each burst's last slot, DRED the two before."""
    src = voiced(3.0, seed=2)
    lost = _bursts(150, 12, 3)
    # Pinned at full: the real slot times of a busy test machine must not change what runs.
    cfg = LiveConfig(dred_ms=520, dred=True, neural_plc=True, force_level="full")
    sess = LiveSession(MockDevice("capture", source=src, loop=False), MockDevice("playback"), cfg,
                       Impairment(TraceLoss(lost)))
    rep = sess.run(3.0)
    assert rep["accounting"]["ok"], rep["accounting"]
    assert rep["latency_budget_ms"]["recovery_lookahead_ms"] == 60 and rep["recovery"]["lookahead_slots"] == 3
    assert rep["dred"]["dred_ms"] == 520 and rep["dred"]["packets_with_payload"] > 100
    assert 20 < rep["dred"]["mean_payload_bytes"] <= 80
    dec = [d.value for d in sess.recv.receiver.decisions]
    burst_starts = list(range(10, 140, 12))
    for s in burst_starts:
        # Slot s + 2 may come from LBRR (when libopus put it into packet s + 3); the two before can
        # only come from the DRED in packet s + 3, which reaches back over all of them.
        assert dec[s:s + 2] == ["dred", "dred"] and dec[s + 2] in ("lbrr", "dred"), (s, dec[s:s + 3])
        assert dec[s - 1] == dec[s + 3] == "regular"
    assert rep["decisions"]["dred"] == rep["recovery"]["plugins"]["dred"]["slots"] >= 2 * len(burst_starts)
    assert rep["decisions"].get("lbrr", 0) > 0
    g = rep["governor"]
    assert g["level"] == "full" and g["slots_by_level"]["full"] == sum(rep["decisions"].values())
    assert g["decisions_by_level"]["full"]["dred"] == rep["decisions"]["dred"]


@pytest.mark.slow  # paced: real time
def test_send_and_recv_sessions_with_dred_over_loopback():
    src = voiced(1.6, seed=5)
    lost = _bursts(80, 10, 2, start=8)
    rsock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rsock.bind(("127.0.0.1", 0))
    play = MockDevice("playback", pace=True)
    recv = RecvSession(play, rsock, LiveConfig(lbrr=False, dred=True, neural_plc=True, force_level="full"))
    result: dict = {}
    t = threading.Thread(target=lambda: result.update(recv.run(5.0, idle_timeout=0.4, wait_timeout=5)))
    t.start()
    cap = MockDevice("capture", source=src, loop=False, pace=True)
    srep = SendSession(cap, rsock.getsockname(), LiveConfig(lbrr=False, dred_ms=200),
                       Impairment(TraceLoss(lost))).run(1.6)
    t.join(10)
    rsock.close()
    assert srep["dred"]["packets_with_payload"] > 60
    assert all(v for k, v in result["accounting"].items() if k.endswith("_ok"))
    d = result["decisions"]
    # Every lost packet is a hole filled by DRED (within the 60 ms look-ahead) or the neural PLC.
    assert d.get("dred", 0) >= 1 and d.get("opus_plc", 0) == 0
    assert d.get("dred", 0) + d.get("neural_plc", 0) >= int(lost.sum()) - result["jitter"]["dropped_empty"]
    assert result["governor"]["slots_observed"] > 0


# ---------------------------------------------------------------- the governor
class _FakeClock:
    """Stands in for ``time`` under LoadMeter: only plug-in work advances it."""

    def __init__(self) -> None:
        self.t = 100.0

    def perf_counter(self) -> float:
        return self.t


class _SlowPlugin:
    """Wraps a plug-in; every neural call costs ``cost`` seconds of fake time and is logged."""

    def __init__(self, inner, clock: _FakeClock, gov: LoadGovernor, cost: float) -> None:
        self.inner, self.clock, self.gov, self.cost = inner, clock, gov, cost
        self.decision = inner.decision
        self.calls: list[tuple[str, Level]] = []

    def _log(self, what: str) -> None:
        self.calls.append((what, self.gov.level))
        self.clock.t += self.cost

    def observe(self, pcm, decision):
        self.calls.append(("observe", self.gov.level))
        self.inner.observe(pcm, decision)

    def conceal(self, ctx):
        self._log("conceal")
        return self.inner.conceal(ctx)

    def handback(self, pcm):
        self.calls.append(("handback", self.gov.level))
        return self.inner.handback(pcm)


def test_slow_plugin_drives_governor_to_classic_plc_and_it_recovers(monkeypatch, plc_models):
    from edge_dred.plc import NeuralPLC

    clock = _FakeClock()
    monkeypatch.setattr(device_mod, "time", types.SimpleNamespace(perf_counter=clock.perf_counter))
    n = 300
    cfg = LiveConfig(lbrr=False, neural_plc=True)
    gov = LoadGovernor.for_dred_ms(520, recover_slots=20, probe_slots=60)
    slow = _SlowPlugin(NeuralPLC(*plc_models), clock, gov, cost=0.030)  # 30 ms: over the 14 ms budget
    rx = Receiver(cfg.receiver_config(), concealer=slow, governor=gov)
    lost = _bursts(n, 6, 2, start=5)
    sess = LiveSession(MockDevice("capture", source=voiced(6.0, seed=1), loop=False), MockDevice("playback"),
                       cfg, Impairment(TraceLoss(lost)), receiver=rx)
    statuses: dict[Level, str] = {}
    classic_at = None
    for i in range(n):
        if i == 110:
            slow.cost = 0.002  # the load drops (the governor, backing off, tries again at ~slot 180)
        sess.step()
        statuses.setdefault(gov.level, sess.status_line())
        if gov.level == Level.CLASSIC_PLC and classic_at is None:
            classic_at = i
    rep = sess.report()
    assert rep["accounting"]["ok"]
    g = rep["governor"]
    moves = [(t["from"], t["to"]) for t in g["transitions"]]
    assert moves[:2] == [("full", "short"), ("short", "classic")], moves
    assert classic_at is not None and classic_at < 40
    assert g["transitions"][0]["reason"] == "overruns"
    # The receiver never called neural code while the governor said classic (a handback at the
    # switch is the one exception: it cross-fades out of the last neural slot).
    assert all(lvl != Level.CLASSIC_PLC for what, lvl in slow.calls if what in ("conceal", "observe"))
    assert any(lvl == Level.CLASSIC_PLC for what, lvl in slow.calls if what == "handback")
    by = g["decisions_by_level"]
    assert by["classic"].get("opus_plc", 0) > 10 and "neural_plc" not in by["classic"]
    # without LBRR every hole libopus concealed is one the governor kept from the plug-in
    assert rep["decisions"]["opus_plc"] == g["holes_kept_from_plugins"]
    # ... and the status line said so.
    assert "classic PLC" in statuses[Level.CLASSIC_PLC] and "downgrade" in statuses[Level.CLASSIC_PLC]
    assert "| load " in statuses[Level.FULL] and " full" in statuses[Level.FULL]
    # Load dropped: back to full, neural PLC running again.
    assert gov.level == Level.FULL and moves[-1] == ("short", "full")
    late_conceals = [lvl for what, lvl in slow.calls[-60:] if what == "conceal"]
    assert late_conceals and all(lvl == Level.FULL for lvl in late_conceals)
    assert by["full"].get("neural_plc", 0) > 20
    assert sum(g["slots_by_level"].values()) == sum(rep["decisions"].values())


def test_level_switch_mid_burst_hands_back_without_a_click(plc_models):
    """FULL -> CLASSIC in the middle of a neural PLC burst: the plug-in cross-fades into libopus PLC."""
    from edge_dred.plc import NeuralPLC

    pcm = voiced(2.0, f0=125.0, seed=4)
    packets = Sender(24000).encode_stream(pcm)
    ratios = {}
    for handback in (True, False):
        worst = 0.0
        for first in (41, 57, 70):
            plc = NeuralPLC(*plc_models)
            if not handback:  # negative control: what the switch sounds like without the cross-fade
                plc.handback = lambda x: x
            gov = LoadGovernor(BUDGET, dred_ms=520)
            rx = Receiver(ReceiverConfig(), concealer=plc, governor=gov)
            # The switch lands 40 ms into the loss: the vocoder has played at full gain since the
            # 20 ms libopus lead and its fade into libopus has not started, so a missing
            # cross-fade is as audible as it gets.
            switch = first + 2
            out = []
            for i, p in enumerate(packets):
                if i == switch:
                    for _ in range(4):  # two overrun pairs: FULL -> SHORT -> CLASSIC
                        gov.observe(2 * BUDGET)
                    assert gov.level == Level.CLASSIC_PLC
                out.extend(rx.push(None if first <= i < first + 8 else p))
            out.extend(rx.flush())
            dec = [d.value for d in rx.decisions]
            assert dec[first:switch] == ["neural_plc"] * 2 and dec[switch:first + 8] == ["opus_plc"] * 6
            y = np.concatenate(out).astype(float)
            own = np.percentile(_d2(y[:SLOT * first]), 99.9)
            e = switch * SLOT
            worst = max(worst, _d2(y[e - 3:e + 3]).max() / own)
        ratios[handback] = worst
    assert ratios[True] < 0.5, ratios
    assert ratios[False] > 1.0, ratios  # the measure does see a click when there is one


def test_plugins_rewarm_before_filling_holes_again(plc_models):
    from edge_dred.plc import NeuralPLC

    pcm = voiced(2.0)
    packets = Sender(24000).encode_stream(pcm)
    gov = LoadGovernor(BUDGET, dred_ms=520, recover_slots=5)
    for _ in range(4):
        gov.observe(2 * BUDGET)
    assert gov.level == Level.CLASSIC_PLC
    plc = NeuralPLC(*plc_models)
    rx = Receiver(ReceiverConfig(), concealer=plc, governor=gov, rewarm_slots=5)
    lost = set(range(10, 90, 4))
    for i, p in enumerate(packets[:40]):
        rx.push(None if i in lost else p)
    while not gov.allow_neural():  # a quiet spell: back to a neural level
        gov.observe(0.0)
    start = len(rx.decisions)
    for i, p in enumerate(packets[40:], 40):
        rx.push(None if i in lost else p)
    dec = [d.value for d in rx.decisions]
    holes_after = [i for i in sorted(lost) if i >= start and i < len(dec)]
    # the first hole within the re-warm window stays classic, later ones are neural again
    assert dec[holes_after[0]] == "opus_plc" and holes_after[0] - start < 5
    assert all(dec[i] == "neural_plc" for i in holes_after if i - start >= 5)
    assert rx.governor_skips >= 8
    assert set(dec[:start]) <= {"regular", "opus_plc"}


# ---------------------------------------------------------------- DRED decode cap
@pytest.fixture(scope="module")
def dred_stream():
    from edge_dred.dred.decoder import DredDecoder
    from edge_dred.dred.encoder import DredEncoder
    from edge_dred.neural.vocoder import VocoderModel

    dec = DredDecoder()
    pcm = voiced(2.4, seed=3)
    sender = Sender(24000, dred_ms=600, dred_budget=200, dred_encoder=DredEncoder(), dred_tables=dec.tables)
    return sender.encode_stream(pcm), dec, VocoderModel.load()


@pytest.mark.parametrize("cap_ms,force", [(None, None), (120, "short"), (0, "classic")])
def test_governor_caps_how_far_back_dred_decodes(dred_stream, cap_ms, force):
    from edge_dred.dred.recovery import DredRecoverer

    packets, dec, voc = dred_stream
    rec = DredRecoverer(dec, voc)
    gov = LoadGovernor(BUDGET, dred_ms=1040, short_dred_ms=120, force_level=force) if force else None
    rx = Receiver(ReceiverConfig(lookahead=11), recoverers=[rec], governor=gov)
    for i, p in enumerate(packets):
        rx.push(None if 60 <= i < 70 else p)
    rx.flush()
    d = [x.value for x in rx.decisions][60:70]
    if cap_ms is None:  # packet 70 reaches back over the whole 200 ms burst
        assert d == ["dred"] * 10
    elif cap_ms == 0:
        assert d == ["opus_plc"] * 10 and rec.stats["chunks_decoded"] == 0
    else:
        k = d.count("dred")
        # oldest slots fall back, the newest are DRED; at most 120 ms of features decoded
        assert d == ["opus_plc"] * (10 - k) + ["dred"] * k and 3 <= k <= 6, d
        assert rec.stats["capped"] == 10 - k and rec.stats["chunks_decoded"] <= 3


def test_recover_cap_argument_is_checked(dred_stream):
    from edge_dred.dred.recovery import DredRecoverer

    packets, dec, voc = dred_stream
    rec = DredRecoverer(dec, voc)
    ctx = types.SimpleNamespace(slot=30, future=packets[31:34], history=np.zeros(4096, np.int16), loss_run=1,
                                opus_plc=np.zeros(320, np.int16))
    assert rec.recover(ctx, max_ms=0) is None and rec.stats["chunks_decoded"] == 0
    assert rec.recover(ctx, max_ms=1040) is not None
    for bad in (-40, 20000, 1.5, True):
        with pytest.raises(ValueError):
            rec.recover(ctx, max_ms=bad)


# ---------------------------------------------------------------- configuration and CLI
def test_live_config_validates_and_builds_the_receiver(plc_models):
    for kw in ({"dred_ms": 30}, {"dred_ms": 2000}, {"dred_budget": 0}, {"recovery_ms": -20},
               {"decode_dred_ms": 100}, {"force_level": "turbo"}):
        with pytest.raises(LiveSetupError):
            LiveConfig(**kw)
    rx = build_receiver(LiveConfig(neural_plc=True, lbrr=True))
    assert rx.concealer is not None and rx.governor is not None and rx.lookahead == 1
    assert build_receiver(LiveConfig(neural_plc=True, governor=False)).governor is None
    assert build_receiver(LiveConfig()).governor is None  # nothing neural to govern
    assert LiveConfig(dred=True).receiver_config().effective_lookahead() == 3
    assert LiveConfig(dred=True, recovery_ms=40).receiver_config().effective_lookahead() == 2


def test_live_command_force_level_classic_runs_no_neural_code(tmp_path, capsys):
    rep_path = tmp_path / "l.json"
    rc = main(["live", "--device", "mock", "--no-pace", "--seconds", "1.0", "--loss", "20", "--burst", "3",
               "--dred-ms", "200", "--force-level", "classic", "--report", str(rep_path), "--status-interval", "0"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "governor  load" in out and "classic PLC (forced)" in out
    rep = json.loads(rep_path.read_text())
    g = rep["governor"]
    assert g["level"] == "classic" and g["forced"] and g["slots_by_level"]["classic"] == sum(rep["decisions"].values())
    assert "dred" not in rep["decisions"] and "neural_plc" not in rep["decisions"]
    assert rep["decisions"].get("opus_plc", 0) > 0
    assert rep["recovery"]["plugins"]["neural_plc"]["slots"] == 0 and rep["recovery"]["plugins"]["dred"]["slots"] == 0


def test_live_command_rejects_bad_neural_flags(capsys):
    base = ["live", "--device", "mock", "--no-pace", "--seconds", "0.1"]
    assert main(base + ["--force-level", "classic", "--no-governor"]) == 2
    assert main(base + ["--force-level", "short", "--no-dred", "--no-neural-plc"]) == 2
    assert "needs" in capsys.readouterr().err
    for bad in (["--dred-ms", "30"], ["--recovery-ms", "5000"], ["--force-level", "turbo"]):
        with pytest.raises(SystemExit):  # argparse rejects it with a usage message
            main(base + bad)


def test_broken_model_is_reported_at_start_up(truncated_plc_models, monkeypatch, capsys):
    opened = []
    monkeypatch.setattr(device_mod, "open_capture", lambda *a, **k: opened.append(a))
    rc = main(["live", "--device", "mock", "--no-pace", "--seconds", "0.2", "--no-dred", "--neural-plc",
               "--dred-ms", "0"])
    assert rc == 2 and not opened  # failed before any device was opened
    err = capsys.readouterr().err
    assert "neural recovery models" in err and "plc.bin is truncated" in err
