"""Live sessions with the adaptive playout (mock audio, injected bursts)."""
import pytest

from edge_dred.audio.device import MockDevice
from edge_dred.live import LiveConfig, LiveSession, LiveSetupError
from edge_dred.loss import GilbertElliott
from edge_dred.transport.impair import Impairment

from conftest import voiced


def test_live_session_with_bursts_grows_the_delay_without_gaps():
    src = voiced(8.0, seed=6)
    cap = MockDevice("capture", source=src, loop=False)
    play = MockDevice("playback")
    imp = Impairment(GilbertElliott(25, 7, seed=5), seed=6)
    cfg = LiveConfig(lbrr=True, dred=True, dred_ms=1040, recovery_ms=60, max_delay_ms=160, governor=False)
    sess = LiveSession(cap, play, cfg, imp)
    rep = sess.run(8.0)
    assert rep["accounting"]["ok"], rep["accounting"]
    po = rep["playout"]
    assert po["underruns"] == 0 and po["min_ms"] == 60 and po["max_ms"] == 160
    assert po["trace"] and po["p95_delay_ms"] <= 160
    assert max(t["target_ms"] for t in po["trace"]) > 60 and po["stretched_ms"] > 0   # the bursts moved it
    assert "dred" in rep["decisions"]
    assert len(play.recorded) == rep["frames_played"] * 320      # 20 ms every period: no gaps
    line = sess.status_line()
    assert "delay " in line and "ms (" in line


def test_live_playout_budget_below_the_minimum_is_a_setup_error():
    with pytest.raises(LiveSetupError):
        LiveConfig(recovery_ms=100, max_delay_ms=60)
