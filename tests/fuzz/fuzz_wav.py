"""Fuzz the WAV reader and loader (edge_dred.audio.wavio), through a file as the CLI reads it."""
import _harness

with _harness.instrumented():
    import numpy as np
    from edge_dred.audio.wavio import AudioFormatError, load_audio, read_wav

F = _harness.Scratch(".wav")


def test_one_input(data: bytes) -> None:
    path = F.write(data)
    try:
        x, rate = read_wav(path)
    except AudioFormatError:
        return
    assert x.ndim == 2 and x.shape[0] > 0 and rate > 0 and np.all(np.isfinite(x))
    if x.shape[0] <= 48000:  # resampling long inputs is slow, not interesting
        try:
            a = load_audio(path)
        except AudioFormatError:
            return
        assert a.pcm.dtype == np.int16


if __name__ == "__main__":
    _harness.main(test_one_input)
