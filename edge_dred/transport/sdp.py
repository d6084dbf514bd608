"""SDP (RFC 4566) for one Opus RTP stream, as RFC 7587 section 7 describes it.

Opus is always announced as ``opus/48000/2`` whatever is actually sent; the
real capture rate and channel count go into the fmtp parameters
(``sprop-maxcapturerate``, ``sprop-stereo``), and ``useinbandfec`` says whether
packets carry LBRR.  Legacy receivers (ffmpeg, browsers) need nothing else:
the DRED payload hides in the Opus padding.

A stream sent as RFC 2198 RED is announced as WebRTC does: a second payload
type ``red/48000/2`` listed first, with fmtp ``OPUS_PT/OPUS_PT`` (the primary
and the redundant blocks are Opus).

:func:`parse_sdp` reads just enough of a session description (ours or
ffmpeg's) to receive the stream: connection address, port, payload type,
rtpmap and fmtp.  Input is bounded and every problem raises
:class:`SdpError`.
"""
from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field

__all__ = ["SdpError", "SdpStream", "make_sdp", "parse_sdp", "MAX_SDP_BYTES"]

MAX_SDP_BYTES = 16384
_MAX_LINES = 256


class SdpError(ValueError):
    """A session description is malformed or does not describe an Opus stream."""


@dataclass
class SdpStream:
    """What an SDP says about one Opus audio stream.

    Attributes
    ----------
    address : str
        Connection address (``c=``): where the RTP goes.
    port : int
        RTP port (``m=``).
    payload_type : int
        Dynamic payload type.
    fmtp : dict
        Format parameters (RFC 7587 section 6.1), values as strings.
    ptime : int or None
        Packet duration in ms.
    direction : str
        ``sendonly``, ``recvonly``, ``sendrecv`` or ``inactive``.
    crypto : list of str
        SDES keys (RFC 4568 ``a=crypto`` values after ``crypto:``), in order of preference.
    ssrc : int or None
        The sender's SSRC (RFC 5576 ``a=ssrc``), if announced.
    red_payload_type : int or None
        Payload type of ``red/48000/2`` whose fmtp names only the Opus payload type.
    """

    address: str
    port: int
    payload_type: int = 96
    fmtp: dict[str, str] = field(default_factory=dict)
    ptime: int | None = 20
    direction: str = "sendonly"
    session_name: str = "edge-dred"
    crypto: list[str] = field(default_factory=list)
    ssrc: int | None = None
    red_payload_type: int | None = None


def _check_address(addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(addr)
    except ValueError:
        raise SdpError(f"not an IP address: {addr!r}") from None


def make_sdp(address: str, port: int, payload_type: int = 96, *, sample_rate: int = 16000,
             useinbandfec: bool = False, usedtx: bool = False, max_average_bitrate: int | None = None,
             ptime: int = 20, origin_address: str | None = None, direction: str = "sendonly",
             session_name: str = "edge-dred", session_id: int | None = None, crypto: str | None = None,
             ssrc: int | None = None, red_payload_type: int | None = None) -> str:
    """Write the session description of our stream.

    Parameters
    ----------
    address, port : str, int
        Where the RTP packets go (the receiver's address and port).
    payload_type : int
        Dynamic payload type 96..127.
    sample_rate : int
        Capture rate: announced as ``maxplaybackrate`` and ``sprop-maxcapturerate``.
    useinbandfec, usedtx : bool
        Whether packets carry LBRR / whether the sender uses DTX.
    max_average_bitrate : int, optional
        ``maxaveragebitrate`` in b/s.
    ptime : int
        Packet duration in ms.
    crypto : str, optional
        An SDES key (``1 SUITE inline:KEY``, RFC 4568): the stream is SRTP (``RTP/SAVP``).
    ssrc : int, optional
        The sender's SSRC, announced so the receiver locks onto it (RFC 5576).
    red_payload_type : int, optional
        The stream is sent as RFC 2198 RED of Opus on this payload type.

    Returns
    -------
    str
        The SDP text with CRLF line ends (RFC 4566 section 5).
    """
    ip = _check_address(address)
    if not 0 < port < 65536:
        raise SdpError(f"port must be in 1..65535, got {port}")
    if not 96 <= payload_type <= 127:
        raise SdpError(f"payload_type must be 96..127, got {payload_type}")
    if red_payload_type is not None and (not (35 <= red_payload_type <= 71 or 77 <= red_payload_type <= 127)
                                         or red_payload_type == payload_type):
        raise SdpError(f"red_payload_type must be in 35..71 or 77..127 (WebRTC uses 63) and differ from "
                       f"{payload_type}, got {red_payload_type}")
    if direction not in ("sendonly", "recvonly", "sendrecv", "inactive"):
        raise SdpError(f"bad direction {direction!r}")
    if not 6000 <= sample_rate <= 48000:
        raise SdpError(f"sample_rate must be 6000..48000, got {sample_rate}")
    if crypto is not None and (not isinstance(crypto, str) or not crypto or len(crypto) > 256
                               or any(c in crypto for c in "\r\n")):
        raise SdpError("crypto must be one line of at most 256 characters")
    if ssrc is not None and (isinstance(ssrc, bool) or not isinstance(ssrc, int) or not 0 <= ssrc <= 0xFFFFFFFF):
        raise SdpError(f"ssrc must be a 32-bit unsigned int, got {ssrc!r}")
    fam = "IP4" if ip.version == 4 else "IP6"
    origin = origin_address or str(ip)
    ofam = "IP4" if _check_address(origin).version == 4 else "IP6"
    sid = session_id if session_id is not None else int(time.time())
    params = [
        f"maxplaybackrate={sample_rate}",
        f"sprop-maxcapturerate={sample_rate}",
        "stereo=0",
        "sprop-stereo=0",
        f"useinbandfec={1 if useinbandfec else 0}",
        f"usedtx={1 if usedtx else 0}",
    ]
    if max_average_bitrate is not None:
        if not 6000 <= max_average_bitrate <= 510000:
            raise SdpError(f"max_average_bitrate must be 6000..510000, got {max_average_bitrate}")
        params.append(f"maxaveragebitrate={max_average_bitrate}")
    lines = [
        "v=0",
        f"o=- {sid} {sid} IN {ofam} {origin}",
        f"s={session_name}",
        f"c=IN {fam} {ip}",
        "t=0 0",
        f"m=audio {port} {'RTP/SAVP' if crypto else 'RTP/AVP'} "
        + (f"{red_payload_type} " if red_payload_type is not None else "") + f"{payload_type}",
        f"a=rtpmap:{payload_type} opus/48000/2",
        f"a=fmtp:{payload_type} " + ";".join(params),
    ]
    if red_payload_type is not None:
        lines += [f"a=rtpmap:{red_payload_type} red/48000/2",
                  f"a=fmtp:{red_payload_type} {payload_type}/{payload_type}"]
    lines += [
        f"a=ptime:{ptime}",
        f"a=maxptime:{ptime}",
        f"a={direction}",
    ]
    if crypto:
        lines.append(f"a=crypto:{crypto}")
    if ssrc is not None:
        lines.append(f"a=ssrc:{ssrc} cname:{session_name}")
    return "\r\n".join(lines) + "\r\n"


def parse_sdp(text: str | bytes) -> SdpStream:
    """Read the first Opus audio stream of a session description.

    Raises
    ------
    SdpError
        If the text is too long, has no ``c=``/``m=audio`` line, or its audio
        media has no ``opus/48000/2`` rtpmap.
    """
    if isinstance(text, bytes):
        if len(text) > MAX_SDP_BYTES:
            raise SdpError(f"SDP longer than {MAX_SDP_BYTES} bytes")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise SdpError("SDP is not UTF-8") from None
    if not isinstance(text, str):
        raise SdpError(f"SDP must be str or bytes, got {type(text).__name__}")
    if len(text) > MAX_SDP_BYTES:
        raise SdpError(f"SDP longer than {MAX_SDP_BYTES} characters")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if len(lines) > _MAX_LINES:
        raise SdpError(f"SDP has more than {_MAX_LINES} lines")
    if not lines or lines[0] != "v=0":
        raise SdpError("SDP must start with v=0")
    session_c: str | None = None
    media_c: str | None = None
    port: int | None = None
    pts: list[int] = []
    rtpmap: dict[int, str] = {}
    fmtp: dict[int, dict[str, str]] = {}
    ptime: int | None = None
    direction = "sendrecv"
    name = ""
    crypto: list[str] = []
    ssrc: int | None = None
    in_audio = False
    seen_audio = False
    for ln in lines:
        if len(ln) < 2 or ln[1] != "=":
            raise SdpError(f"malformed SDP line {ln[:40]!r}")
        key, val = ln[0], ln[2:]
        if key == "m":
            if seen_audio:  # only the first audio stream matters
                in_audio = False
                continue
            parts = val.split()
            if len(parts) < 4:
                raise SdpError(f"malformed m= line {ln[:60]!r}")
            in_audio = parts[0] == "audio"
            if in_audio:
                seen_audio = True
                try:
                    port = int(parts[1].split("/")[0])
                    pts = [int(p) for p in parts[3:]]
                except ValueError:
                    raise SdpError(f"malformed m= line {ln[:60]!r}") from None
                if not 0 < port < 65536:
                    raise SdpError(f"port {port} out of range")
        elif key == "c":
            parts = val.split()
            if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
                raise SdpError(f"malformed c= line {ln[:60]!r}")
            addr = parts[2].split("/")[0]  # multicast TTL suffix
            _check_address(addr)
            if in_audio:
                media_c = addr
            elif not seen_audio:
                session_c = addr
        elif key == "s" and not seen_audio:
            name = val[:256]
        elif key == "a" and in_audio:
            attr, _, rest = val.partition(":")
            if attr == "rtpmap":
                pt_s, _, enc = rest.partition(" ")
                try:
                    rtpmap[int(pt_s)] = enc.strip()
                except ValueError:
                    raise SdpError(f"malformed rtpmap {ln[:60]!r}") from None
            elif attr == "fmtp":
                pt_s, _, params = rest.partition(" ")
                try:
                    pt = int(pt_s)
                except ValueError:
                    raise SdpError(f"malformed fmtp {ln[:60]!r}") from None
                d: dict[str, str] = {}
                for item in params.split(";"):
                    k, eq, v = item.strip().partition("=")
                    if k and eq:
                        d[k.strip()] = v.strip()
                    elif k and not eq and "/" in k:  # RFC 2198: "111/111", the blocks' payload types
                        d["red"] = k.strip()
                fmtp[pt] = d
            elif attr == "ptime":
                try:
                    ptime = int(float(rest))
                except ValueError:
                    raise SdpError(f"malformed ptime {ln[:60]!r}") from None
            elif attr in ("sendonly", "recvonly", "sendrecv", "inactive"):
                direction = attr
            elif attr == "crypto" and len(crypto) < 8:
                crypto.append(rest.strip()[:256])
            elif attr == "ssrc" and ssrc is None:
                try:
                    ssrc = int(rest.split()[0]) if rest.split() else -1
                except ValueError:
                    ssrc = -1
                if not 0 <= ssrc <= 0xFFFFFFFF:
                    raise SdpError(f"malformed ssrc {ln[:60]!r}")
    if port is None:
        raise SdpError("no m=audio line")
    address = media_c or session_c
    if address is None:
        raise SdpError("no c= connection line")
    opus_pts = [pt for pt in pts if rtpmap.get(pt, "").lower() == "opus/48000/2"]
    if not opus_pts:
        raise SdpError("audio stream has no opus/48000/2 rtpmap")
    pt = opus_pts[0]
    red_pt = None
    for p in pts:  # RED only if its blocks are this Opus stream (an absent fmtp leaves them open: skip)
        blocks = fmtp.get(p, {}).get("red", "").split("/")
        if rtpmap.get(p, "").lower() == "red/48000/2" and all(x == str(pt) for x in blocks):
            red_pt = p
            break
    return SdpStream(address, port, pt, fmtp.get(pt, {}), ptime, direction, name, crypto, ssrc, red_payload_type=red_pt)
