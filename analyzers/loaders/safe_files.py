"""Every file is hostile until trusted: size-checked reads, regular files only, zip members checked.

What each loader shares before it parses anything: a path must be a regular file (a named pipe
hangs a reader, `/dev/zero` never ends), a size is checked against a limit before a byte is read,
and a zip archive's directory is checked as a whole — two members with one name (which one did a
reader take?), names that differ only in case (a reader that looks names up case-insensitively
takes the other), absolute or `..` names (zip-slip), and members that inflate past a limit.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import zipfile
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import IO, Any

from analyzers.errors import CorruptFile, UnsupportedFile, printable, sentence

MiB = 1 << 20
GiB = 1 << 30
METADATA_LIMIT = 64 * MiB  # JSON configs, headers, pickled state_dict records
PICKLE_LIMIT = 512 * MiB  # a data.pkl describes tensors; its data lives in other members
MAX_NAME_CHARS = 4096  # a tensor or layer name longer than this is not a real one


def display_name(text: object, limit: int = 120) -> str:
    """A name from a file, safe to put in a one-line message: control characters escaped, length capped."""
    return printable(text, limit)


def regular_file(path: Path) -> os.stat_result:
    """The stat of `path` (links followed) when it is a regular file; one sentence otherwise.

    A FIFO, a character or block device or a socket is refused before it is opened: opening a FIFO
    blocks until a writer comes, and a device such as /dev/zero never reaches its end."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UnsupportedFile(sentence(path, "no such file or folder")) from None
    except OSError as exc:
        if exc.errno == 40:  # ELOOP: a symlink to itself
            raise CorruptFile(sentence(path, "it is a symbolic link that points back to itself")) from None
        raise UnsupportedFile(sentence(path, f"it cannot be read ({exc.strerror or exc})")) from None
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return st
    if stat.S_ISDIR(mode):
        raise UnsupportedFile(sentence(path, "it is a folder, not a file"))
    kind = ("a named pipe" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
    raise UnsupportedFile(sentence(path, f"it is {kind}, not a model file; LayerScope reads only regular files"))


def read_capped(path: Path, limit: int = METADATA_LIMIT, what: str = "it") -> bytes:
    """The whole of a small regular file, refused when it is larger than `limit` (checked before reading)."""
    st = regular_file(path)
    if st.st_size > limit:
        raise CorruptFile(sentence(path, f"{what} is {st.st_size:,} bytes, more than the {limit:,} LayerScope "
                                         "reads for a file of this kind"))
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:  # the file grew while being read
        raise CorruptFile(sentence(path, f"{what} is larger than the {limit:,} bytes LayerScope reads"))
    return data


def read_text_capped(path: Path, limit: int = METADATA_LIMIT, what: str = "it") -> str:
    """`read_capped` decoded as UTF-8; one sentence when it is not text."""
    try:
        return read_capped(path, limit, what).decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptFile(sentence(path, f"{what} is not UTF-8 text")) from None


def _unsafe_member_name(name: str) -> bool:
    pure = PurePosixPath(name.replace("\\", "/"))
    return name.startswith(("/", "\\")) or ".." in pure.parts or (len(name) > 1 and name[1] == ":")


MAX_DIRECTORY_BYTES = 256 * MiB  # a zip directory this large lists millions of members


def declared_directory(path: Path) -> tuple[int, int] | None:
    """(members, directory bytes) the zip's end record declares, read from the file's last 64 KiB before
    zipfile parses (and holds in memory) the whole directory; None when no end record is found."""
    import struct

    size = os.stat(path).st_size
    with open(path, "rb") as f:
        f.seek(max(0, size - (65536 + 22)))
        tail = f.read()
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < 22:
            return None
        _, _, _, _, entries, cd_size, _, _ = struct.unpack("<4sHHHHIIH", tail[at:at + 22])
        locator = tail.rfind(b"PK\x06\x07", 0, at)
        if (entries == 0xFFFF or cd_size == 0xFFFFFFFF) and locator >= 0 and len(tail) - locator >= 20:
            (offset,) = struct.unpack("<Q", tail[locator + 8:locator + 16])
            if 0 <= offset <= size - 56:
                f.seek(offset)
                record = f.read(56)
                if record[:4] == b"PK\x06\x06":
                    entries, cd_size = struct.unpack("<QQ", record[32:48])
    return int(entries), int(cd_size)


def zip_names(path: Path, max_members: int = 200_000) -> list[str] | None:
    """The member names of a zip for sniffing (no member is read), or None when it is no zip or its
    directory is larger than a model archive's (the loader then refuses it in a sentence)."""
    declared = declared_directory(path)
    if declared is None or declared[0] > max_members or declared[1] > MAX_DIRECTORY_BYTES:
        return None
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.namelist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        return None


class SafeZip:
    """A zip archive opened for reading with its directory checked; members read with a size cap.

    Refused at open: a broken directory, two members with the same name, two names that differ only
    in case. Noted (`findings`), not refused: member names that would escape a folder when extracted
    (absolute or with `..`); LayerScope never extracts, so they are reported, not followed."""

    def __init__(self, path: Path, *, max_members: int = 200_000) -> None:
        self.path = Path(path)
        regular_file(self.path)
        declared = declared_directory(self.path)
        if declared is not None and (declared[0] > max_members or declared[1] > MAX_DIRECTORY_BYTES):
            raise CorruptFile(sentence(self.path, f"its zip directory declares {declared[0]:,} members in "
                                                  f"{declared[1]:,} bytes, more than a model archive has "
                                                  f"(at most {max_members:,})"))
        try:
            self._zf = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
            raise CorruptFile(sentence(self.path, f"its zip directory is broken ({display_name(exc, 100)})")) from None
        infos = self._zf.infolist()
        if len(infos) > max_members:
            self._zf.close()
            raise CorruptFile(sentence(self.path, f"the archive lists {len(infos):,} members, more than the "
                                                  f"{max_members:,} a model archive has"))
        counts = Counter(i.filename for i in infos)
        dupes = [n for n, c in counts.items() if c > 1]
        if dupes:
            self._zf.close()
            raise CorruptFile(sentence(self.path, f"the archive holds {counts[dupes[0]]} members named "
                                                  f"'{display_name(dupes[0])}'; which one a reader takes is "
                                                  "ambiguous, so it is refused"))
        folded = Counter(i.filename.lower() for i in infos)
        clash = [n for n, c in folded.items() if c > 1]
        if clash:
            names = [i.filename for i in infos if i.filename.lower() == clash[0]]
            self._zf.close()
            raise CorruptFile(sentence(self.path, "the archive holds members whose names differ only in case ("
                                                  + ", ".join(f"'{display_name(n)}'" for n in names[:3])
                                                  + "); which one a reader takes is ambiguous, so it is refused"))
        self.infos = {i.filename: i for i in infos}
        self.names = [i.filename for i in infos]
        self.findings: list[str] = []
        unsafe = [n for n in self.names if _unsafe_member_name(n)]
        if unsafe:
            self.findings.append(f"The archive has {len(unsafe)} member name(s) that point outside its folder "
                                 f"(e.g. '{display_name(unsafe[0])}'); LayerScope does not extract them.")

    def __enter__(self) -> SafeZip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the archive."""
        self._zf.close()

    @property
    def zipfile(self) -> zipfile.ZipFile:
        """The underlying ZipFile (for reads this class does not wrap)."""
        return self._zf

    def size(self, name: str) -> int:
        """Declared uncompressed size of a member."""
        return self.infos[name].file_size

    def find(self, suffix: str) -> list[str]:
        """Members whose name ends with `suffix` (exact case), in archive order."""
        return [n for n in self.names if n.endswith(suffix)]

    def read(self, name: str, limit: int = METADATA_LIMIT) -> bytes:
        """A member's bytes; refused before inflating when its declared size passes `limit`, and
        stopped after `limit` bytes when the declared size lied."""
        info = self.infos.get(name)
        if info is None:
            raise CorruptFile(sentence(self.path, f"the archive has no member '{display_name(name)}'"))
        if info.file_size > limit:
            raise CorruptFile(sentence(self.path, f"its member '{display_name(name)}' inflates to "
                                                  f"{info.file_size:,} bytes, more than the {limit:,} LayerScope "
                                                  "reads for it"))
        try:
            with self._zf.open(info) as f:
                data = f.read(limit + 1)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as exc:
            raise CorruptFile(sentence(self.path, f"its member '{display_name(name)}' cannot be read "
                                                  f"({display_name(exc, 100)})")) from None
        if len(data) > limit:
            raise CorruptFile(sentence(self.path, f"its member '{display_name(name)}' inflates past the "
                                                  f"{limit:,} bytes LayerScope reads for it"))
        return data

    def open(self, name: str) -> IO[bytes]:
        """A member as a seekable read-only stream (h5py reads HDF5 through it without extracting)."""
        info = self.infos.get(name)
        if info is None:
            raise CorruptFile(sentence(self.path, f"the archive has no member '{display_name(name)}'"))
        return self._zf.open(info)

    def window(self, name: str) -> IO[bytes] | None:
        """A stored (uncompressed) member as a seekable stream that reads only the bytes asked for; None for a
        compressed or encrypted member. A ZipFile stream re-reads a member from its start on every backward
        seek, which made h5py's scattered metadata reads of a large weights file quadratic."""
        span = self.data_span(name)
        if span is None:
            return None
        return io.BufferedReader(_ByteWindow(self.path, span[0], span[1]), buffer_size=64 * 1024)

    def data_span(self, name: str) -> tuple[int, int] | None:
        """(byte offset in the archive file, size) of a stored (uncompressed) member's data, for memory maps;
        None for a compressed or encrypted member."""
        info = self.infos.get(name)
        if info is None:
            raise CorruptFile(sentence(self.path, f"the archive has no member '{display_name(name)}'"))
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
            return None
        with open(self.path, "rb") as f:
            f.seek(info.header_offset)
            head = f.read(30)
            archive_size = os.fstat(f.fileno()).st_size
        if len(head) != 30 or head[:4] != b"PK\x03\x04":
            raise CorruptFile(sentence(self.path, f"its member '{display_name(name)}' has no local header where the "
                                                  "zip directory says; the archive is corrupted"))
        name_len, extra_len = struct.unpack("<HH", head[26:30])
        start = info.header_offset + 30 + name_len + extra_len
        if start + info.file_size > archive_size or info.compress_size != info.file_size:
            raise CorruptFile(sentence(self.path, f"its member '{display_name(name)}' declares {info.file_size:,} "
                                                  "bytes that the archive does not hold; the file is truncated"))
        return start, info.file_size


class _ByteWindow(io.RawIOBase):
    """Bytes [start, start + size) of a file as a read-only seekable raw stream (positioned reads)."""

    def __init__(self, path: Path, start: int, size: int) -> None:
        super().__init__()
        self._fd = os.open(path, os.O_RDONLY)
        self._start = start
        self._size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}.get(whence)
        if base is None:
            raise ValueError(f"invalid whence ({whence})")
        if base + offset < 0:
            raise OSError("negative seek position")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = max(0, min(len(view), self._size - self._pos))
        data = os.pread(self._fd, n, self._start + self._pos) if n else b""
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()
