"""edge-dred side of benchmarks/vs_libopus, run under callgrind by ``__main__``.

    valgrind --tool=callgrind --instr-atstart=no python edge_side.py PCM TRACE STAGES_SO OUT_JSON
    qemu-aarch64 -plugin COUNTER,out=MARKS ... python3.11 edge_side.py PCM TRACE marks OUT_JSON LATENTS
    python edge_side.py --record PCM LATENTS      (on the host: what LATENTS holds)

Runs the library as ``simulate`` does, on the same speech (raw 16 kHz int16) and
loss trace as the libopus driver, in three modes: neural PLC (24 kb/s, no DRED),
DRED (24 kb/s + DRED 1040 ms; the receiver recovers from DRED with an ideal
1040 ms buffer and conceals the rest with the neural PLC) and the same DRED
without the neural PLC (libopus's classic PLC for the rest).

Each priced unit of work runs inside its own small C function of ``STAGES_SO``
(``edstage_<name>``, entered through ``edstage_enter``; it only calls back into
Python), so callgrind's inclusive cost of that function is the unit's cost.  The hooks wrap library methods by
name, from outside the package; a hook whose target is gone is reported as
missing instead of failing the run.  Instrumentation starts after the imports
and model loads (``edstage_start``).  Writes units and call nesting per stage
to ``OUT_JSON``; the costs come from the profile.

With ``marks`` instead of ``STAGES_SO`` (aarch64 under qemu with the project's
counting plugin) each unit runs between the plugin's umask markers
(``marks.py``; stage ``i`` of :func:`stage_names`).  TFLite does not run under
that qemu, so the DRED senders' encoder network is replaced by a replay of its
outputs recorded on the host (``--record``: one ``DredEncoder.step`` per packet
of the same speech); everything else of the sender runs in the guest on them.
"""
from __future__ import annotations

import ctypes
import functools
import importlib
import json
import sys

import numpy as np

CB = ctypes.CFUNCTYPE(ctypes.c_long)

# stage -> (module, attribute path, how many units one call is)
FRAMES_OF_PCM = "pcm/160"      # 10 ms frames in the first argument (int16 samples)
FRAMES_OF_FEATS = "len(arg)"    # feature frames in the first argument
HOOKS = {
    "features": ("edge_dred.dsp.features", "FeatureExtractor.process_block", FRAMES_OF_PCM),
    "vocoder": ("edge_dred.neural.vocoder", "_VocoderStream.synthesize", FRAMES_OF_FEATS),
    "postfilter": ("edge_dred.dsp.postfilter", "VocoderPostfilter.process", FRAMES_OF_FEATS),
    "dred_net": ("edge_dred.dred.encoder", "DredEncoder.step", 1),
    "dred_packet": ("edge_dred.dred.encoder", "DredStreamEncoder.push_features", 1),
    "tx_dred": ("edge_dred.dred.encoder", "DredStreamEncoder.push_pcm", 1),
    "tx_attach": ("edge_dred.codec.framing", "attach_dred", 1),
    "dred_parse": ("edge_dred.dred.payload", "parse_payload", 1),
    "rx": ("edge_dred.receiver", "Receiver._decide_one", 1),
    # A hole's start-up, run while the slot before it is decided: priced with the hole.
    "prepare": ("edge_dred.receiver", "Receiver._prepare_next", 1),
}
MODES = ("plc", "dred", "dredonly")
CAL_N = 200
MARK_MAGIC = 0x4E000000   # the plugin's default magic (edge_dred.tools.estimate.MAGIC)
MARK_FIRST = 16           # marks.FIRST: stage i is bracketed by codes FIRST + 2i, FIRST + 2i + 1


class ReplayEncoder:
    """The DRED encoder network's outputs, recorded on the host, in order (TFLite cannot run in the guest).

    Stands in for :class:`edge_dred.dred.encoder.DredEncoder` in a ``Sender``; ``step`` is
    counted as the ``dred_net`` stage, so the replay's own cost is not mistaken for coding.
    """

    def __init__(self, z: np.ndarray, s: np.ndarray) -> None:
        self.z, self.s = z, s
        self.latent_dim, self.state_dim = z.shape[1], s.shape[1]
        self.i = 0

    def reset(self) -> None:
        self.i = 0

    def step(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.i >= len(self.z):
            raise RuntimeError(f"recorded latents end after {len(self.z)} steps: record them from the same speech")
        self.i += 1
        return self.z[self.i - 1], self.s[self.i - 1]


def record(pcm_path: str, out_path: str) -> None:
    """On the host: the encoder network's outputs for the DRED sender, and its payload sizes."""
    from edge_dred.dred.encoder import DredEncoder
    from edge_dred.sender import Sender

    pcm = np.fromfile(pcm_path, "<i2").astype(np.int16)
    zs: list = []
    orig = DredEncoder.step

    def step(self, frames):
        z, s = orig(self, frames)
        zs.append((np.array(z, np.float32), np.array(s, np.float32)))
        return z, s

    DredEncoder.step = step
    sender = Sender(bitrate=24000, dred_ms=1040)
    sender.encode_stream(pcm)
    np.savez(out_path, z=np.stack([z for z, _ in zs]), s=np.stack([s for _, s in zs]),
             dred_bytes=np.asarray(sender.dred_bytes, np.int32))


class MarkerStages:
    """``Stages``' entry point with the counting plugin's markers around the callback instead of a C frame."""

    def __init__(self) -> None:
        import os

        self._umask = os.umask

    def edstage_enter(self, index: int, cb) -> int:
        code = MARK_FIRST + 2 * index
        self._umask(MARK_MAGIC | (code << 12) | 0o022)
        try:
            return cb()
        finally:
            self._umask(MARK_MAGIC | ((code + 1) << 12) | 0o022)

    def edstage_start(self) -> None:
        pass

    def edstage_stop(self) -> None:
        pass


def stage_names() -> list[str]:
    """Every ``edstage_*`` function the stages library must define."""
    names = ["null", "cal", "cal0"]
    for m in MODES:
        for h in HOOKS:
            if h in ("rx", "prepare"):
                names += [f"{m}_{h}_good", f"{m}_{h}_lost"]
            else:
                names.append(f"{m}_{h}")
    return names


class Stages:
    """Runs wrapped calls inside their stage's C function and counts units and nesting."""

    def __init__(self, lib_path: str) -> None:
        if lib_path == "marks":
            self.lib = MarkerStages()
            self.enter = lambda i, cb: self.lib.edstage_enter(i, cb)
        else:
            self.lib = ctypes.CDLL(lib_path)
            self.enter = self.lib.edstage_enter
            self.enter.argtypes, self.enter.restype = [ctypes.c_int, CB], ctypes.c_long
        self.index = {n: i for i, n in enumerate(stage_names())}
        self.mode = MODES[0]
        self.units: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.nested: dict[str, int] = {}
        self.stack: list[str] = []
        self.missing: list[str] = []

    def run(self, stage: str, units: float, fn, *a, **k):
        for s in self.stack:
            self.nested[s] = self.nested.get(s, 0) + 1
        self.units[stage] = self.units.get(stage, 0) + units
        self.calls[stage] = self.calls.get(stage, 0) + 1
        box: list = [None, None]

        def cb() -> int:
            try:
                box[0] = fn(*a, **k)
            except BaseException as e:  # re-raised outside the C frame
                box[1] = e
            return 0

        self.stack.append(stage)
        try:
            self.enter(self.index[stage], cb if isinstance(self.lib, MarkerStages) else CB(cb))
        finally:
            self.stack.pop()
        if box[1] is not None:
            raise box[1]
        return box[0]

    def hook(self, name: str, module: str, path: str, unit) -> None:
        try:
            mod = importlib.import_module(module)
            owner = mod
            *parents, attr = path.split(".")
            for p in parents:
                owner = getattr(owner, p)
            orig = getattr(owner, attr)
        except (ImportError, AttributeError):
            self.missing.append(f"{name}: {module}.{path}")
            return
        stages = self
        is_method = bool(parents)

        def count(args) -> float:
            if unit == FRAMES_OF_PCM:
                return len(np.asarray(args[0])) / 160
            if unit == FRAMES_OF_FEATS:
                return float(len(np.asarray(args[0])))
            return float(unit)

        if name == "rx":
            @functools.wraps(orig)
            def wrapped(self_, *a, **k):
                lost = self_._pending[0] is None
                return stages.run(f"{stages.mode}_rx_{'lost' if lost else 'good'}", 1, orig, self_, *a, **k)
        elif name == "prepare":
            @functools.wraps(orig)
            def wrapped(self_, *a, **k):
                # inside the slot being decided: a received one (moved to the hole) or a lost one
                where = "good" if stages.stack and stages.stack[-1].endswith("_rx_good") else "lost"
                return stages.run(f"{stages.mode}_prepare_{where}", 1, orig, self_, *a, **k)
        elif is_method:
            @functools.wraps(orig)
            def wrapped(self_, *a, **k):
                return stages.run(f"{stages.mode}_{name}", count(a), orig, self_, *a, **k)
        else:
            @functools.wraps(orig)
            def wrapped(*a, **k):
                return stages.run(f"{stages.mode}_{name}", count(a), orig, *a, **k)
        setattr(owner, attr, wrapped)
        if not is_method:
            # Modules that imported the function by name hold their own reference.
            for m in list(sys.modules.values()):
                if m is not None and getattr(m, attr, None) is orig:
                    setattr(m, attr, wrapped)


def main() -> None:
    if sys.argv[1] == "--record":
        record(*sys.argv[2:4])
        return
    pcm_path, trace_path, lib_path, out_path = sys.argv[1:5]
    replay = np.load(sys.argv[5]) if len(sys.argv) > 5 else None
    pcm = np.fromfile(pcm_path, "<i2").astype(np.int16)
    lost = np.array([int(v) for v in open(trace_path).read().split()], bool)

    from edge_dred.receiver import build_receiver
    from edge_dred.sender import Sender
    from edge_dred.simulate import simulate

    st = Stages(lib_path)
    import edge_dred.dred.recovery  # noqa: F401  (modules that import hooked functions by name)
    import edge_dred.dred.encoder  # noqa: F401
    import edge_dred.codec.framing  # noqa: F401
    hooks = dict(HOOKS)
    if replay is not None:
        hooks["dred_net"] = (__name__, "ReplayEncoder.step", 1)
    for name, (module, path, unit) in hooks.items():
        st.hook(name, module, path, unit)

    # Everything loaded before instrumentation starts: models, TFLite, both senders and receivers.
    def enc():
        return None if replay is None else ReplayEncoder(replay["z"], replay["s"])

    senders = {"plc": Sender(bitrate=24000), "dred": Sender(bitrate=24000, dred_ms=1040, dred_encoder=enc()),
               "dredonly": Sender(bitrate=24000, dred_ms=1040, dred_encoder=enc())}
    receivers = {"plc": build_receiver(neural_plc=True),
                 "dred": build_receiver(dred=True, neural_plc=True, recovery_ms=1040),
                 "dredonly": build_receiver(dred=True, recovery_ms=1040)}
    noop = lambda: None  # noqa: E731

    def cal(k):
        for _ in range(CAL_N):
            k()

    st.lib.edstage_start()
    for _ in range(CAL_N):
        st.run("null", 0, noop)
    st.run("cal", 0, cal, lambda: st.run("null", 0, noop))
    st.run("cal0", 0, cal, noop)
    n_packets = {}
    for mode in MODES:
        st.mode = mode
        res = simulate(pcm, lost, senders[mode], receivers[mode])
        n_packets[mode] = len(res.decisions) if hasattr(res, "decisions") else None
    st.lib.edstage_stop()
    decisions = {m: {d.value if hasattr(d, "value") else str(d): c for d, c in
                     _count(receivers[m].decisions).items()} for m in MODES}
    dred_bytes = senders["dred"].dred_bytes
    json.dump({"units": st.units, "calls": st.calls, "nested": st.nested, "missing": st.missing,
               "decisions": decisions, "packets": n_packets, "cal_n": CAL_N,
               "dred_bytes_mean": float(np.mean(dred_bytes)) if dred_bytes else 0.0,
               "net_replayed": replay is not None, "kernels": _variant(),
               "dred_bytes_as_host": None if replay is None else
               [int(np.sum(np.asarray(dred_bytes) == replay["dred_bytes"][:len(dred_bytes)])), len(dred_bytes)]},
              open(out_path, "w"))


def _variant() -> str:
    """The int8 kernels' variant the dispatch picked on this CPU."""
    try:
        from edge_dred.kernels import _kernels
        return str(_kernels.best_variant())
    except (ImportError, AttributeError):
        return "unknown"


def _count(xs) -> dict:
    out: dict = {}
    for x in xs:
        out[x] = out.get(x, 0) + 1
    return out


if __name__ == "__main__":
    main()
