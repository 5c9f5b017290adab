"""Attachments the official edXML library (EdXML102) zipped before sending.

The library zips every attachment whose extension is not pdf, doc, docx, xsl, xslx or zip,
keeps the original file name and labels it `application/zip`, and unzips on reading. So an
attachment labelled `application/zip` whose name does not end in `.zip` is such a file: the
receiver gets it back unpacked, once it is certain that unpacking is safe (one file, not
encrypted, within a total size and a compression ratio). Anything else stays as received.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from dataclasses import dataclass

_CHUNK = 1 << 16


@dataclass(frozen=True)
class ZipLimits:
    """How far an attachment the official library zipped may unpack (zip-bomb guard)."""

    max_total_bytes: int = 100 << 20
    #: unpacked bytes per byte of the zip
    max_ratio: float = 100.0


class ZipRefused(Exception):
    """Unpacking would exceed the limits: the packet is refused (a zip bomb, or too big)."""


class ZipKept(Exception):
    """Not the library's one-file zip: the attachment stays as received."""


def library_zipped(declared_type: str, name: str, data: bytes) -> bool:
    return (declared_type.strip().lower() == "application/zip"
            and not name.strip().lower().endswith(".zip")
            and data.startswith(b"PK\x03\x04"))


def unpack_library_zip(data: bytes, limits: ZipLimits) -> tuple[str, bytes]:
    """(entry name, original bytes) of the zip's one file, reading at most the limits."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        files = [i for i in archive.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, zlib.error, ValueError, EOFError) as exc:
        raise ZipKept(f"labelled application/zip but not a readable zip ({exc})") from None
    if len(files) != 1:
        raise ZipKept(f"the zip holds {len(files)} files")
    info = files[0]
    if info.flag_bits & 0x1:
        raise ZipKept(f"zip entry {info.filename!r} is encrypted")
    budget = min(limits.max_total_bytes, int(limits.max_ratio * len(data)))
    if info.file_size > limits.max_total_bytes:
        raise ZipRefused(f"unpacks to more than {limits.max_total_bytes} bytes "
                         f"(the zip says {info.file_size})")
    out = bytearray()
    try:
        with archive.open(info) as f:
            while chunk := f.read(_CHUNK):
                out += chunk
                if len(out) > budget:
                    break
    except (zipfile.BadZipFile, zlib.error, ValueError, EOFError, NotImplementedError) as exc:
        raise ZipKept(f"zip entry {info.filename!r} cannot be read ({exc})") from None
    if len(out) > limits.max_total_bytes:
        raise ZipRefused(f"unpacks to more than {limits.max_total_bytes} bytes")
    if len(out) > budget:
        raise ZipRefused(f"compression ratio over {limits.max_ratio:g}:1 "
                         f"({len(out)} bytes from {len(data)} and more to come), above the "
                         f"limit {limits.max_ratio:g}: refused as a zip bomb")
    return info.filename, bytes(out)
