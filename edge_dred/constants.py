"""Constants shared by every stage: one place, one name each.

A *packet* (Opus frame, receiver slot) is 20 ms; a *feature frame* (LPCNet
features, vocoder frame, DRED frame) is 10 ms.
"""
SAMPLE_RATE = 16000                               # Hz, everywhere inside the package
FRAME_MS = 20                                     # one Opus packet / receiver slot
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000    # 320 samples per packet
FRAME_SIZE = 160                                  # one 10 ms feature frame, samples
FRAMES_PER_PACKET = FRAME_SAMPLES // FRAME_SIZE   # 2

NB_BANDS = 18                                     # Bark cepstra per feature frame
NB_FEATURES = 20                                  # 18 cepstra, pitch period, pitch correlation
PITCH_PERIOD = 18                                 # feature index of the pitch period (samples)
PITCH_CORR = 19                                   # feature index of the pitch correlation (voicing)
PITCH_MIN = 32                                    # shortest pitch period, samples (500 Hz)
PITCH_MAX = 267                                   # longest pitch period, samples (~60 Hz)
PREEMPHASIS = 0.85                                # pre-emphasis before analysis, de-emphasis after synthesis
