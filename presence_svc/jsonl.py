"""JSON lines for the import commands: one object per line, read as bytes (so a stray
byte that is not UTF-8 is an error naming its line, not a crash of the whole read),
written in batches, and progress on a terminal."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Annotated, Protocol, TypeVar

import msgspec

from presence_svc.timefmt import from_iso

__all__ = [
    "BadLine",
    "Batch",
    "NulFree",
    "Progress",
    "Text",
    "decode_lines",
    "import_lines",
    "line_time",
]

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)

NulFree = Annotated[str, msgspec.Meta(pattern="^[^\x00]*$")]
"""Without NUL (PostgreSQL text cannot hold one)."""
Text = Annotated[str, msgspec.Meta(min_length=1, pattern="^[^\x00]*$")]
"""Non-empty, and without NUL (PostgreSQL text cannot hold one)."""


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


def line_time(number: int, key: str, value: str) -> int:
    """The time ``value`` of line ``number``'s ``key``, in ms; ``BadLine`` if it is not one."""
    try:
        return from_iso(value)
    except ValueError as exc:
        raise BadLine(number, f"{key} {value!r} is not a time: {exc}") from exc


class Batch(Protocol[T_contra]):
    """What an import holds until it writes it, one transaction at a time."""

    def __len__(self) -> int:
        """How many are held."""

    def add(self, number: int, line: T_contra) -> None:
        """Hold what line ``number`` says; ``BadLine`` if its values are not right."""

    async def write(self) -> int:
        """Write what is held in one transaction and let go of it; returns how many were
        written."""


async def import_lines(
    source: Iterable[bytes],
    decoder: msgspec.json.Decoder[T],
    held: Batch[T],
    *,
    batch: int,
    progress: IO[str] | None,
    status: Callable[[int, int], str],
) -> tuple[int, int]:
    """Every line of ``source`` decoded and added to ``held``, written whenever ``batch``
    are held and at the end; returns (lines read, written). Raises ``BadLine`` at the first
    bad line, once what the lines before it hold is written. ``progress``: a terminal to
    count on, ``status(read, written)`` the count."""
    meter = Progress(progress)
    read = written = 0

    async def flush() -> None:
        nonlocal written
        if len(held):
            written += await held.write()
            meter.show(status(read, written))

    try:
        for number, line in decode_lines(source, decoder):
            held.add(number, line)
            read += 1
            if len(held) >= batch:
                await flush()
    except BadLine:
        await flush()
        raise
    else:
        await flush()
    finally:
        meter.done(status(read, written))
    return read, written


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
