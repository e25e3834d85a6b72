"""The containers of ``torch.save`` files: opening them safely, zip records, legacy storage blocks.

Nothing here reads more than it has checked it may: the file must be a regular
file no larger than ``max_file_bytes``; a zip's central directory is bounded
before :mod:`zipfile` parses it; a record is read only once its declared size
equals what the pickle says it holds, and only stored or deflated records are
read (what torch itself reads), never inflating past the declared size.
"""
from __future__ import annotations

import contextlib
import io
import os
import stat
import struct
import zipfile
import zlib

import numpy as np

from shiftnet_jax.torchfile.limits import (
    CheckpointError,
    UnsupportedCheckpointError,
    limit,
    quote,
)

MAX_FILE_BYTES = 2 << 30      # the released Shift-Net weights are ~209 MB
ZIP_DIRECTORY_BYTES_PER_ENTRY = 256  # central directory bound = this x (max_entries + 64)
MAX_ZIP_EXTRA = 1024          # bytes of one record's extra field (zip64's is 28; 64 KB of empty
                              # sub-records makes zipfile's _decodeExtra quadratic)
_CHUNK = 1 << 20


@contextlib.contextmanager
def open_regular_file(path, max_file_bytes: int):
    """Yield ``(binary file, size)`` for a regular file of at most ``max_file_bytes``.

    Opened non-blocking, so that a FIFO cannot hang us before it is refused.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise CheckpointError("is a directory, not a checkpoint file")
        if not stat.S_ISREG(st.st_mode):
            raise CheckpointError("is not a regular file (a device, FIFO or socket); "
                                  "refusing to read it")
        if st.st_size > max_file_bytes:
            raise limit("file size", st.st_size, "max_file_bytes", max_file_bytes)
        os.set_blocking(fd, True)
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with f:
        yield f, st.st_size


def read_exactly(f, offset: int, out: np.ndarray, what: str):
    """Fill the uint8 array ``out`` from ``offset``; a short file is 'truncated'."""
    f.seek(offset)
    view, done = memoryview(out).cast("B"), 0
    while done < len(view):
        n = f.readinto(view[done:done + _CHUNK])
        if not n:
            raise CheckpointError(f"truncated: {what} ends early")
        done += n


def swap_bytes(raw: np.ndarray, unit: int):
    """Reverse the byte order of each ``unit``-byte word of the uint8 array ``raw``, in place."""
    if unit > 1 and raw.size:
        words = raw.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[unit])
        words.byteswap(inplace=True)


class _BoundedReads(io.RawIOBase):
    """A view of ``f`` for zipfile's directory parsing: any one read above ``bound`` is refused."""

    def __init__(self, f, size, bound, name):
        self.f, self.size, self.bound, self.name = f, size, bound, name

    def seekable(self):
        return True

    def readable(self):
        return True

    def seek(self, pos, whence=0):
        return self.f.seek(pos, whence)

    def tell(self):
        return self.f.tell()

    def read(self, n=-1):
        want = self.size - self.f.tell() if n is None or n < 0 else n
        if want > self.bound:
            raise limit("zip central directory bytes", want, self.name, self.bound)
        return self.f.read(want)


def check_zip_directory(f, size: int, max_entries: int, bound: int | None = None):
    """Check a zip's end record and central directory before :mod:`zipfile` parses them: at
    most ``max_entries + 64`` records in at most ``bound`` bytes (default
    ZIP_DIRECTORY_BYTES_PER_ENTRY x (max_entries + 64)), no extra field over MAX_ZIP_EXTRA.
    Raises CheckpointLimitError; leaves a malformed directory to zipfile's own errors."""
    bound = ZIP_DIRECTORY_BYTES_PER_ENTRY * (max_entries + 64) if bound is None else bound
    tail_start = max(0, size - (1 << 16) - 22)
    f.seek(tail_start)
    tail = f.read(size - tail_start)
    end = tail.rfind(b"PK\x05\x06")
    if end < 0 or len(tail) - end < 22:
        return  # not a zip: zipfile says so
    count, cd_size, cd_offset = struct.unpack("<HII", tail[end + 10:end + 20])
    locator = end - 20
    if (count == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF) and locator >= 0 \
            and tail[locator:locator + 4] == b"PK\x06\x07":
        (z64,) = struct.unpack("<Q", tail[locator + 8:locator + 16])
        f.seek(z64)
        record = f.read(56)
        if len(record) == 56 and record[:4] == b"PK\x06\x06":
            count, cd_size, cd_offset = struct.unpack("<QQQ", record[32:56])
    if count > max_entries + 64:
        raise limit("zip records", count, "max_entries (+64)", max_entries + 64)
    if cd_size > bound:
        raise limit("zip central directory bytes", cd_size, "max_entries (x256 bytes)", bound)
    if cd_offset + cd_size > size:
        return  # zipfile reports it (or finds the directory of a prefixed archive)
    f.seek(cd_offset)
    directory, pos = f.read(cd_size), 0
    for _ in range(count):
        if directory[pos:pos + 4] != b"PK\x01\x02" or pos + 46 > len(directory):
            return  # malformed: zipfile's error
        name, extra, comment = struct.unpack("<HHH", directory[pos + 28:pos + 34])
        if extra > MAX_ZIP_EXTRA:
            raise limit("a zip record's extra field bytes", extra, "MAX_ZIP_EXTRA", MAX_ZIP_EXTRA)
        pos += 46 + name + extra + comment


class ZipArchive:
    """The records of a torch zip checkpoint: one folder, no duplicate names."""

    def __init__(self, f, size: int, max_entries: int):
        self.f, self.size = f, size
        bound = ZIP_DIRECTORY_BYTES_PER_ENTRY * (max_entries + 64)
        try:
            check_zip_directory(f, size, max_entries, bound)
            infos = zipfile.ZipFile(_BoundedReads(f, size, bound, "max_entries (x256 bytes)")).infolist()
        except CheckpointError:
            raise
        except (zipfile.BadZipFile, EOFError, struct.error, ValueError, NotImplementedError,
                OverflowError) as e:  # NotImplementedError: "zip file version 9.0"...
            raise CheckpointError(f"truncated or corrupt zip archive ({type(e).__name__})") from None
        if len(infos) > max_entries + 64:
            raise limit("zip records", len(infos), "max_entries (+64)", max_entries + 64)
        self.records, folders = {}, []
        for info in infos:
            name = info.orig_filename
            folder, slash, rest = name.partition("/")
            if not slash or not rest or "\0" in name:
                # torch refuses an archive whose first record is not in a folder
                raise CheckpointError(f"zip record {quote(name)} is not inside the archive's folder")
            if folder not in folders:
                folders.append(folder)
            if len(folders) > 1:
                # torch reads the first folder and refuses records outside it
                raise CheckpointError(f"zip archive holds several folders ({quote(folders[0], 30)}, "
                                      f"{quote(folder, 30)}); a torch.save archive has one")
            if rest in self.records:
                # torch's pick among duplicates depends on the directory's sort order
                raise CheckpointError(f"zip record {quote(name)} appears twice; "
                                      "a torch.save archive never repeats a record")
            self.records[rest] = info
        if not self.records:
            raise CheckpointError("empty zip archive: not a PyTorch checkpoint")
        self.folder = folders[0]

    def has(self, rel: str) -> bool:
        return rel in self.records

    def size_of(self, rel: str) -> int:
        return self.records[rel].file_size

    def read(self, rel: str, max_bytes: int, limit_name: str) -> bytes:
        """A small record (the pickle, byteorder), at most ``max_bytes``."""
        info = self._info(rel)
        if info.file_size > max_bytes:
            raise limit(f"record {quote(info.orig_filename, 40)} size", info.file_size, limit_name, max_bytes)
        out = np.empty(info.file_size, np.uint8)
        self.read_into(rel, out)
        return out.tobytes()

    def _info(self, rel):
        if rel not in self.records:
            raise CheckpointError(f"zip archive lacks the record {quote(self.folder + '/' + rel)}")
        return self.records[rel]

    def read_into(self, rel: str, out: np.ndarray):
        """Fill the uint8 array ``out`` with the record; its declared size must be ``out.size``."""
        info = self._info(rel)
        what = f"zip record {quote(info.orig_filename)}"
        if info.flag_bits & 1:
            raise UnsupportedCheckpointError(f"{what} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise UnsupportedCheckpointError(
                f"{what} uses compression method {info.compress_type}; torch reads only "
                "stored and deflated records")
        if info.file_size != out.size:
            raise CheckpointError(f"{what} holds {info.file_size} bytes, but the pickle declares "
                                  f"{out.size}")
        # The data starts after the local header, whose name and extra field lengths
        # may differ from the central directory's.
        self.f.seek(info.header_offset)
        head = self.f.read(30)
        if len(head) < 30 or head[:4] != b"PK\x03\x04":
            raise CheckpointError(f"truncated or corrupt {what} (no local header)")
        n_name, n_extra = struct.unpack("<HH", head[26:30])
        start = info.header_offset + 30 + n_name + n_extra
        if start + info.compress_size > self.size:
            raise CheckpointError(f"truncated: {what} ends past the end of the file")
        if info.compress_type == zipfile.ZIP_STORED:
            if info.compress_size != info.file_size:
                raise CheckpointError(f"corrupt {what}: stored sizes disagree")
            read_exactly(self.f, start, out, what)
        else:
            self._inflate(start, info.compress_size, out, what)
        if zlib.crc32(out) != info.CRC:
            raise CheckpointError(f"truncated or corrupt {what} (CRC mismatch)")

    def _inflate(self, start, compressed, out, what):
        d, pos, left = zlib.decompressobj(-15), 0, compressed
        self.f.seek(start)
        try:
            while not d.eof:
                data = d.unconsumed_tail
                if not data:
                    if not left:
                        break
                    data = self.f.read(min(_CHUNK, left))
                    if not data:
                        raise CheckpointError(f"truncated: {what} ends early")
                    left -= len(data)
                # Never inflate more than one byte past the declared size.
                piece = d.decompress(data, out.size - pos + 1)
                if pos + len(piece) > out.size:
                    raise CheckpointError(f"corrupt {what}: inflates past its declared {out.size} bytes")
                out[pos:pos + len(piece)] = np.frombuffer(piece, np.uint8)
                pos += len(piece)
        except zlib.error:
            raise CheckpointError(f"truncated or corrupt {what} (bad deflate data)") from None
        if not d.eof or pos != out.size:
            raise CheckpointError(f"truncated or corrupt {what} (inflates to {pos} of {out.size} bytes)")
