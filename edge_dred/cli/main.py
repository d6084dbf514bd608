"""The ``edge-dred`` command line.

Subcommands register themselves from the modules that implement them; this
file only parses arguments, reports errors cleanly and writes outputs
atomically (nothing half-written when something fails).
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

from .. import __version__
from ..constants import FRAME_MS
from ..outputs import check_outputs
from .args import (CLIError, _atomic_write_text, _build_loss, _dred_ms, _percent, _positive_int, _recovery_ms,
                   _red_distance, add_recovery_ms, add_retired_jitter_ms)

__all__ = ["main", "build_parser"]


def cmd_simulate(args: argparse.Namespace) -> int:
    from ..audio.wavio import load_audio, write_wav
    from ..loss import loss_stats
    from ..receiver import DEFAULT_RECOVERY_MS, build_receiver
    from ..sender import Sender, n_packets_for
    from ..simulate import simulate

    out_path = args.output or (Path(args.input).stem + ".recovered.wav" if args.input else "demo.recovered.wav")
    check_outputs({"-o": out_path, "--report": args.report}, inputs=[args.input, args.trace])
    notes: list[str] = []
    if args.input is None:
        from ..tools.demo_audio import make_demo_clip

        pcm, how = make_demo_clip()
        notes.append(how)
        src = "<demo clip>"
    else:
        loaded = load_audio(args.input)
        pcm, src = loaded.pcm, str(args.input)
        notes.extend(loaded.notes)
    bitrate = args.bitrate or (40000 if args.lbrr else 24000)
    dred_ms = args.dred_ms if args.dred_ms is not None else (1040 if args.dred else 0)
    try:
        sender = Sender(bitrate, lbrr=args.lbrr, complexity=args.complexity, expected_loss_pct=args.expected_loss,
                        dred_ms=dred_ms, dred_budget=args.dred_budget, red=args.red)
        # Shipped models, manifest-checked.  RED copies, like DRED, count within the recovery window.
        receiver = build_receiver(lbrr=args.lbrr, concealment=args.concealment, dred=bool(dred_ms),
                                  neural_plc=args.neural_plc,
                                  recovery_ms=DEFAULT_RECOVERY_MS if args.red and args.recovery_ms is None
                                  else args.recovery_ms)
    except ImportError as e:  # no TFLite runtime: say which package to install
        raise CLIError(f"--dred: {e}") from None
    n_packets = n_packets_for(len(pcm), sender.lookahead)
    loss = _build_loss(args)
    mask = loss.mask(n_packets)
    controller = None
    if args.playout == "adaptive":
        from ..playout import PlayoutController

        min_ms = receiver.lookahead * FRAME_MS
        if args.max_delay_ms < min_ms:
            raise CLIError(f"--max-delay-ms {args.max_delay_ms} is below the minimum delay ({min_ms} ms, "
                           "--recovery-ms)")
        controller = PlayoutController(min_ms, args.max_delay_ms)
    res = simulate(pcm, mask, sender, receiver, condition="simulate", playout=controller)
    playout = res.extra.get("playout")
    heard = res.extra.get("played", res.audio)
    outcomes = iter(res.extra["loss_outcomes"])

    recovery_ms = args.recovery_ms if args.recovery_ms is not None else (DEFAULT_RECOVERY_MS if dred_ms or args.red
                                                                        else None)
    stats = loss_stats(res.lost)
    counts = res.decision_counts()
    report = {
        "edge_dred_version": __version__,
        "input": src,
        "notes": notes,
        "output": str(out_path),
        "duration_s": len(pcm) / 16000,
        "loss_model": loss.describe(),
        "loss": stats,
        "bitrate_bps": bitrate,
        "measured_total_bitrate_bps": res.total_bitrate_bps,
        "lbrr": args.lbrr,
        "concealment": "neural_plc" if args.neural_plc else args.concealment,
        "decision_counts": counts,
        # What the neural PLC did inside its slots: libopus lead, losses left to libopus by the gate.
        "neural_plc": dict(receiver.concealer.stats) if receiver.concealer is not None else None,
        "red": ({"distance": args.red, "recovery_ms": recovery_ms,
                 "mean_redundant_bytes": float(np.mean(sender.red_bytes))} if args.red else None),
        "dred": ({"ms": dred_ms, "budget_bytes": sender.dred.budget_bytes, "recovery_ms": recovery_ms,
                  "mean_payload_bytes": float(np.mean(sender.dred_bytes)), "recovery": receiver.recoverers[0].stats}
                 if dred_ms else None),
        # Per lost packet: rebuilt in time, redundancy that came too late, or nothing but concealment.
        "loss_outcomes": {k: res.extra["loss_outcomes"].count(k) for k in ("in_time", "too_late", "concealed")},
        "playout": ({"mode": "adaptive", "aligned_with_input": False,
                     "note": "the output is time-scaled: not sample-aligned with the input by design",
                     **playout} if playout else
                    {"mode": "fixed", "aligned_with_input": True, "delay_ms": receiver.lookahead * FRAME_MS}),
        "packets": [
            {"seq": i, "t_ms": i * FRAME_MS, "bytes": int(b), "dred_bytes": int(db), "red_bytes": int(rb),
             "lost": bool(l), "decision": d, **({"outcome": next(outcomes)} if l else {})}
            for i, (b, db, rb, l, d) in enumerate(zip(res.packet_bytes, sender.dred_bytes, sender.red_bytes, res.lost,
                                                      res.decisions))
        ],
    }
    # Outputs are written only once everything succeeded, each atomically.
    if args.report:
        _atomic_write_text(args.report, json.dumps(report, indent=1) + "\n")
    write_wav(out_path, heard)
    for n in notes:
        print(f"note: {n}")
    print(f"input     {src}  ({report['duration_s']:.2f} s)")
    print(f"loss      {loss.describe()}: {stats['loss_rate'] * 100:.1f} % of {len(res.lost)} packets, "
          f"mean burst {stats['mean_burst']:.2f}, longest {stats['max_burst']}")
    print(f"stream    {res.total_bitrate_bps / 1000:.1f} kb/s measured (target {bitrate / 1000:.0f} kb/s"
          f"{', LBRR on' if args.lbrr else ''}{f', RED-{args.red} and' if args.red else ''}"
          f"{' DRED' if dred_ms else ''}{' on top' if args.red or dred_ms else ''})")
    if dred_ms:
        print(f"dred      {dred_ms} ms asked, {np.mean(sender.dred_bytes):.1f} bytes/packet on average "
              f"({np.mean(sender.dred_bytes) * 0.4:.1f} kb/s of the total), recovery look-ahead {recovery_ms} ms")
    if args.red:
        print(f"red       {args.red} earlier frame{'s' if args.red > 1 else ''} per packet, "
              f"{np.mean(sender.red_bytes):.1f} bytes/packet of copies and headers "
              f"({np.mean(sender.red_bytes) * 0.4:.1f} kb/s of the total), recovery look-ahead {recovery_ms} ms")
    print("decisions " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    oc = report["loss_outcomes"]
    print(f"lost      {oc['in_time']} rebuilt in time, {oc['too_late']} redundancy too late, "
          f"{oc['concealed']} concealed")
    if playout:
        print(f"playout   adaptive {playout['min_ms']}..{playout['max_ms']} ms: delay mean "
              f"{playout['mean_delay_ms']:.0f} ms, p95 {playout['p95_delay_ms']:.0f} ms; stretched {playout['stretched_ms']:.0f} ms, compressed "
              f"{playout['compressed_ms']:.0f} ms (output time-scaled: not sample-aligned with the input)")
    if receiver.concealer is not None:
        st = receiver.concealer.stats
        print(f"neural    {st['losses']} losses, {st['gated_losses']} left to libopus (unvoiced start); "
              f"slots: {st['lead_slots']} libopus lead, {st['gated_slots']} gated ({st['shaped_slots']} shaped), "
              f"{st['slots'] - st['lead_slots'] - st['gated_slots']} vocoder")
    print(f"wrote     {out_path}" + (f" and {args.report}" if args.report else ""))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.estimate:
        from ..tools.estimate import estimate_boards

        # Emulation is ~100x slower than the board: 1 s of audio (50 packets) per stage by default.
        names = [n.strip() for n in args.estimate.split(",") if n.strip()]
        print(estimate_boards(names, seconds=args.seconds or 1.0, wheel=args.wheel))
        return 0
    from ..tools.bench import run_bench

    print(run_bench(seconds=args.seconds or 10.0, repeat=args.repeat))
    return 0


def cmd_boards(args: argparse.Namespace) -> int:
    from ..boards import detect_board, list_boards

    here, how = detect_board(args.board)
    print("| board | arch | cpu | kernels | period ms | DRED ms | complexity |")
    print("|---|---|---|---|---:|---:|---:|")
    for b in list_boards():
        mark = " (this machine)" if b.name == here.name else ""
        print(f"| {b.name}{mark} | {b.arch} | {b.cpu} | {', '.join(b.kernel_variants)} | {b.period_ms} | "
              f"{b.dred_ms} | {b.complexity} |")
    print(f"\nselected: {here.name} ({here.description}), by {how}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge-dred", description="Neural packet-loss recovery for live Opus voice.")
    p.add_argument("--version", action="version", version=f"edge-dred {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    s = sub.add_parser("simulate", help="encode a file, lose packets, recover, write the result")
    s.add_argument("input", nargs="?", help="input audio (WAV; FLAC with soundfile). Default: a generated speech clip")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--trace", help="loss trace file: one 0/1 per 20 ms packet, 1 = lost")
    g.add_argument("--loss", type=_percent, help="random loss percentage")
    s.add_argument("--burst", type=float, help="mean burst length in packets (Gilbert-Elliott) with --loss")
    s.add_argument("--seed", type=int, default=0, help="random seed for the loss model (default 0)")
    s.add_argument("--lbrr", action="store_true", help="send and use Opus in-band FEC (LBRR)")
    s.add_argument("--bitrate", type=_positive_int, help="total bit rate in b/s (default 24000, 40000 with --lbrr)")
    s.add_argument("--complexity", type=int, default=9, choices=range(0, 11), metavar="0..10",
                   help="Opus encoder complexity: higher is better quality for more CPU (default 9)")
    s.add_argument("--expected-loss", type=int, default=20, metavar="PCT",
                   help="loss percentage the encoder sizes LBRR for (default 20)")
    s.add_argument("--concealment", choices=("opus_plc", "zeros"), default="opus_plc",
                   help="what fills a lost packet nothing recovers: libopus's concealment (opus_plc, default) "
                        "or silence (zeros)")
    s.add_argument("--neural-plc", action="store_true",
                   help="conceal holes with the neural PLC (predicted features + vocoder) instead of --concealment")
    s.add_argument("--dred", action="store_true", help="send Deep REDundancy (1040 ms unless --dred-ms) and recover "
                   "lost packets from it")
    s.add_argument("--dred-ms", type=_dred_ms, metavar="MS",
                   help="DRED redundancy depth per packet, 40..1040 ms (implies --dred; 0 disables; default 1040)")
    s.add_argument("--dred-budget", type=_positive_int, default=80, metavar="BYTES",
                   help="largest DRED payload per packet (default 80: about 32 kb/s on top of Opus)")
    s.add_argument("--red", type=_red_distance, default=0, metavar="N",
                   help="send RFC 2198 RED as WebRTC does: copies of the N (1..3) earlier frames in every packet, on "
                        "top of --bitrate (and of DRED); the receiver decodes a lost frame's copy from a later packet "
                        "within --recovery-ms (default 60 with RED)")
    add_recovery_ms(s)
    add_retired_jitter_ms(s)
    s.add_argument("--playout", choices=("fixed", "adaptive"), default="fixed",
                   help="fixed: the delay stays --recovery-ms; adaptive: it follows the loss bursts between "
                        "--recovery-ms and --max-delay-ms, grown and shrunk by time-scaling (the output is then not "
                        "sample-aligned with the input; --report has the delay trace)")
    s.add_argument("--max-delay-ms", type=_recovery_ms, default=200, metavar="MS",
                   help="delay budget of the adaptive playout (default 200)")
    s.add_argument("-o", "--output", help="output WAV (default: <input>.recovered.wav)")
    s.add_argument("--report", help="write a JSON report with every packet's decision and DRED bytes")
    s.set_defaults(func=cmd_simulate)

    b = sub.add_parser("bench", help="time each stage per 20 ms packet and print real-time factors")
    b.add_argument("--seconds", type=float, help="seconds of audio per measurement (default 10; 1 with --estimate)")
    b.add_argument("--repeat", type=_positive_int, default=3, metavar="N",
                   help="time each stage N times and keep each packet's fastest run (default 3)")
    b.add_argument("--estimate", metavar="BOARD[,BOARD]",
                   help="instead of timing here, count ARM instructions per stage under qemu on each board's core "
                        "(cross-built wheel from scripts/build_wheels.sh) and estimate its real-time factor")
    b.add_argument("--wheel", help="with --estimate: the ARM wheel to use (default: newest in dist/arm)")
    b.set_defaults(func=cmd_bench)

    bo = sub.add_parser("boards", help="list the board configs and the one detected here")
    bo.add_argument("--board", help="force a board (name or TOML path); also EDGE_DRED_BOARD")
    bo.set_defaults(func=cmd_boards)

    # Subcommands implemented elsewhere register themselves (eval; send/recv/live; inspect).
    import importlib

    for mod in ("edge_dred.evaluate.cli", "edge_dred.cli.live", "edge_dred.artifacts.cli"):
        try:
            importlib.import_module(mod).register(sub)
        except ModuleNotFoundError as e:
            if e.name != mod:  # a real missing dependency inside the module
                raise
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    def show_warning(message, category, filename, lineno, file=None, line=None):
        print(f"edge-dred {args.command}: warning: {message}", file=sys.stderr)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_warning
            return int(args.func(args) or 0)
    except (CLIError, ValueError, OSError) as e:
        print(f"edge-dred {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"edge-dred {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
