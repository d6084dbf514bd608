"""Output files: atomic, ordinary permissions, errors naming the user's path, no overwritten inputs."""
import os
import stat

import pytest

from edge_dred.outputs import OutputPathError, check_outputs, write_atomic


def test_write_atomic_makes_folders_and_respects_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "a" / "b.txt", b"hello")
    finally:
        os.umask(old)
    p = tmp_path / "a" / "b.txt"
    assert p.read_bytes() == b"hello" and stat.S_IMODE(p.stat().st_mode) == 0o644
    assert os.listdir(tmp_path / "a") == ["b.txt"]  # no temporary file left


def test_write_atomic_errors_name_the_target(tmp_path):
    (tmp_path / "f").write_text("x")
    for target in (tmp_path / "f" / "out.wav", tmp_path):
        with pytest.raises(OutputPathError) as e:
            write_atomic(target, b"data")
        assert str(target) in str(e.value) and ".tmp" not in str(e.value)
        assert isinstance(e.value, OSError)
    assert sorted(os.listdir(tmp_path)) == ["f"]


def test_check_outputs_refuses_inputs_directories_and_duplicates(tmp_path):
    src = tmp_path / "in.wav"
    src.write_bytes(b"RIFF")
    (tmp_path / "alias.wav").symlink_to(src)
    with pytest.raises(OutputPathError, match="-o .* is the input file"):
        check_outputs({"-o": tmp_path / "alias.wav"}, inputs=[src])
    with pytest.raises(OutputPathError, match="is a directory"):
        check_outputs({"-o": tmp_path}, inputs=[src])
    with pytest.raises(OutputPathError, match="--report .* is also -o"):
        check_outputs({"-o": tmp_path / "x", "--report": tmp_path / "x"})
    with pytest.raises(OutputPathError, match="in.wav is not a directory"):
        check_outputs({"-o": src / "deeper" / "o.wav"})
    check_outputs({"-o": tmp_path / "new" / "o.wav", "--report": None}, inputs=[src, None])
    assert src.read_bytes() == b"RIFF"
