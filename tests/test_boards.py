import pytest

from board_configs import available
from edge_dred.boards import BoardConfigError, detect_board, list_boards, load_board


def test_every_shipped_board_loads():
    names = available()
    assert {"rpi3bplus", "rpi4", "rpi5", "rpi_zero2w", "generic_aarch64", "generic_armv7", "x86_64"} <= set(names)
    boards = list_boards()
    assert all(b.dred_ms % 40 == 0 for b in boards)
    assert "neon_dotprod" in load_board("rpi5").kernel_variants
    assert "neon_dotprod" not in load_board("rpi4").kernel_variants


def test_detection_by_model_cpu_part_and_fallback(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGE_DRED_BOARD", raising=False)
    model = tmp_path / "model"
    model.write_bytes(b"Raspberry Pi 4 Model B Rev 1.4\x00")
    cpu = tmp_path / "cpuinfo"
    cpu.write_text("processor\t: 0\nCPU part\t: 0xd0b\n")
    assert detect_board(model_path=str(model), cpuinfo_path=str(cpu))[0].name == "rpi4"
    assert detect_board(model_path=str(tmp_path / "none"), cpuinfo_path=str(cpu))[0].name == "rpi5"
    b, how = detect_board(model_path=str(tmp_path / "none"), cpuinfo_path=str(tmp_path / "none"), machine="armv7l")
    assert b.name == "generic_armv7" and "armv7l" in how
    monkeypatch.setenv("EDGE_DRED_BOARD", "rpi3bplus")
    assert detect_board()[0].name == "rpi3bplus"


def test_bad_configs_are_rejected_clearly(tmp_path):
    with pytest.raises(ValueError, match="known boards"):
        load_board("no_such_board")
    src = (load_board.__globals__["config_path"]("rpi4")).read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(src.replace("dred_ms = 1040", "dred_ms = 1041"))
    with pytest.raises(BoardConfigError, match="dred_ms"):
        load_board(str(bad))
    bad.write_text(src.replace('kernel_variants = ["scalar", "neon"]', 'kernel_variants = ["sve"]'))
    with pytest.raises(BoardConfigError, match="unknown kernel"):
        load_board(str(bad))
    bad.write_text("name = [")
    with pytest.raises(BoardConfigError, match="invalid TOML"):
        load_board(str(bad))
