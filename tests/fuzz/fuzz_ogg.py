"""Fuzz the Ogg Opus reader (edge_dred.transport.ogg)."""
import _harness

with _harness.instrumented():
    from edge_dred.transport.ogg import OggError, read_ogg_opus


def test_one_input(data: bytes) -> None:
    try:
        s = read_ogg_opus(data)
    except OggError:
        return
    assert all(0 < len(p) <= 65536 for p in s.packets)


if __name__ == "__main__":
    _harness.main(test_one_input)
