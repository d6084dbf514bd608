"""edge_dred.tools.estimate.recommend_runtime: a board's default Opus complexity and DRED depth from counted
stages (fake counts, no qemu), and the bench rows it reads (``run_bench(choices=True)``)."""
from __future__ import annotations

import re

import numpy as np
import pytest

from edge_dred.boards import load_board
from edge_dred.tools import bench
from edge_dred.tools import estimate as est

STEP, CODE, NEWEST = bench.DRED_STAGES
IPS = 1e9   # 20 M instructions per 20 ms packet: sender budget 1.0 M, receiver budget 2.0 M


def stages(opus=lambda c: 100e3 * (c + 1), step=100e3, burst=800e3, chunk=100e3) -> list[est.StageCount]:
    """Counted stages with these medians (instructions per packet); ``step=None`` leaves the TFLite step out."""
    med = {bench.SENDER_FEATURES: 100e3, CODE: 50e3, bench.OPUS_DECODE: 100e3, bench.OPUS_PLC: 100e3, NEWEST: 200e3, bench.VOCODER: 500e3,
           bench.POSTFILTER: 100e3, bench.BURST_STAGES[0]: burst / 4, bench.BURST_STAGES[1]: burst * 3 / 4,
           bench.DRED_CHUNK: chunk,
           **{bench.opus_complexity_stage(c): opus(c) for c in bench.OPUS_COMPLEXITIES}}
    if step is not None:
        med[STEP] = step
    return [est.StageCount(side, stage, np.array([v * 0.9, v, v * 1.5])) for (side, stage), v in med.items()]


def test_complexity_is_the_highest_whose_sender_total_fits():
    # sender(c) = 100 k features + 50 k coding + 100 k step + 100 k (c + 1) <= 1.0 M  ->  c <= 6
    rec = est.recommend_runtime(IPS, stages())
    assert rec.complexity == 6
    assert rec.sender_rtf == pytest.approx(0.0475)
    assert "complexity 6: sender 0.048 <= 0.05" in rec.reason and "not counted" not in rec.reason


def test_an_uncounted_encoder_step_is_left_out_and_said():
    rec = est.recommend_runtime(IPS, stages(step=None))
    assert rec.complexity == 7                      # 150 k + 100 k (c + 1) <= 1.0 M
    assert "TFLite encoder step not counted" in rec.reason


def test_complexity_zero_when_nothing_fits():
    rec = est.recommend_runtime(IPS, stages(opus=lambda c: 2e6))
    assert rec.complexity == 0 and rec.sender_rtf > est.SENDER_RTF_BUDGET
    assert "> even at 0" in rec.reason


def test_depth_is_the_deepest_whose_heaviest_slot_fits():
    # the slot before the hole: 100 k decode + 800 k burst start + 100 k parse (newest 200 k less a chunk);
    # the hole's first slot: 100 k PLC + 500 k vocoder + 100 k postfilter + 100 k per chunk <= 2.0 M
    rec = est.recommend_runtime(IPS, stages(), window_ms=1040)
    assert rec.dred_ms == 520                       # 13 chunks at once; 14 would need 2.1 M
    assert rec.receiver_rtf == pytest.approx(0.1)
    assert "dred_ms 520" in rec.reason and "13 chunks at once" in rec.reason
    assert "burst start 0.050 in the slot before" in rec.reason


def test_depth_beyond_the_playout_window_costs_nothing_more():
    # a 200 ms window decodes at most 6 chunks at once: 1.3 M fits, so the full 1.04 s does
    rec = est.recommend_runtime(IPS, stages(), window_ms=200)
    assert rec.dred_ms == 1040 and rec.receiver_rtf == pytest.approx(0.065)
    # with an unbounded window every chunk counts: 0.7 M + 26 x 50 k fits, 0.7 M + 26 x 60 k does not
    assert est.recommend_runtime(IPS, stages(chunk=50e3), window_ms=1040).dred_ms == 1040
    assert est.recommend_runtime(IPS, stages(chunk=60e3), window_ms=1040).dred_ms == 840


def test_the_burst_start_slot_can_be_the_heaviest():
    # a 60 ms window: the hole's first slot 0.9 M, the slot before it 1.0 M
    rec = est.recommend_runtime(IPS, stages(), window_ms=60)
    assert rec.dred_ms == 1040 and rec.receiver_rtf == pytest.approx(0.05)


def test_depth_zero_when_a_burst_start_alone_is_over_budget():
    rec = est.recommend_runtime(IPS, stages(burst=2e6))
    assert rec.dred_ms == 0 and rec.receiver_rtf > est.RECEIVER_RTF_BUDGET
    # the slot before the hole: 100 k decode + 2 M burst start + 100 k parse; the first slot 0.8 M
    assert "even at 40 ms" in rec.reason and "with the burst start, 0.110" in rec.reason
    assert "first slot 0.040" in rec.reason


def test_a_faster_board_never_gets_less():
    counted = stages()
    recs = [est.recommend_runtime(ips, counted) for ips in (0.25e9, 0.5e9, 1e9, 2e9, 4e9, 8e9)]
    assert [r.complexity for r in recs] == sorted(r.complexity for r in recs)
    assert [r.dred_ms for r in recs] == sorted(r.dred_ms for r in recs)
    assert recs[0].dred_ms == 0 and recs[-1].dred_ms == 1040 and recs[-1].complexity == 10


def test_missing_stage_or_bad_rate_is_a_clear_error():
    counted = [s for s in stages() if (s.side, s.stage) != bench.BURST_STAGES[1]]
    with pytest.raises(est.EstimateError, match="vocoder priming"):
        est.recommend_runtime(IPS, counted)
    with pytest.raises(est.EstimateError, match="instructions_per_second"):
        est.recommend_runtime(0.0, stages())
    with pytest.raises(est.EstimateError, match="window_ms"):
        est.recommend_runtime(IPS, stages(), window_ms=-40)


def test_format_estimate_prints_the_sweep_on_one_line_and_the_recommendation():
    board = load_board("rpi4")
    info = dict(cpu="cortex-a72", variant="neon", numpy="1.24.2", total_insns=3e9, wall_s=10.0)
    text = est.format_estimate(board, stages(), info)
    assert "| opus complexity |" not in text
    assert "Opus encode 24 kb/s by complexity, k instr/packet (median): 0: 100, 1: 200," in text
    assert re.search(rf"recommended defaults: complexity \d+, dred_ms \d+ \(config: complexity {board.complexity}, "
                     rf"dred_ms {board.dred_ms}\); complexity", text)
    # the choice rows are not in the per-side sums
    assert not re.search(r"^dred depth:", text, re.M)


def test_bench_choices_rows_are_measured_and_not_summed():
    table = bench.run_bench(seconds=1.0, repeat=1, choices=True)
    rows = est.parse_bench_rows(table)
    for key in (*bench.BURST_STAGES, bench.DRED_CHUNK, *map(bench.opus_complexity_stage, bench.OPUS_COMPLEXITIES)):
        assert key in rows, key
    assert not re.search(r"^(dred depth|opus complexity) real-time factor", table, re.M)
    plain = est.parse_bench_rows(bench.run_bench(seconds=1.0, repeat=1))
    assert not any(side in bench.CHOICE_SIDES for side, _ in plain)


@pytest.mark.parametrize("name", ["rpi4", "rpi5", "rpi3bplus", "rpi_zero2w"])
def test_board_defaults_are_valid(name):
    b = load_board(name)
    assert b.dred_ms % 40 == 0 and 0 <= b.dred_ms <= 1040 and 0 <= b.complexity <= 10


def test_dred_asked_for_on_a_board_without_it_decodes_and_sends_the_full_depth():
    from types import SimpleNamespace

    from edge_dred.cli.live import _neural_settings

    none = SimpleNamespace(name="weak", dred_ms=0)
    full = SimpleNamespace(name="strong", dred_ms=600)
    args = dict(neural_plc=None, force_level=None, governor=True, recovery_ms=None, max_delay_ms=None,
                dred_ms=None, dred_budget=80)
    default = _neural_settings(SimpleNamespace(dred=None, **args), none)
    assert not default["dred"] and not default["neural_plc"] and default["dred_ms"] == 0
    assert "decode_dred_ms" not in default                    # the board's 0 stands
    asked = _neural_settings(SimpleNamespace(dred=True, **args), none)
    assert asked["dred"] and asked["dred_ms"] == 1040 and asked["decode_dred_ms"] == 1040
    strong = _neural_settings(SimpleNamespace(dred=True, **args), full)
    assert strong["dred_ms"] == 600 and "decode_dred_ms" not in strong   # LiveConfig.from_board takes the board's
    send = _neural_settings(SimpleNamespace(dred_ms=None, dred_budget=80), none)
    assert send["dred_ms"] == 0                                # `send` follows the board unless --dred-ms
