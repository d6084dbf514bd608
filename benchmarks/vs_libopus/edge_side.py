"""edge-dred side of benchmarks/vs_libopus, run under callgrind by ``__main__``.

    valgrind --tool=callgrind --instr-atstart=no python edge_side.py PCM TRACE STAGES_SO OUT_JSON

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
}
MODES = ("plc", "dred", "dredonly")
CAL_N = 200


def stage_names() -> list[str]:
    """Every ``edstage_*`` function the stages library must define."""
    names = ["null", "cal", "cal0"]
    for m in MODES:
        for h in HOOKS:
            if h == "rx":
                names += [f"{m}_rx_good", f"{m}_rx_lost"]
            else:
                names.append(f"{m}_{h}")
    return names


class Stages:
    """Runs wrapped calls inside their stage's C function and counts units and nesting."""

    def __init__(self, lib_path: str) -> None:
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
            self.enter(self.index[stage], CB(cb))
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
    pcm_path, trace_path, lib_path, out_path = sys.argv[1:5]
    pcm = np.fromfile(pcm_path, "<i2").astype(np.int16)
    lost = np.array([int(v) for v in open(trace_path).read().split()], bool)

    from edge_dred.receiver import build_receiver
    from edge_dred.sender import Sender
    from edge_dred.simulate import simulate

    st = Stages(lib_path)
    import edge_dred.dred.recovery  # noqa: F401  (modules that import hooked functions by name)
    import edge_dred.dred.encoder  # noqa: F401
    import edge_dred.codec.framing  # noqa: F401
    for name, (module, path, unit) in HOOKS.items():
        st.hook(name, module, path, unit)

    # Everything loaded before instrumentation starts: models, TFLite, both senders and receivers.
    senders = {"plc": Sender(bitrate=24000), "dred": Sender(bitrate=24000, dred_ms=1040),
               "dredonly": Sender(bitrate=24000, dred_ms=1040)}
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
               "dred_bytes_mean": float(np.mean(dred_bytes)) if dred_bytes else 0.0}, open(out_path, "w"))


def _count(xs) -> dict:
    out: dict = {}
    for x in xs:
        out[x] = out.get(x, 0) + 1
    return out


if __name__ == "__main__":
    main()
