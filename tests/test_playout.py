import numpy as np
import pytest

from edge_dred.loss import GilbertElliott
from edge_dred.playout import DEFAULT_MAX_DELAY_MS, Playout, PlayoutController, warp_like
from edge_dred.receiver import Receiver, ReceiverConfig
from edge_dred.sender import Sender
from edge_dred.simulate import run_condition, simulate

from conftest import voiced


def _feed(ctl: PlayoutController, pattern, repeat: int = 1) -> list[int]:
    out = []
    for _ in range(repeat):
        for lost in pattern:
            ctl.observe(bool(lost))
            out.append(ctl.target_ms)
    return out


def _burst_every(burst: int, period: int) -> list[bool]:
    return [True] * burst + [False] * (period - burst)


def test_clean_network_stays_at_the_minimum():
    ctl = PlayoutController(60, 200)
    assert set(_feed(ctl, [False] * 3000)) == {60}
    assert "clean" in ctl.reason


def test_grows_under_bursts_then_decays_on_a_clean_network():
    ctl = PlayoutController(60, 200)
    targets = _feed(ctl, _burst_every(8, 100), repeat=20)   # 160 ms bursts every 2 s for 40 s
    assert max(targets) >= 160 and targets[-1] >= 160
    assert "bursts" in ctl.reason
    after = _feed(ctl, [False] * 50 * 60)                     # a clean minute
    assert after[-1] == 60
    assert all(b <= a for a, b in zip(after, after[1:]))       # only down while nothing is lost


def test_isolated_short_bursts_do_not_add_delay():
    ctl = PlayoutController(60, 200)
    # Bursts the minimum already covers (3 packets) cost nothing to recover: no reason to wait.
    assert set(_feed(ctl, _burst_every(3, 20), repeat=100)) == {60}


def test_never_exceeds_the_budget_or_the_dred_depth():
    ctl = PlayoutController(60, 140)
    targets = _feed(ctl, _burst_every(40, 60), repeat=30)
    assert max(targets) == 140 and all(60 <= t <= 140 for t in targets)
    assert "budget" in ctl.reason
    ctl.set_redundancy_ms(100)
    assert ctl.target_ms == 100 and "DRED depth" in ctl.reason
    ctl.set_redundancy_ms(0)   # no DRED: waiting buys nothing
    assert ctl.target_ms == 60


def test_rare_long_bursts_are_not_waited_for():
    # 100 ms bursts every half second, and one of 240 ms every 10 s: waiting 100 ms recovers the
    # frequent ones; the rare long one is not worth holding 200 ms all the time.
    block = _burst_every(5, 25) * 19 + _burst_every(12, 25)
    ctl = PlayoutController(60, 200)
    targets = _feed(ctl, block, repeat=8)
    assert max(targets[len(block):]) == 100 and targets[-1] == 100
    assert "not worth" in ctl.reason
    # The same long bursts every 2 s are worth the whole budget.
    ctl = PlayoutController(60, 200)
    assert _feed(ctl, (_burst_every(5, 25) * 3 + _burst_every(12, 25)), repeat=40)[-1] == 200


def test_jitter_raises_the_floor_and_decays():
    ctl = PlayoutController(60, 200)
    ctl.observe_jitter(45.0)
    assert ctl.target_ms == 120 and "jitter" in ctl.reason
    _feed(ctl, [False] * 50 * 60)
    assert ctl.target_ms == 60
    with pytest.raises(ValueError):
        ctl.observe_jitter(float("nan"))
    with pytest.raises(ValueError):
        PlayoutController(100, 60)


class _Script:
    """Controller stand-in with a scripted target."""

    def __init__(self, targets):
        self.targets, self.min_ms, self.max_ms, self.reason = targets, 60, 200, "scripted"
        self.target_ms, self._i = targets[0], 0

    def observe(self, lost):
        self.target_ms = self.targets[min(self._i, len(self.targets) - 1)]
        self._i += 1


def test_playout_follows_the_target_without_gaps():
    pcm = voiced(6.0, seed=2)
    packets = Sender(24000).encode_stream(pcm)
    n = len(packets)
    script = [60] * 50 + [160] * 150 + [60] * (n - 200)
    player = Playout(Receiver(ReceiverConfig()), _Script(script))
    out = [player.tick(p) for p in packets]
    played = [o for o in out if o is not None]
    assert out[:3] == [None] * 3 and all(o.shape == (320,) for o in played)   # 20 ms every period once started
    assert player.underruns == 0
    d = np.asarray(player.delays_ms)
    assert d.min() >= 60 - 1e-9 and d.max() <= 160 + 1e-9
    assert d[150:200].mean() > 100                      # it grew towards the target...
    assert d[-20:].max() < 70                            # ...and came back
    assert any(e.samples > 0 for e in player.events) and any(e.samples < 0 for e in player.events)
    # The decided slots are exactly the plain receiver's; time-scaling undone is the media itself.
    heard = np.concatenate(played + player.drain())
    media = np.concatenate(player.media)
    n = media.size + sum(e.samples for e in player.events)
    assert 0 <= heard.size - n < 320 and not heard[n:].any()   # whole periods: the last one padded
    heard = heard[:n]
    assert warp_like(media, player.events).size == n
    # No splice: sample steps stay within the signal's own.
    assert np.abs(np.diff(heard.astype(float))).max() <= 1.2 * np.abs(np.diff(media.astype(float))).max()


def test_adaptive_simulation_is_deterministic_and_reports_delay():
    pcm = voiced(4.0, seed=5)
    mask = GilbertElliott(20, 6, seed=7).mask(len(pcm) // 320 + 8)
    a = run_condition(pcm, mask, "lbrr+dred_adaptive")
    b = run_condition(pcm, mask, "lbrr+dred_adaptive")
    assert np.array_equal(a.extra["played"], b.extra["played"]) and np.array_equal(a.audio, b.audio)
    assert a.extra["playout"] == b.extra["playout"]
    rep = a.extra["playout"]
    assert rep["max_ms"] == DEFAULT_MAX_DELAY_MS and rep["underruns"] == 0
    assert rep["p95_delay_ms"] <= DEFAULT_MAX_DELAY_MS
    assert rep["trace"] and {"t_ms", "delay_ms", "target_ms"} <= set(rep["trace"][0])
    assert a.audio.shape == pcm.shape


def test_fixed_playout_matches_the_receiver_without_a_playout():
    pcm = voiced(3.0, seed=1)
    mask = GilbertElliott(20, 3, seed=2).mask(len(pcm) // 320 + 8)
    sender = Sender(40000, lbrr=True)
    ref = simulate(pcm, mask, sender, Receiver(ReceiverConfig(lbrr=True, lookahead=3)))
    # A playout that never moves the delay decides every slot with the same look-ahead.
    rx = Receiver(ReceiverConfig(lbrr=True))
    packets = sender.encode_stream(pcm)
    player = Playout(rx, _Script([60] * 10_000))
    out = [player.tick(None if lost else p) for p, lost in zip(packets, mask)]
    heard = np.concatenate([o for o in out if o is not None] + player.drain())
    assert np.array_equal(heard[sender.lookahead:sender.lookahead + pcm.size], ref.audio)
    assert not player.events


def test_late_dred_accounting():
    pcm = voiced(4.0, seed=3)
    n = len(pcm) // 320 + 8
    mask = np.zeros(n, bool)
    mask[60:70] = True    # 200 ms burst
    res = run_condition(pcm, mask, "lbrr+dred")
    oc = res.extra["loss_outcomes"]
    assert len(oc) == 10
    # 60 ms window: the last three slots of the burst are rebuilt in time, the rest only too late.
    assert oc == ["too_late"] * 7 + ["in_time"] * 3
    # A burst longer than the DRED depth: the oldest slots were never covered.
    short = Sender(40000, lbrr=True, dred_ms=120)
    from edge_dred.receiver import build_receiver

    res = simulate(pcm, mask, short, build_receiver(lbrr=True, dred=True))
    oc = res.extra["loss_outcomes"]
    assert oc[0] == "concealed" and oc[-1] == "in_time" and "too_late" in oc
    # The adaptive playout turns some of the late ones into recovered ones once it has learnt the bursts.
    mask2 = np.zeros(n, bool)
    for s in range(20, n - 20, 25):
        mask2[s:s + 8] = True
    fixed = run_condition(pcm, mask2, "lbrr+dred").extra["loss_outcomes"]
    adapt = run_condition(pcm, mask2, "lbrr+dred_adaptive").extra["loss_outcomes"]
    assert adapt.count("in_time") > fixed.count("in_time")
