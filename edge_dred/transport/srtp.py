"""SRTP (RFC 3711) for the live stream, through libsrtp2 (the ``pylibsrtp`` binding).

No cryptography is done here: keys are parsed and handed to libsrtp, which
encrypts, authenticates and keeps the replay window (on by default for
receivers).  Suites: ``AES_CM_128_HMAC_SHA1_80`` (the mandatory one, what
ffmpeg and GStreamer speak) and ``AEAD_AES_128_GCM`` (RFC 7714).

Keys travel as SDES (RFC 4568): an SDP line
``a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:<base64 master key || salt>``, or
the same ``SUITE inline:KEY`` text in a key file.

Receivers turn every libsrtp failure into :class:`SrtpReject` with a reason
(``auth``, ``replay`` or ``other``) so they can count it; nothing that fails
authentication reaches a parser.  libsrtp only creates per-SSRC state for a
packet that authenticated, so forged datagrams cannot grow memory.
"""
from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SUITES", "DEFAULT_SUITE", "SrtpError", "SrtpReject", "SrtpKey", "SrtpSender", "SrtpReceiver",
           "parse_crypto", "read_key_file", "write_key_file"]

#: suite name -> master key + salt length in bytes
SUITES = {"AES_CM_128_HMAC_SHA1_80": 30, "AEAD_AES_128_GCM": 28}
DEFAULT_SUITE = "AES_CM_128_HMAC_SHA1_80"
_MAX_KEY_FILE_BYTES = 4096
_CRYPTO_RE = re.compile(r"^(?:a=crypto:)?(?:(\d{1,9})\s+)?([A-Z0-9_]{1,64})\s+inline:([A-Za-z0-9+/=]{1,128})"
                        r"(\|[^\s|]{1,64})*(\s.*)?$")  # no '|' inside a parameter: one way to split, linear


class SrtpError(ValueError):
    """A key, key file or ``a=crypto`` line is unusable, or SRTP is not available."""


class SrtpReject(Exception):
    """libsrtp refused a datagram.

    Attributes
    ----------
    reason : str
        ``"auth"`` (authentication failed: forged or corrupted), ``"replay"``
        (seen before, or older than the replay window) or ``"other"``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class SrtpKey:
    """An SRTP master key and salt for one suite."""

    suite: str
    key: bytes

    def __post_init__(self) -> None:
        if self.suite not in SUITES:
            raise SrtpError(f"unsupported SRTP suite {self.suite!r} (supported: {', '.join(SUITES)})")
        if not isinstance(self.key, bytes) or len(self.key) != SUITES[self.suite]:
            raise SrtpError(f"{self.suite} needs a {SUITES[self.suite]}-byte master key + salt, "
                            f"got {len(self.key) if isinstance(self.key, bytes) else type(self.key).__name__}")

    @classmethod
    def generate(cls, suite: str = DEFAULT_SUITE) -> "SrtpKey":
        """A fresh random key from the OS's generator."""
        if suite not in SUITES:
            raise SrtpError(f"unsupported SRTP suite {suite!r} (supported: {', '.join(SUITES)})")
        return cls(suite, os.urandom(SUITES[suite]))

    def inline(self) -> str:
        """``SUITE inline:BASE64`` (the key file's text and the a=crypto value after the tag)."""
        return f"{self.suite} inline:{base64.b64encode(self.key).decode('ascii')}"

    def sdp_attribute(self, tag: int = 1) -> str:
        """The SDES attribute value: ``crypto:1 SUITE inline:BASE64``."""
        return f"crypto:{tag} {self.inline()}"


def parse_crypto(text: str) -> SrtpKey:
    """An ``a=crypto`` line (RFC 4568), or ``SUITE inline:KEY`` as in a key file.

    Lifetime and MKI parameters after ``|`` are not supported (an MKI changes
    the packet format) and are refused, as are session parameters.
    """
    if not isinstance(text, str) or len(text) > 512:
        raise SrtpError("crypto attribute must be a string of at most 512 characters")
    m = _CRYPTO_RE.match(text.strip())
    if not m:
        raise SrtpError(f"malformed crypto attribute {text.strip()[:60]!r} (expected 'SUITE inline:BASE64')")
    _tag, suite, b64, extra, params = m.groups()
    if extra or (params and params.strip()):
        raise SrtpError("crypto attribute: key lifetime/MKI and session parameters are not supported")
    try:
        key = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise SrtpError("crypto attribute: the inline key is not base64") from None
    return SrtpKey(suite, key)


def read_key_file(path: str | os.PathLike) -> SrtpKey:
    """Read a key file: one line ``SUITE inline:BASE64`` (or an ``a=crypto`` line); errors name the file."""
    p = Path(path)
    try:
        if p.stat().st_size > _MAX_KEY_FILE_BYTES:
            raise SrtpError(f"{p}: key file larger than {_MAX_KEY_FILE_BYTES} bytes")
        text = p.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SrtpError(f"{p}: cannot read key file ({e})") from None
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if len(lines) != 1:
        raise SrtpError(f"{p}: expected one 'SUITE inline:BASE64' line, found {len(lines)}")
    try:
        return parse_crypto(lines[0])
    except SrtpError as e:
        raise SrtpError(f"{p}: {e}") from None


def write_key_file(path: str | os.PathLike, key: SrtpKey) -> None:
    """Write ``key`` readable by its owner only."""
    fd = os.open(os.fspath(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.inline() + "\n")


def _lib():
    try:
        import pylibsrtp
    except ImportError:
        raise SrtpError("SRTP needs the pylibsrtp package (pip install 'edge-dred[srtp]')") from None
    return pylibsrtp


def _session(key: SrtpKey, inbound: bool):
    lib = _lib()
    profile = {"AES_CM_128_HMAC_SHA1_80": lib.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
               "AEAD_AES_128_GCM": lib.Policy.SRTP_PROFILE_AEAD_AES_128_GCM}[key.suite]
    ssrc_type = lib.Policy.SSRC_ANY_INBOUND if inbound else lib.Policy.SSRC_ANY_OUTBOUND
    try:
        return lib, lib.Session(lib.Policy(key=key.key, ssrc_type=ssrc_type, srtp_profile=profile))
    except (lib.Error, ValueError, TypeError) as e:
        raise SrtpError(f"libsrtp refused the {key.suite} policy: {e}") from None


class SrtpSender:
    """Protect outgoing RTP/RTCP with one key (any SSRC)."""

    def __init__(self, key: SrtpKey) -> None:
        self.suite = key.suite
        self._lib, self._s = _session(key, inbound=False)

    def protect(self, rtp: bytes) -> bytes:
        return self._s.protect(bytes(rtp))

    def protect_rtcp(self, rtcp: bytes) -> bytes:
        return self._s.protect_rtcp(bytes(rtcp))


class SrtpReceiver:
    """Authenticate, replay-check and decrypt incoming SRTP/SRTCP with one key."""

    def __init__(self, key: SrtpKey) -> None:
        self.suite = key.suite
        self._lib, self._s = _session(key, inbound=True)

    def _run(self, fn, data) -> bytes:
        try:
            return fn(bytes(data))
        except self._lib.Error as e:
            msg = str(e)
            reason = "auth" if "authentication" in msg else "replay" if "replay" in msg or "too old" in msg \
                else "other"
            raise SrtpReject(reason, f"SRTP: {msg}") from None
        except (ValueError, TypeError) as e:  # longer than libsrtp's buffer, etc.
            raise SrtpReject("other", f"SRTP: {e}") from None

    def unprotect(self, data: bytes | bytearray | memoryview) -> bytes:
        return self._run(self._s.unprotect, data)

    def unprotect_rtcp(self, data: bytes | bytearray | memoryview) -> bytes:
        return self._run(self._s.unprotect_rtcp, data)
