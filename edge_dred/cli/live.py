"""``edge-dred send``, ``recv`` and ``live``: the live-voice commands.

Registered into the main parser by :func:`register` (``edge_dred.cli.main`` calls it).

Devices: ``--device`` takes an ALSA PCM name (default: the board config's),
``file:PATH.wav`` or ``mock``.  ALSA needs ``pip install 'edge-dred[alsa]'``.

Neural recovery: ``send``/``live`` carry DRED (``--dred-ms``, default the board's
``dred_ms``); ``recv``/``live`` use it (``--dred``) and the neural PLC
(``--neural-plc``), both on by default where the board config gives a DRED
length (``dred_ms`` > 0: the board sustains neural recovery), under the load
governor (``--governor``, ``--force-level``).

Untrusted network: ``recv`` binds 127.0.0.1 unless ``--listen`` (or the SDP's
connection address) says otherwise, plays one sender only (the first, or the
one ``--peer``/the SDP names; see :mod:`edge_dred.transport.source`), and with
SRTP (``--srtp``/``--srtp-key``/an SDP ``a=crypto`` key) drops whatever does not
authenticate.  ``docs/security.md`` has the details.
"""
from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
from typing import Any

from ..outputs import check_outputs
from .args import (_atomic_write_text, _build_loss, _dred_ms, _percent, _positive_int, _recovery_ms, _red_distance,
                   add_recovery_ms, number_arg)

__all__ = ["register", "cmd_send", "cmd_recv", "cmd_live", "parse_hostport"]


class LiveCLIError(ValueError):
    """A user-facing error of the live commands."""


def parse_hostport(s: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``PORT`` -> (host, port)."""
    if not isinstance(s, str) or not s or len(s) > 300:
        raise LiveCLIError(f"bad address {s!r}")
    if s.startswith("["):
        host, _, port = s[1:].partition("]:")
    elif s.count(":") == 1:
        host, _, port = s.partition(":")
    elif s.isdigit():
        host, _, port = default_host, ":", s
    else:
        raise LiveCLIError(f"expected HOST:PORT, got {s!r}")
    try:
        p = int(port)
    except ValueError:
        raise LiveCLIError(f"bad port in {s!r}") from None
    if not 0 <= p <= 65535 or not host:
        raise LiveCLIError(f"bad address {s!r}")
    return host, p


_pct50 = number_arg(float, "a percentage", lambda v: 0.0 <= v <= 50.0, "percentage must be in [0, 50]")
_seconds = number_arg(float, "seconds", lambda v: 0.0 < v <= 7 * 24 * 3600, "seconds must be in (0, 604800]")
_dred_budget = number_arg(int, "bytes", lambda v: 1 <= v <= 1000, "DRED budget must be 1..1000 bytes")
_LEVELS = ("full", "short", "classic")
_SUITES = ("AES_CM_128_HMAC_SHA1_80", "AEAD_AES_128_GCM")


def _common(p: argparse.ArgumentParser, impair_send: bool) -> None:
    p.add_argument("--board", help="board config (name or TOML path); default: detected, or EDGE_DRED_BOARD")
    p.add_argument("--device", help="audio device: ALSA PCM name, file:PATH.wav or mock (default: board config)")
    p.add_argument("--seconds", type=_seconds, default=10.0, help="how long to run (default 10)")
    p.add_argument("--record", metavar="FILE.opus", help="record the stream as Ogg Opus")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--trace", help="loss trace file: one 0/1 per 20 ms packet, 1 = lost")
    g.add_argument("--loss", type=_percent, help="random loss percentage")
    p.add_argument("--burst", type=float, help="mean burst length in packets (Gilbert-Elliott) with --loss")
    p.add_argument("--seed", type=int, default=0, help="seed of the impairment (default 0)")
    if impair_send:
        p.add_argument("--reorder", type=_pct50, default=0.0, metavar="PCT", help="percentage of packets held back")
        p.add_argument("--reorder-gap", type=_positive_int, default=1, metavar="N",
                       help="packet times a reordered packet is held (default 1)")
        p.add_argument("--duplicate", type=_pct50, default=0.0, metavar="PCT", help="percentage of packets sent twice")
    p.add_argument("--lbrr", action=argparse.BooleanOptionalAction, default=True,
                   help="Opus in-band FEC (LBRR), sent and used (default on)")
    p.add_argument("--bitrate", type=_positive_int, help="total bit rate (default 40000 with LBRR, else 24000)")
    p.add_argument("--jitter-ms", type=float, default=10.0, help="jitter buffer target delay (default 10 ms)")
    p.add_argument("--pace", action=argparse.BooleanOptionalAction, default=None,
                   help="hold real time with the system clock (default: on for file/mock devices; needed for "
                        "ALSA file/null plugins, which do not block)")
    p.add_argument("--status-interval", type=float, default=1.0, help="seconds between status lines (0 = none)")
    p.add_argument("--report", help="write a JSON report (every packet accounted for)")
    p.add_argument("--payload-type", type=int, default=96, help="RTP payload type (default 96)")
    p.add_argument("--red-pt", type=int, metavar="PT",
                   help="RTP payload type of RFC 2198 RED, sent with --red and always accepted (default 97, or 96 "
                        "when --payload-type is 97; browsers use 63)")
    p.add_argument("--monitor", action=argparse.BooleanOptionalAction, default=False,
                   help="artifact monitor (hum, hiss, distortion, clicks) on the captured/played audio in a "
                        "low-priority thread; in the status line and the report (default off: it still flags "
                        "many seconds of ordinary recordings, see docs/artifact_monitor.md)")


def _red_send_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--red", type=_red_distance, default=0, metavar="N",
                   help="send RFC 2198 RED: copies of the N (1..3) earlier frames in every packet, on top of "
                        "--bitrate and DRED (default 0 = plain Opus)")


def _dred_send_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dred-ms", type=_dred_ms, metavar="MS",
                   help="DRED redundancy depth carried in every packet, 40..1040 ms, 0 = off "
                        "(default: the board config's dred_ms)")
    p.add_argument("--dred-budget", type=_dred_budget, default=80, metavar="BYTES",
                   help="largest DRED payload per packet, on top of --bitrate (default 80)")


def _neural_recv_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dred", action=argparse.BooleanOptionalAction, default=None,
                   help="recover holes from DRED in arriving packets (default: on where the board config has a "
                        "DRED length)")
    p.add_argument("--neural-plc", action=argparse.BooleanOptionalAction, default=None,
                   help="conceal what nothing recovers with the neural PLC (default: on where the board config has "
                        "a DRED length)")
    add_recovery_ms(p)
    p.add_argument("--max-delay-ms", type=_recovery_ms, metavar="MS",
                   help="adaptive playout: the receiver's delay follows the loss bursts between --recovery-ms and "
                        "this budget (time-scaled, no gaps); default: fixed look-ahead")
    p.add_argument("--governor", action=argparse.BooleanOptionalAction, default=True,
                   help="step neural recovery down when the measured load is too high (default on)")
    p.add_argument("--force-level", choices=_LEVELS,
                   help="pin the governor's level: full, short (shorter DRED) or classic (no neural work); testing")


def register(sub: Any) -> None:
    """Add ``send``, ``recv`` and ``live`` to the ``edge-dred`` subparsers."""
    s = sub.add_parser("send", help="capture -> Opus (+LBRR) -> RTP over UDP, with optional impairment")
    s.add_argument("--dest", required=True, help="HOST:PORT of the receiver")
    s.add_argument("--sdp", metavar="FILE.sdp", help="write the stream's SDP (for ffmpeg and other players)")
    s.add_argument("--srtp", choices=_SUITES, metavar="SUITE",
                   help=f"SRTP with a fresh key, written to --sdp (a=crypto) and/or --srtp-key: {', '.join(_SUITES)}")
    s.add_argument("--srtp-key", metavar="FILE",
                   help="SRTP key file ('SUITE inline:BASE64'): written with --srtp, else read")
    _common(s, impair_send=True)
    _dred_send_args(s)
    _red_send_args(s)
    s.set_defaults(func=cmd_send)

    r = sub.add_parser("recv", help="RTP over UDP -> jitter buffer -> recovery -> playback")
    r.add_argument("--listen", help="HOST:PORT to bind (port 0: any; printed); default: the SDP's connection "
                                    "address and port, else 127.0.0.1:5004 (0.0.0.0:PORT accepts other hosts)")
    r.add_argument("--peer", metavar="HOST[:PORT]",
                   help="play only this sender (default: lock onto the first sender's address and SSRC)")
    r.add_argument("--sdp", metavar="FILE.sdp",
                   help="the sender's SDP: address/port to bind, payload type, SSRC to lock onto, SRTP key")
    r.add_argument("--srtp-key", metavar="FILE", help="SRTP key file ('SUITE inline:BASE64')")
    r.add_argument("--idle-timeout", type=float, default=1.0, help="stop after this long without packets")
    r.add_argument("--wait", type=float, default=10.0, help="give up if nothing arrives within this long")
    _common(r, impair_send=False)
    _neural_recv_args(r)
    r.set_defaults(func=cmd_recv)

    lv = sub.add_parser("live", help="full duplex on one board: capture -> encode -> impairment -> recover -> play")
    lv.add_argument("--playback-device", help="playback device if different from --device")
    lv.add_argument("--record-received", metavar="FILE.opus", help="also record the received stream")
    _common(lv, impair_send=True)
    _dred_send_args(lv)
    _red_send_args(lv)
    _neural_recv_args(lv)
    lv.set_defaults(func=cmd_live)


def _config(args: argparse.Namespace):
    from ..boards import detect_board
    from ..live import LiveConfig
    from ..transport.jitter import JitterConfig

    board, how = detect_board(args.board)
    if not 0.0 <= args.jitter_ms <= 300.0:
        raise LiveCLIError(f"--jitter-ms must be in 0..300, got {args.jitter_ms}")
    if not 96 <= args.payload_type <= 127:
        raise LiveCLIError(f"--payload-type must be 96..127, got {args.payload_type}")
    if args.red_pt is not None and (not (35 <= args.red_pt <= 71 or 77 <= args.red_pt <= 127)
                                    or args.red_pt == args.payload_type):
        raise LiveCLIError(f"--red-pt must be in 35..71 or 77..127 (WebRTC uses 63) and differ from --payload-type, "
                           f"got {args.red_pt}")
    bitrate = args.bitrate or (40000 if args.lbrr else 24000)
    neural = _neural_settings(args, board)
    cfg = LiveConfig.from_board(board, bitrate=bitrate, lbrr=args.lbrr,
                                jitter=JitterConfig(start_delay_ms=args.jitter_ms), payload_type=args.payload_type,
                                red=getattr(args, "red", 0), red_payload_type=args.red_pt,
                                monitor=bool(args.monitor), **neural)
    return board, how, cfg


#: DRED depth asked for with --dred where the board config has none (dred_ms 0).
_FULL_DRED_MS = 1040


def _neural_settings(args: argparse.Namespace, board) -> dict:
    """DRED / neural PLC / governor settings from the flags and the board's defaults."""
    sustained = board.dred_ms > 0  # the board config's statement that neural recovery fits
    out: dict = {}
    receives = hasattr(args, "neural_plc")
    if receives:
        dred = sustained if args.dred is None else bool(args.dred)
        neural_plc = sustained if args.neural_plc is None else bool(args.neural_plc)
        if args.force_level is not None and not args.governor:
            raise LiveCLIError("--force-level needs the governor (drop --no-governor)")
        if args.force_level is not None and not (dred or neural_plc):
            raise LiveCLIError("--force-level needs --dred or --neural-plc: without them there is nothing to govern")
        out.update(dred=dred, neural_plc=neural_plc, recovery_ms=args.recovery_ms, governor=bool(args.governor),
                   force_level=args.force_level, max_delay_ms=args.max_delay_ms)
        if dred and not sustained:
            # --dred on a board whose config says DRED does not fit: the full depth, as `simulate --dred`
            # (the governor still steps down when the board falls behind)
            out["decode_dred_ms"] = _FULL_DRED_MS
    if hasattr(args, "dred_ms"):
        if args.dred_ms is not None:
            dred_ms = args.dred_ms
        elif receives and not out["dred"]:
            dred_ms = 0  # `live --no-dred`: nobody would use it
        else:
            dred_ms = board.dred_ms or (_FULL_DRED_MS if receives else 0)
        out.update(dred_ms=dred_ms, dred_budget=args.dred_budget)
    return out


def _impairment(args: argparse.Namespace, expected_packets: int):
    from ..transport.impair import Impairment

    loss = _build_loss(args)
    return Impairment(loss, reorder_pct=getattr(args, "reorder", 0.0), reorder_gap=getattr(args, "reorder_gap", 1),
                      duplicate_pct=getattr(args, "duplicate", 0.0), seed=args.seed,
                      expected_packets=expected_packets)


def _file_of(spec: str | None) -> str | None:
    """The WAV path of a ``file:PATH`` device spec, else None."""
    return spec[5:] or None if spec and spec.startswith("file:") else None


def _check_files(args: argparse.Namespace, outputs: dict, capture: str | None = None) -> None:
    """Refuse, before anything opens, outputs that cannot be written or would overwrite an input."""
    outputs = {"--report": args.report, "--record": args.record, **outputs}
    check_outputs(outputs, inputs=[_file_of(capture), args.trace])


def _pace(args: argparse.Namespace, spec: str | None) -> bool:
    if args.pace is not None:
        return bool(args.pace)
    return bool(spec) and (spec == "mock" or spec.startswith("file:") or spec.startswith("mock:"))


def _write_report(path: str | None, report: dict) -> None:
    if path:

        _atomic_write_text(path, json.dumps(report, indent=1, default=str) + "\n")


def _print_latency(b: dict) -> None:
    print(f"latency   capture/framing {b['capture_framing_ms']:.1f} + codec {b['codec_lookahead_ms']:.1f} + "
          f"jitter buffer {b['jitter_buffer_target_ms']:.1f} + recovery look-ahead {b['recovery_lookahead_ms']:.1f}"
          f" = {b['pipeline_ms']:.1f} ms (+ playback ring {b['playback_buffer_ms']:.0f} ms)")


def _install_sigint(stop_event) -> None:
    def handler(signum, frame):  # finish cleanly: flush, close recordings, write the report
        stop_event.set()

    try:
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (tests calling main() from a thread)
        pass


def cmd_send(args: argparse.Namespace) -> int:
    from ..audio.device import open_capture
    from ..live import SendSession, dred_redundancy
    from ..transport.sdp import make_sdp

    board, how, cfg = _config(args)
    host, port = parse_hostport(args.dest)
    if port == 0:
        raise LiveCLIError("--dest needs a port")
    _check_files(args, {"--sdp": args.sdp}, capture=args.device)
    n = int(args.seconds * 50) + 64
    imp = _impairment(args, n)
    redundancy = dred_redundancy(cfg)  # models load before any device opens: errors come first
    srtp_key = _send_key(args)
    cap = open_capture(args.device, default_alsa=board.capture_device, period_ms=cfg.period_ms,
                       buffer_periods=cfg.buffer_periods, pace=_pace(args, args.device))
    try:
        srtp = None
        if srtp_key is not None:
            from ..transport.srtp import SrtpSender

            srtp = SrtpSender(srtp_key)
        sess = SendSession(cap, (host, port), cfg, imp, args.record, redundancy=redundancy, srtp=srtp)
        if args.sdp:
            _atomic_write_text(args.sdp, make_sdp(host, port, cfg.payload_type, useinbandfec=cfg.lbrr,
                                                 max_average_bitrate=cfg.bitrate, ssrc=sess.core.rtp.ssrc,
                                                 crypto=srtp_key.sdp_attribute()[len("crypto:"):]
                                                 if srtp_key else None,
                                                 red_payload_type=cfg.red_payload_type if cfg.red else None))
        print(f"send      {cap.describe()} -> rtp://{host}:{port} pt {cfg.payload_type}, "
              f"{cfg.bitrate / 1000:g} kb/s{' LBRR' if cfg.lbrr else ''}{_dred_words(cfg)}{_red_words(cfg)}"
              f"{'; SRTP ' + srtp_key.suite if srtp_key else ''}; "
              f"board {board.name} ({how})", flush=True)
        _install_sigint(sess.stop_event)
        rep = sess.run(args.seconds, args.status_interval, sys.stdout)
    finally:
        cap.close()
    _write_report(args.report, rep)
    st = rep["impairment_stats"]
    _print_latency(rep["latency_budget_ms"])
    print(f"sent      {st['packets']} packets ({rep['bitrate_bps'] / 1000:.1f} kb/s), impairment {rep['impairment']}: "
          f"lost {st['lost']}, duplicated {st['duplicated']}, reordered {st['reordered']}; "
          f"datagrams {rep['datagrams_sent']}, send errors {rep['send_errors']}; overruns {rep['overruns']}; "
          f"CPU {rep['cpu_load_mean'] * 100:.1f}%")
    _print_dred_sent(rep["dred"])
    _print_red_sent(rep["red"])
    _print_artifacts(rep)
    return 0


def _send_key(args: argparse.Namespace):
    """The sender's SRTP key: fresh with --srtp (then written where the receiver can get it), or read."""
    from ..transport.srtp import SrtpKey, read_key_file, write_key_file

    if args.srtp:
        if not (args.sdp or args.srtp_key):
            raise LiveCLIError("--srtp needs --sdp or --srtp-key: the receiver has to get the key")
        key = SrtpKey.generate(args.srtp)
        if args.srtp_key:
            try:
                write_key_file(args.srtp_key, key)
            except OSError as e:
                raise LiveCLIError(f"cannot write {args.srtp_key}: {e}") from None
        return key
    return read_key_file(args.srtp_key) if args.srtp_key else None


def _recv_stream(args: argparse.Namespace):
    """Bind address, pinned sender, payload type and SRTP key of ``recv`` from its flags and SDP."""
    import ipaddress

    from ..transport.sdp import SdpError, parse_sdp
    from ..transport.srtp import SrtpError, parse_crypto, read_key_file

    sdp = None
    if args.sdp:
        try:
            with open(args.sdp, "rb") as f:
                text = f.read(64 * 1024 + 1)
            sdp = parse_sdp(text)
        except OSError as e:
            raise LiveCLIError(f"cannot read {args.sdp}: {e.strerror}") from None
        except SdpError as e:
            raise LiveCLIError(f"{args.sdp}: {e}") from None
    if args.listen:
        listen = parse_hostport(args.listen, default_host="127.0.0.1")
    elif sdp is not None:
        listen = (sdp.address, sdp.port)
    else:
        listen = ("127.0.0.1", 5004)
    peer = None
    if args.peer:
        host, port = (args.peer, 0) if args.peer.count(":") != 1 and not args.peer.startswith("[")             else parse_hostport(args.peer)
        host = host.strip("[]")
        try:
            host = str(ipaddress.ip_address(host))
        except ValueError:
            raise LiveCLIError(f"--peer needs an IP address, got {args.peer!r}") from None
        peer = (host, port)
    key = None
    if args.srtp_key:
        key = read_key_file(args.srtp_key)
    elif sdp is not None and sdp.crypto:
        errors = []
        for c in sdp.crypto:  # the first offer we support
            try:
                key = parse_crypto(c)
                break
            except SrtpError as e:
                errors.append(str(e))
        if key is None:
            raise LiveCLIError(f"{args.sdp}: no usable a=crypto line ({'; '.join(errors)})")
    pt = sdp.payload_type if sdp is not None and args.payload_type == 96 else args.payload_type
    return listen, peer, (sdp.ssrc if sdp is not None else None), pt, key


def _print_artifacts(rep: dict) -> None:
    from ..artifacts.cli import monitor_summary

    if rep.get("artifacts"):
        print(monitor_summary(rep["artifacts"]))


def _dred_words(cfg) -> str:
    return f" + DRED {cfg.dred_ms} ms (<= {cfg.dred_budget} B/packet)" if cfg.dred_ms else ""


def _print_dred_sent(d: dict) -> None:
    if d["dred_ms"]:
        print(f"dred      {d['dred_ms']} ms asked; {d['packets_with_payload']} packets carried a payload, "
              f"{d['mean_payload_bytes']:.1f} B/packet on average ({d['mean_payload_bytes'] * 0.4:.1f} kb/s); "
              f"too large {d['too_large']}")


def _red_words(cfg) -> str:
    return f" as RED pt {cfg.red_payload_type} with {cfg.red} earlier frame{'s' if cfg.red > 1 else ''}" \
        if cfg.red else ""


def _print_red_sent(d: dict) -> None:
    if d["distance"]:
        print(f"red       {d['distance']} earlier frames per packet: {d['mean_redundant_bytes']:.1f} B/packet of "
              f"copies and headers ({d['mean_redundant_bytes'] * 0.4:.1f} kb/s, included above); "
              f"copies left out {d['omitted']}")


def _recovery_words(cfg) -> str:
    look = cfg.receiver_config().effective_lookahead() * 20
    # RED copies (accepted on red_payload_type) count only within the look-ahead.
    what = [w for w, on in ((f"RED pt {cfg.red_payload_type}", look > 0), ("LBRR", cfg.lbrr), ("DRED", cfg.dred),
                            ("neural PLC", cfg.neural_plc)) if on]
    s = f"recovery {' + '.join(what) or 'none'}, then {cfg.concealment}; look-ahead {look} ms"
    if cfg.neural:
        if not cfg.governor:
            s += "; governor off"
        else:
            s += f"; governor on (full DRED {cfg.decode_dred_ms} ms" + (
                f", forced {cfg.force_level})" if cfg.force_level else ")")
    return s


def _print_governor(rep: dict) -> None:
    g = rep.get("governor")
    if not g:
        return
    from ..degrade import Level

    labels = {lvl.key: lvl.label for lvl in Level}
    slots = ", ".join(f"{labels[k]} {n}" for k, n in g["slots_by_level"].items())
    moves = "; ".join(f"{t['t_s']:.2f}s {labels[t['from']]} -> {labels[t['to']]} ({t['reason']}, load {t['load']:.2f})"
                      for t in g["transitions"][-6:]) or "no transitions"
    print(f"governor  load {g['load']:.2f} {g['label']}{' (forced)' if g['forced'] else ''}, peak slot "
          f"{g['peak_ms']:.1f} ms of {g['budget_ms']:.1f}; slots: {slots}; "
          f"{g['downgrades']} down / {g['upgrades']} up: {moves}")


def _summary(rep: dict) -> None:
    j, d = rep["jitter"], rep["decisions"]
    holes = {k: v for k, v in d.items() if k != "regular"}
    print(f"received  {j['received']} packets: played {j['played']}, duplicates {j['duplicates']}, late {j['late']}, "
          f"too early {j['too_early']}, drift inserted/dropped {j['inserted']}/{j['dropped_drift']}; "
          f"bad RTP {rep['rtp']['bad_rtp']}, bad RED {rep['rtp']['bad_red']}, bad Opus {rep['rtp']['bad_opus']}"
          + (f"; RED packets {rep['rtp']['red_packets']}" if rep['rtp']['red_packets'] else ""))
    print("holes     " + (", ".join(f"{k} {v}" for k, v in sorted(holes.items())) or "none")
          + f"; jitter buffer {rep['jitter_delay_ms']:.0f} ms")
    _print_governor(rep)
    acct = rep["accounting"]
    print("accounted " + ("yes" if all(v for k, v in acct.items() if k.endswith("_ok")) else "NO: " + json.dumps(acct)))


def cmd_recv(args: argparse.Namespace) -> int:
    from ..audio.device import open_playback
    from ..live import RecvSession, build_receiver

    from ..transport.source import SourceLock

    board, how, cfg = _config(args)
    _check_files(args, {"--device": _file_of(args.device)})
    (host, port), peer, ssrc, payload_type, srtp_key = _recv_stream(args)
    srtp = None
    if srtp_key is not None:
        from ..transport.srtp import SrtpReceiver

        srtp = SrtpReceiver(srtp_key)
    has_impairment = args.loss is not None or args.trace is not None
    imp = _impairment(args, int(args.seconds * 50) + 64) if has_impairment else None
    receiver = build_receiver(cfg)  # models load before the socket and device open: errors come first
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise LiveCLIError(f"cannot bind {host}:{port}: {e}") from None
    play = open_playback(args.device, default_alsa=board.playback_device, period_ms=cfg.period_ms,
                         buffer_periods=cfg.buffer_periods, pace=_pace(args, args.device))
    try:
        bound = sock.getsockname()
        print(f"listening on {bound[0]}:{bound[1]}", flush=True)
        lock = SourceLock(peer, ssrc)
        print(f"recv      -> {play.describe()}; {_recovery_words(cfg)}; board {board.name} ({how})", flush=True)
        print(f"source    {'peer ' + peer[0] + (':' + str(peer[1]) if peer[1] else '') if peer else 'first sender'}"
              f"{f', ssrc {ssrc:08x}' if ssrc is not None else ''}; "
              f"{'SRTP ' + srtp_key.suite if srtp_key else 'plain RTP (no authentication)'}", flush=True)
        sess = RecvSession(play, sock, cfg, imp, args.record, payload_type, receiver=receiver, source=lock,
                           srtp=srtp)
        _install_sigint(sess.stop_event)
        rep = sess.run(args.seconds, idle_timeout=args.idle_timeout, wait_timeout=args.wait,
                       status_interval=args.status_interval, status_stream=sys.stdout)
    finally:
        play.close()
        sock.close()
    _write_report(args.report, rep)
    _print_latency(rep["latency_budget_ms"])
    _summary(rep)
    src, c = rep["source"], rep["rtp"]
    print(f"source    {src['locked']}; other senders dropped {c['foreign']}, switches {src['switches']}; "
          f"SRTP auth failed {c['srtp_auth_failed']}, replayed {c['srtp_replayed']}, rejected {c['srtp_rejected']}; "
          f"end {rep['end'] or '-'} (slots after the end {rep['jitter']['after_end']})")
    print(f"played    {rep['frames_played']} frames; underruns {rep['underruns']}; CPU {rep['cpu_load_mean'] * 100:.1f}%")
    _print_artifacts(rep)
    return 0


def cmd_live(args: argparse.Namespace) -> int:
    from ..audio.device import open_capture, open_playback
    from ..live import LiveSession, build_receiver, dred_redundancy

    board, how, cfg = _config(args)
    pspec = args.playback_device or args.device
    _check_files(args, {"--record-received": args.record_received,
                        "--playback-device" if args.playback_device else "--device": _file_of(pspec)},
                 capture=args.device)
    imp = _impairment(args, int(args.seconds * 50) + 64)
    # Models load before any device opens: a missing or corrupt one is reported first.
    redundancy = dred_redundancy(cfg)
    receiver = build_receiver(cfg)
    cap = open_capture(args.device, default_alsa=board.capture_device, period_ms=cfg.period_ms,
                       buffer_periods=cfg.buffer_periods, pace=_pace(args, args.device))
    try:
        # The capture device is the clock; pacing it is enough.
        play = open_playback(pspec, default_alsa=board.playback_device, period_ms=cfg.period_ms,
                             buffer_periods=cfg.buffer_periods, pace=False)
    except BaseException:
        cap.close()
        raise
    try:
        print(f"live      {cap.describe()} -> {play.describe()}; impairment {imp.describe()}; "
              f"board {board.name} ({how})", flush=True)
        print(f"neural    sender{_dred_words(cfg) or ' no DRED'}{_red_words(cfg)}; {_recovery_words(cfg)}",
              flush=True)
        sess = LiveSession(cap, play, cfg, imp, args.record, args.record_received, redundancy=redundancy,
                           receiver=receiver)
        _install_sigint(sess.stop_event)
        rep = sess.run(args.seconds, args.status_interval, sys.stdout)
    finally:
        cap.close()
        play.close()
    _write_report(args.report, rep)
    _print_latency(rep["latency_budget_ms"])
    st = rep["impairment_stats"]
    print(f"sent      {st['packets']} packets ({rep['bitrate_bps'] / 1000:.1f} kb/s): lost {st['lost']}, "
          f"duplicated {st['duplicated']}, reordered {st['reordered']}")
    _print_dred_sent(rep["dred"])
    _print_red_sent(rep["red"])
    _summary(rep)
    print(f"xruns     overruns {rep['overruns']}, underruns {rep['underruns']}; CPU {rep['cpu_load_mean'] * 100:.1f}% "
          f"(peak {rep['cpu_load_peak'] * 100:.0f}%)")
    _print_artifacts(rep)
    return 0 if rep["accounting"]["ok"] else 1
