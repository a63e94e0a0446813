"""The pipes between ConcurrentPool and its processes carry length-prefixed pickle frames:
jobs one way, results the other."""

from __future__ import annotations

import os
import pickle
import struct
from typing import Any

__all__ = ["frame", "split_frames", "write_all"]

_HEADER = struct.Struct("!I")


def frame(payload: Any) -> bytes:
    """``payload`` pickled, behind its length."""
    data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to the blocking ``fd``, however many writes it takes."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def split_frames(buffer: bytearray) -> list[Any]:
    """Take the complete frames off the front of ``buffer``; a partial one stays for later."""
    frames = []
    while len(buffer) >= _HEADER.size:
        (size,) = _HEADER.unpack_from(buffer)
        if len(buffer) < _HEADER.size + size:
            break
        # Frames come only from this worker's own processes, over pipes it created.
        frames.append(pickle.loads(bytes(buffer[_HEADER.size : _HEADER.size + size])))  # noqa: S301
        del buffer[: _HEADER.size + size]
    return frames
