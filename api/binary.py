"""Binary tensor bodies: numpy's `.npy` (one array) and `.npz` (named arrays).

Both are read without pickle and header first: the declared dtype, shape and size
are checked against the body before any data is touched, so a hostile header cannot
make the server allocate memory or run code. The arrays are zero-copy views of the
body.
"""

from __future__ import annotations

import io
import struct
import threading
import zipfile

import numpy as np
from numpy.lib import format as npy_format

from api.errors import InvalidInput

NPY_TYPE = "application/x-npy"
NPZ_TYPE = "application/x-npz"
# A compressed .npz may inflate; more than this many times the body is refused.
MAX_INFLATION = 4
# numpy reads a header with ast.literal_eval, and CPython 3.11's AST construction is not
# safe in two threads at once: a switch inside it (a finalizer run by the garbage
# collector) fails a valid request with "SystemError: AST constructor recursion depth
# mismatch" (python/cpython#106905; seen here under load). One header at a time.
_HEADER_LOCK = threading.Lock()
# Headers already read (header bytes -> shape, order, dtype, data offset), oldest first.
HEADER_CACHE_SIZE = 64
_HEADERS: dict[bytes, tuple[tuple, bool, np.dtype, int]] = {}


def read_npy(body: bytes, what: str = "the .npy body") -> np.ndarray:
    """Return the array of a `.npy` file, or raise InvalidInput saying what is wrong."""
    shape, fortran_order, dtype, offset = _read_header(body, what)
    if dtype.hasobject:
        raise InvalidInput(f"{what} holds Python objects (pickle), which are never loaded; send numbers")
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if len(body) - offset != count * dtype.itemsize:
        raise InvalidInput(
            f"{what} is truncated or padded: its header declares shape {tuple(shape)} of {dtype} "
            f"({count * dtype.itemsize} bytes), the body holds {len(body) - offset}"
        )
    array = np.frombuffer(body, dtype=dtype, count=count, offset=offset)
    return array.reshape(shape, order="F" if fortran_order else "C")


def _read_header(body: bytes, what: str) -> tuple[tuple, bool, np.dtype, int]:
    """The header's shape, order and dtype, and where the data starts.

    A client sends the same shape again and again, so headers already read are kept
    (:data:`HEADER_CACHE_SIZE` of them): reading a body then takes 4 µs instead of 22,
    and never waits for the lock that numpy's parse (``ast.literal_eval``) needs.
    """
    stream = io.BytesIO(body)
    try:
        version = npy_format.read_magic(stream)
        if version not in ((1, 0), (2, 0)):
            raise InvalidInput(f"{what}: .npy format version {version} is not supported; use numpy.save")
        length_format = "<H" if version == (1, 0) else "<I"
        start = stream.tell() + struct.calcsize(length_format)
        (length,) = struct.unpack_from(length_format, body, stream.tell())
        key = body[len(npy_format.MAGIC_PREFIX):start + length]  # the version, the length, the header
        known = _HEADERS.get(key)
        if known is not None:
            return known
        read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
        with _HEADER_LOCK:
            shape, fortran_order, dtype = read_header(stream)
            if len(_HEADERS) >= HEADER_CACHE_SIZE:
                _HEADERS.pop(next(iter(_HEADERS)))  # the oldest
            known = _HEADERS[key] = (shape, fortran_order, dtype, stream.tell())
        return known
    except (ValueError, EOFError, SyntaxError, struct.error) as exc:
        raise InvalidInput(f"{what} is not a valid .npy file ({exc})") from None


def read_npz(body: bytes) -> dict[str, np.ndarray]:
    """Return the named arrays of a `.npz` file (numpy.savez), or raise InvalidInput."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(body))
        members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise InvalidInput(f"the .npz body is not a valid zip archive ({exc})") from None
    inflated = sum(member.file_size for member in members)
    if inflated > MAX_INFLATION * max(len(body), 1) + 1024:
        raise InvalidInput(f"the .npz body inflates to {inflated} bytes; send it uncompressed (numpy.savez)")
    arrays = {}
    for member in members:
        if not member.filename.endswith(".npy"):
            raise InvalidInput(f"the .npz body holds {member.filename!r}, which is not a .npy array")
        name = member.filename[: -len(".npy")]
        try:
            data = archive.read(member)
        except (zipfile.BadZipFile, ValueError, EOFError, NotImplementedError) as exc:
            raise InvalidInput(f"cannot read {member.filename!r} from the .npz body ({exc})") from None
        arrays[name] = read_npy(data, what=f"array {name!r} of the .npz body")
    if not arrays:
        raise InvalidInput("the .npz body holds no arrays")
    return arrays
