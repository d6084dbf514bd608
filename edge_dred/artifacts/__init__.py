"""No-reference audio artifact monitor: hum, hiss, distortion, clicks.

* :mod:`.generator` puts seeded, documented defects into clean speech (training
  data and tests);
* :mod:`.frontend` turns 1 s of audio into the detector's inputs;
* :mod:`.detector` runs the shipped int8 TFLite detector and says what it hears;
* :mod:`.monitor` runs it on live audio in a low-priority thread;
* :mod:`.cli` is ``edge-dred inspect``.

See ``docs/artifact_monitor.md``.
"""
