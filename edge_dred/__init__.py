"""edge-dred: neural packet-loss recovery (Deep REDundancy) for live Opus voice.

Data flows one way::

    audio -> features -> (encoder -> payload) -> packets -> receiver
          -> (decoder -> features) -> vocoder -> audio
"""
__version__ = "0.1.0"

SAMPLE_RATE = 16000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000  # 320 samples per packet
FEATURE_HOP = 160  # 10 ms feature frames
