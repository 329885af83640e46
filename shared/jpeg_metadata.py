"""A JPEG's metadata dropped without re-encoding it (#11).

Re-encoding every upload only to be sure nothing but pixels is stored would cost a second generation of JPEG
loss, twice the bytes on S3 and ~150 ms for a 12-megapixel phone photo. A JPEG whose pixels need no fix (no EXIF
rotation, no colour profile to apply: `shared.imaging.check_as_encoded`) is kept as sent instead, minus
everything that is not the picture:

- every APPn segment — EXIF (GPS, camera, dates), XMP, ICC, IPTC/Photoshop, MPF, FlashPix, maker data — except a
  bare JFIF header (version and pixel density, no thumbnail) and Adobe's 12-byte APP14 (its colour-transform
  flag says how to read the components);
- every COM (comment) segment, before or between scans;
- whatever follows the end-of-image marker (the second pictures of MPF files, vendors' trailers).

Tables, frame and scan headers and the entropy-coded data are copied byte for byte, so the pixels decode exactly
as before. A stream this walker does not fully understand (a marker outside baseline/progressive/lossless JPEG,
a segment running past the end, no end-of-image) gives None, and the caller re-encodes as before.
"""

from __future__ import annotations

SOI = b"\xff\xd8"
EOI = 0xD9
SOS = 0xDA
COM = 0xFE
APP0, APP14, APP15 = 0xE0, 0xEE, 0xEF
#: Segments kept as they are: frame headers (SOF0-3, 5-7, 9-11, 13-15), Huffman and arithmetic tables, DQT,
#: restart interval, number of lines.
_KEPT = frozenset({*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), *range(0xCD, 0xD0)}) | {
    0xC4,  # DHT
    0xCC,  # DAC
    0xDB,  # DQT
    0xDD,  # DRI
    0xDC,  # DNL
}
_RESTARTS = frozenset(range(0xD0, 0xD8))
_BARE_JFIF_LENGTH = 16  # length field of a JFIF APP0 with a 0×0 thumbnail
_ADOBE_LENGTH = 14


def strip_metadata(data: bytes) -> bytes | None:
    """`data` with only the segments that make the picture; None when it is not a stream this walker knows."""
    if not data.startswith(SOI):
        return None
    out = bytearray(SOI)
    position = 2
    while True:
        marker, position = _next_marker(data, position)
        if marker is None:
            return None
        if marker == EOI:
            out += b"\xff\xd9"
            return bytes(out)  # anything after it is dropped
        if position + 2 > len(data):
            return None
        length = int.from_bytes(data[position : position + 2], "big")
        end = position + length
        if length < 2 or end > len(data):
            return None
        payload = data[position + 2 : end]
        segment = bytes([0xFF, marker]) + data[position:end]
        position = end
        if marker == SOS:
            scan_end = _end_of_scan(data, position)
            if scan_end is None:
                return None
            out += segment + data[position:scan_end]
            position = scan_end
        elif marker in _KEPT or _is_bare_jfif(marker, length, payload) or _is_adobe(marker, length, payload):
            out += segment
        elif APP0 <= marker <= APP15 or marker == COM:
            continue  # metadata: dropped
        else:
            return None  # a marker we do not know (JPEG extensions, hierarchical): leave it to a re-encode


def _next_marker(data: bytes, position: int) -> tuple[int | None, int]:
    """The marker at `position` (after any 0xFF fill bytes) and where its segment starts."""
    if position >= len(data) or data[position] != 0xFF:
        return None, position
    while position < len(data) and data[position] == 0xFF:
        position += 1
    if position >= len(data):
        return None, position
    return data[position], position + 1


def _end_of_scan(data: bytes, position: int) -> int | None:
    """Where the entropy-coded data that starts at `position` ends: the first 0xFF that is neither a stuffed zero
    (FF 00) nor a restart marker (FF D0-D7)."""
    while True:
        found = data.find(b"\xff", position)
        if found == -1 or found + 1 >= len(data):
            return None
        following = data[found + 1]
        if following == 0x00 or following in _RESTARTS:
            position = found + 2
        else:
            return found  # a marker, or the fill bytes before one (the walker skips them)


def _is_bare_jfif(marker: int, length: int, payload: bytes) -> bool:
    """JFIF's version and density, without a thumbnail (one would be a picture of its own)."""
    bare = length == _BARE_JFIF_LENGTH and payload[12:14] == b"\x00\x00"
    return marker == APP0 and bare and payload.startswith(b"JFIF\x00")


def _is_adobe(marker: int, length: int, payload: bytes) -> bool:
    """Adobe's APP14: version, two flag words and the colour transform (0: RGB/CMYK, 1: YCbCr, 2: YCCK)."""
    return marker == APP14 and length == _ADOBE_LENGTH and payload.startswith(b"Adobe")
