import pytest

from edge_dred.board_configs import available
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
    with pytest.raises(BoardConfigError, match="kernel_variants must start with 'scalar'"):
        load_board(str(bad))
    # A known variant of another architecture is as wrong as an unknown one.
    bad.write_text(src.replace('kernel_variants = ["scalar", "neon"]', 'kernel_variants = ["scalar", "avx2"]'))
    with pytest.raises(BoardConfigError, match="aarch64 CPU can run"):
        load_board(str(bad))
    bad.write_text(src + '\n[build]\ncflags = ["-O2"]\n')
    with pytest.raises(BoardConfigError, match=r"unknown table \[build\]"):
        load_board(str(bad))
    bad.write_text(src.replace("pin_cores = [3]", "pin_cores = [-1]"))
    with pytest.raises(BoardConfigError, match="pin_cores"):
        load_board(str(bad))
    bad.write_text("name = [")
    with pytest.raises(BoardConfigError, match="invalid TOML"):
        load_board(str(bad))


X86_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz

processor\t: 1
vendor_id\t: GenuineIntel
model name\t: Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz
"""

PI4_CPUINFO = "".join(f"processor\t: {i}\nBogoMIPS\t: 108.00\nCPU implementer\t: 0x41\nCPU part\t: 0xd08\n\n"
                      for i in range(4)) + "Hardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n"


def test_describe_cpu_names_the_processor_and_board(tmp_path):
    from edge_dred.boards import describe_cpu

    info, model = tmp_path / "cpuinfo", tmp_path / "model"
    info.write_text(X86_CPUINFO)
    assert describe_cpu(str(info), str(tmp_path / "none")) == "Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz, 2 CPUs"
    info.write_text(PI4_CPUINFO)
    model.write_bytes(b"Raspberry Pi 4 Model B Rev 1.4\x00")
    assert describe_cpu(str(info), str(model)) == "Raspberry Pi 4 Model B Rev 1.4: 4x cortex-a72"
    assert describe_cpu(str(info), str(tmp_path / "none")) == "BCM2835: 4x cortex-a72"
    info.write_text(PI4_CPUINFO.replace("0xd08", "0xd99").replace("Hardware", "X"))
    assert describe_cpu(str(info), str(tmp_path / "none")) == "4x CPU part 0xd99"


def test_bench_header_names_this_cpu():
    from edge_dred.tools.bench import _format
    from edge_dred.boards import describe_cpu

    head = _format([], [], [], 10, 1).splitlines()[0]
    assert describe_cpu() in head and "unknown" not in head
