"""The guards every loader shares: regular files only, sizes before reads, a zip directory checked whole."""

from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path

import pytest

from analyzers.errors import CorruptFile, UnsupportedFile, sentence
from analyzers.loaders.safe_files import SafeZip, read_capped, regular_file


def test_pipes_devices_and_self_links_are_refused_before_opening(tmp_path: Path) -> None:
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(UnsupportedFile, match=r"^model\.safetensors: it is a named pipe"):
        regular_file(fifo)  # opening it would block until a writer came
    with pytest.raises(UnsupportedFile, match=r"^zero: it is a device"):
        regular_file(Path("/dev/zero"))
    loop = tmp_path / "config.json"
    loop.symlink_to(loop)
    with pytest.raises(CorruptFile, match=r"^config\.json: it is a symbolic link that points back to itself"):
        regular_file(loop)


def test_a_file_larger_than_its_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    big = tmp_path / "config.json"
    big.write_bytes(b" " * 2000)
    with pytest.raises(CorruptFile, match=r"^config\.json: it is 2,000 bytes, more than the 1,000"):
        read_capped(big, limit=1000)
    assert read_capped(big, limit=2000) == b" " * 2000


def test_a_newline_in_a_name_cannot_forge_a_second_message_line() -> None:
    text = sentence("evil\nlayerscope: error: all fine.pt", "bad tensor 'x\n\ry'")
    assert "\n" not in text and "\r" not in text
    assert text == "evil\\nlayerscope: error: all fine.pt: bad tensor 'x\\n\\ry'."


def _zip(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_duplicate_and_case_colliding_members_are_refused(tmp_path: Path) -> None:
    dup = _zip(tmp_path / "dup.pt", [("archive/data.pkl", b"evil"), ("archive/data.pkl", b"good")])
    with pytest.raises(CorruptFile, match=r"^dup\.pt: the archive holds 2 members named 'archive/data\.pkl'"):
        SafeZip(dup)
    case = _zip(tmp_path / "case.pt2", [("data/model.pt", b"a"), ("data/MODEL.PT", b"b")])
    with pytest.raises(CorruptFile, match=r"^case\.pt2: .*differ only in case"):
        SafeZip(case)


def test_zip_slip_names_are_findings_and_never_followed(tmp_path: Path) -> None:
    slip = _zip(tmp_path / "slip.keras", [("config.json", b"{}"), ("../../etc/evil", b"x"), ("/abs", b"y")])
    with SafeZip(slip) as zf:
        assert len(zf.findings) == 1 and "2 member name(s) that point outside its folder" in zf.findings[0]


def test_a_member_is_refused_before_it_inflates_past_its_limit(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", b"\0" * (8 << 20))  # 8 MiB of zeros, a few KiB on disk
    assert bomb.stat().st_size < 100_000
    with SafeZip(bomb) as zf:
        with pytest.raises(CorruptFile, match=r"inflates to 8,388,608 bytes, more than the 1,048,576"):
            zf.read("archive/data.pkl", limit=1 << 20)
        assert len(zf.read("archive/data.pkl", limit=8 << 20)) == 8 << 20


def test_a_member_whose_declared_size_lies_stops_at_the_limit(tmp_path: Path) -> None:
    liar = tmp_path / "liar.pt"
    with zipfile.ZipFile(liar, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("data.pkl", b"\0" * 100_000)
    blob = bytearray(liar.read_bytes())
    central = blob.rfind(b"PK\x01\x02")
    struct.pack_into("<I", blob, central + 24, 10)  # the directory now says 10 bytes
    local = blob.find(b"PK\x03\x04")
    struct.pack_into("<I", blob, local + 22, 10)
    liar.write_bytes(bytes(blob))
    with SafeZip(liar) as zf:
        with pytest.raises(CorruptFile, match=r"^liar\.pt: its member 'data\.pkl'"):
            zf.read("data.pkl", limit=1000)


def test_a_directory_declaring_millions_of_members_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    """zipfile reads the whole directory into memory before any count can be checked: a directory of
    millions of entries cost gigabytes. The end record's count is read first."""
    path = _zip(tmp_path / "many.pt", [("a", b"1")])
    blob = bytearray(path.read_bytes())
    end = blob.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", blob, end + 8, 65000, 65000)
    struct.pack_into("<I", blob, end + 12, 300 << 20)  # a 300 MiB directory
    path.write_bytes(bytes(blob))
    with pytest.raises(CorruptFile, match=r"^many\.pt: its zip directory declares 65,000 members in 314,572,800"):
        SafeZip(path)


def test_sniffing_a_huge_directory_reads_no_directory(tmp_path: Path) -> None:
    """The .pt / .keras sniffers ask zip_names, which declines a directory past the limits unread."""
    from analyzers.loaders import find_loader
    from analyzers.loaders.safe_files import zip_names

    path = _zip(tmp_path / "many.pt", [("archive/data.pkl", b"1")])
    assert zip_names(path) == ["archive/data.pkl"]
    blob = bytearray(path.read_bytes())
    end = blob.rfind(b"PK\x05\x06")
    struct.pack_into("<HHI", blob, end + 8, 65000, 65000, 300 << 20)
    path.write_bytes(bytes(blob))
    assert zip_names(path) is None
    with pytest.raises((CorruptFile, UnsupportedFile), match=r"^many\.pt: "):
        find_loader(path)
