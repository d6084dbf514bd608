"""Fuzz the DRED decoder's .npz loader and the model manifest loader (edge_dred.dred.decoder, .models.loader)."""
import _harness

with _harness.instrumented():
    import os
    import tempfile

    from edge_dred.dred.decoder import DredModelError, load_decoder_weights
    from edge_dred.models.loader import ModelFileError, load_manifest

F = _harness.Scratch(".npz")
MODELS = tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)


def test_one_input(data: bytes) -> None:
    if data[:1] == b"{":  # a manifest
        with open(os.path.join(MODELS, "manifest.json"), "wb") as f:
            f.write(data)
        try:
            man = load_manifest(MODELS)
        except ModelFileError:
            return
        assert isinstance(man["models"], dict)
        return
    try:
        load_decoder_weights(F.write(data))
    except DredModelError:
        pass


if __name__ == "__main__":
    _harness.main(test_one_input)
