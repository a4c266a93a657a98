"""JSON lines for the import commands: one object per line, read as bytes (so a stray
byte that is not UTF-8 is an error naming its line, not a crash of the whole read), and
progress on a terminal."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import IO, TypeVar

import msgspec

__all__ = ["BadLine", "Progress", "decode_lines"]

T = TypeVar("T")


class BadLine(ValueError):
    """A line that is not what the format says; the message starts with its number."""

    def __init__(self, number: int, reason: str) -> None:
        super().__init__(f"line {number}: {reason}")
        self.number = number


def decode_lines(
    source: Iterable[bytes], decoder: msgspec.json.Decoder[T]
) -> Iterator[tuple[int, T]]:
    """Each non-blank line decoded, with its number (counting from 1, blank lines too)."""
    for number, line in enumerate(source, 1):
        if not line.strip():
            continue
        try:
            yield number, decoder.decode(line)
        except msgspec.DecodeError as exc:
            raise BadLine(number, str(exc)) from exc


class Progress:
    """A count rewritten in place on a terminal at most twice a second; silent without one."""

    def __init__(self, out: IO[str] | None) -> None:
        self._out = out
        self._last = 0.0

    def show(self, text: str) -> None:
        if self._out is not None and time.monotonic() - self._last > 0.5:
            self._last = time.monotonic()
            self._out.write(f"\r{text}")
            self._out.flush()

    def done(self, text: str) -> None:
        if self._out is not None:
            self._out.write(f"\r{text}{' ' * 20}\n")
