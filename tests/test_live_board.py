"""The board's [runtime] threads and pin_cores reach the live sessions."""
import os
import threading

import pytest

from edge_dred.audio.device import MockDevice
from edge_dred.boards import load_board
from edge_dred.live import LiveConfig, LiveSession, LiveSetupError, dred_redundancy, pin_audio_thread

from conftest import voiced

needs_affinity = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no sched_setaffinity here")


def _in_thread(fn):
    """Run ``fn`` in a fresh thread (pinning must not leak into the test runner's thread)."""
    out: dict = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            out["error"] = e

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def test_board_runtime_fields_reach_the_live_config():
    cfg = LiveConfig.from_board(load_board("rpi4"))
    assert cfg.threads == load_board("rpi4").threads == 1 and cfg.pin_cores == (3,)
    assert LiveConfig.from_board(load_board("x86_64")).pin_cores == ()
    with pytest.raises(LiveSetupError, match="threads"):
        LiveConfig(threads=0)
    with pytest.raises(LiveSetupError, match="pin_cores"):
        LiveConfig(pin_cores=(-1,))


@needs_affinity
def test_pin_audio_thread_pins_the_calling_thread_and_restores_it():
    def body():
        before = os.sched_getaffinity(0)
        core = min(before)
        cores, restore = pin_audio_thread((core, 100000))  # a core this machine lacks is left out
        pinned = os.sched_getaffinity(0)
        restore()
        return before, core, cores, pinned, os.sched_getaffinity(0)

    before, core, cores, pinned, after = _in_thread(body)
    assert cores == [core] and pinned == {core} and after == before

    def absent():
        before = os.sched_getaffinity(0)
        cores, restore = pin_audio_thread((100000,))
        restore()
        return cores, before == os.sched_getaffinity(0)

    assert _in_thread(absent) == (None, True)
    assert pin_audio_thread(())[0] is None


@needs_affinity
def test_live_session_runs_its_audio_on_the_pinned_core():
    core = min(os.sched_getaffinity(0))

    def body():
        seen = []
        play = MockDevice("playback")
        orig = play.play
        play.play = lambda frame: (seen.append(os.sched_getaffinity(0)), orig(frame))[1]
        sess = LiveSession(MockDevice("capture", source=voiced(0.2), loop=False), play, LiveConfig(pin_cores=(core,)))
        rep = sess.run(0.2)
        return rep, seen, os.sched_getaffinity(0)

    before = os.sched_getaffinity(0)
    rep, seen, after = _in_thread(body)
    assert rep["audio_cores"] == [core] and seen and all(s == {core} for s in seen)
    assert after == before


def test_threads_set_the_dred_encoder_interpreter():
    pytest.importorskip("ai_edge_litert", reason="no TFLite runtime")
    hook = dred_redundancy(LiveConfig(dred_ms=200, threads=2))
    assert hook.__self__.encoder.num_threads == 2
