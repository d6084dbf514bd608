"""Fuzz the weight-file reader (quantize.weightfile), checksum and all.

Inputs with the right magic get a recomputed sha256, so the parser behind
the checksum (metadata JSON, array table) is reached too.
"""
import _harness

with _harness.instrumented():
    import hashlib

    from edge_dred.quantize.weightfile import HEADER, MAGIC, WeightFileError, read_weights

F = _harness.Scratch(".bin")


def test_one_input(data: bytes) -> None:
    if len(data) >= HEADER.size and data[:8] == MAGIC and data[-1] & 1:
        fields = list(HEADER.unpack_from(data, 0))
        fields[-2] = len(data)  # file_len
        fields[-1] = hashlib.sha256(data[HEADER.size:]).digest()
        data = HEADER.pack(*fields) + data[HEADER.size:]
    try:
        arrays, meta = read_weights(F.write(data))
    except WeightFileError:
        return
    assert isinstance(meta, dict) and all(a.nbytes <= len(data) for a in arrays.values())


if __name__ == "__main__":
    _harness.main(test_one_input)
