"""Regenerate the checked-in seed corpus (tests/fuzz/corpus/<harness>/): small, valid-ish inputs.

    .venv/bin/python tests/fuzz/make_seeds.py
"""
from __future__ import annotations

import io
import os
import sys

import _harness  # noqa: F401  (repository root on sys.path)
import numpy as np

from edge_dred.audio.wavio import write_wav
from edge_dred.codec.framing import attach_dred
from edge_dred.dred.decoder import shipped_decoder_weights
from edge_dred.dred.payload import DredPayload, encode_payload
from edge_dred.dred.quantizer import chunk_levels
from edge_dred.sender import Sender
from edge_dred.transport.ogg import OggOpusWriter
from edge_dred.transport.red import RedBlock, build_red
from edge_dred.transport.rtp import build_rtcp_bye, build_rtp
from edge_dred.transport.sdp import make_sdp
from edge_dred.transport.srtp import SUITES, SrtpKey, SrtpSender
from edge_dred.quantize.weightfile import write_weights


def _tone(n: int, f: float = 200.0) -> np.ndarray:
    return (np.sin(np.arange(n) * 2 * np.pi * f / 16000) * 8000).astype(np.int16)


def _jitter_programs() -> list[bytes]:
    """Operation programs for fuzz_jitter.py (its docstring has the encoding), one per scenario."""
    head = bytes([3]) + (0xFFFFF000).to_bytes(4, "big")  # resync_after 4, the timestamp about to wrap
    jump = lambda slots: slots.to_bytes(2, "big", signed=True)  # noqa: E731
    return [head + bytes([0xEF] * 5),                                               # a paced stream
            head + bytes([0xEF, 0x03, 0x43, 0x02, 0x05, 0x80, 0x23, 0x81, 0x63, 0x00, 0x83, 0x03, 0x03,
                          0x8F, 0xEF]),                                             # jitter, reorder, duplicates
            head + bytes([0xEF, 0xEF, 0xC4]) + jump(-20) + bytes([0xEF, 0xEF, 0x8F]),  # restart backwards
            head + bytes([0xEF, 0xCF]) + jump(300) + bytes([0xEF, 0xEF, 0x8F]),      # restart far ahead
            head + bytes([0xEF, 0xF8] + [0x13] * 5 + [0x8F, 0x1B, 0x8F, 0xFF, 0x03, 0x8F]),  # new source, end
            head + bytes([0x27] * 20 + [0x8F, 0x8F, 0xFE])]                         # spread before the start


def main() -> None:
    out = _harness.CORPUS
    for d in os.listdir(out) if os.path.isdir(out) else []:  # seeds only: regression inputs stay
        for f in os.listdir(os.path.join(out, d)):
            if f.startswith("seed"):
                os.remove(os.path.join(out, d, f))
    seeds: dict[str, list[bytes]] = {k: [] for k in (
        "rtp", "srtp", "jitter", "opus", "opusdec", "dred", "ogg", "wav", "sdp", "weights", "npz", "red")}
    enc = Sender(24000, lbrr=True).encoder
    pcm = _tone(320 * 6)
    opus = [enc.encode(pcm[i * 320:(i + 1) * 320]) for i in range(6)]
    w = shipped_decoder_weights()
    rng = np.random.default_rng(0)
    dreds = []
    for n in (1, 3, 8):
        lat = [np.clip(np.round(rng.laplace(0, 2, w.latent_dim)), -30, 30).astype(np.int32)
               for _ in chunk_levels(n, 6, 2, 15)]
        p = DredPayload(q0=6, dq=2, qmax=15, offset=0, state_k=np.zeros(w.state_dim, np.int32), latents_k=lat)
        dreds.append(encode_payload(p, w.tables))
    seeds["dred"] = dreds
    seeds["opus"] = opus[:3] + [attach_dred(opus[3], dreds[0]), attach_dred(opus[4], dreds[1])]
    seeds["opusdec"] = seeds["opus"][1:4]  # 20 ms packets as recv queues them (LBRR from the second on)
    rtp = [build_rtp(p, 10 + i, 960 * i, 0xABC) for i, p in enumerate(seeds["opus"])]
    seeds["rtp"] = rtp[:3] + [build_rtcp_bye(0xABC), b"\x90\x60\x00\x01" + bytes(8) + b"\xbe\xde\x00\x01abcd\x78\x00"]
    for s, n in SUITES.items():  # the key fuzz_srtp.py uses
        tx = SrtpSender(SrtpKey(s, bytes(range(n))))
        seeds["srtp"] += [bytes([0]) + tx.protect(rtp[0]) if s.startswith("AES") else bytes([1]) + tx.protect(rtp[0]),
                          bytes([2 | (s != "AES_CM_128_HMAC_SHA1_80")]) + bytes([5, 1, 20, 128]) + opus[0][:40]]
    seeds["red"] = [build_red(111, opus[2]), build_red(111, opus[2], [RedBlock(111, 960, opus[1])]),
                    build_red(111, opus[2], [RedBlock(111, 1920, opus[0]), RedBlock(111, 960, opus[1])])]
    seeds["jitter"] = _jitter_programs()
    buf = io.BytesIO()
    with OggOpusWriter(buf, pre_skip=312) as wr:
        for p in opus:
            wr.write_packet(p)
    seeds["ogg"] = [buf.getvalue()]
    tmp = os.path.join(out, "_tmp.wav")
    os.makedirs(out, exist_ok=True)
    for rate in (16000, 8000, 44100):
        write_wav(tmp, _tone(rate // 50), rate)
        with open(tmp, "rb") as f:
            seeds["wav"].append(f.read())
    os.remove(tmp)
    seeds["sdp"] = [make_sdp("127.0.0.1", 5004, 96, useinbandfec=True, ssrc=5,
                             crypto=SrtpKey(list(SUITES)[0], bytes(30)).sdp_attribute()[7:]).encode(),
                    b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                    b"m=audio 5004 RTP/AVP 97\r\na=rtpmap:97 opus/48000/2\r\na=fmtp:97 sprop-stereo=1\r\n"]
    tmp = os.path.join(out, "_tmp.bin")
    write_weights(tmp, {"w": np.arange(8, dtype=np.float32), "b": np.zeros((2, 3), np.int8)},
                  {"model": "m", "version": "1", "nested": {"a": [1, 2, {"b": None}]}})
    with open(tmp, "rb") as f:
        seeds["weights"] = [f.read()]
    os.remove(tmp)
    z = io.BytesIO()
    np.savez_compressed(z, dims=np.array([32, 48, 64, 64, 64, 4, 20]), version=np.array("x"),
                        feature_mean=np.zeros(20), feature_std=np.ones(20))
    seeds["npz"] = [z.getvalue(), b'{"models": {"dred_decoder": {"file": "dred_decoder.npz", "version": "1"}}}']
    for name, items in seeds.items():
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        for i, data in enumerate(items):
            with open(os.path.join(d, f"seed{i:02d}"), "wb") as f:
                f.write(data)
    total = sum(len(x) for v in seeds.values() for x in v)
    print(f"{sum(map(len, seeds.values()))} seeds, {total} bytes in {out}")


if __name__ == "__main__":
    sys.exit(main())
