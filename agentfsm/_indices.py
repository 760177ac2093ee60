"""``Indices``: a sequence of message indices kept as runs, so its size does not grow with
the history (a context window over 10,000 messages that sends them all is one run)."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, overload

__all__ = ["Indices"]


class Indices(Sequence[int]):
    """An immutable sequence of ints stored as runs of consecutive ascending numbers.

    It reads like the tuple it stands for: ``len``, indexing, slicing (a slice is a tuple),
    iteration, ``in`` (a binary search), and it equals the tuple of the same numbers
    (``Indices.of(range(3)) == (0, 1, 2)``). Any sequence of ints can be held, in any order;
    it is compact when the numbers come in runs, as the indices a context window selects do.

    ``runs`` are ``(start, stop)`` pairs, ``range(start, stop)`` each.
    """

    __slots__ = ("_ascending", "_ends", "_hash", "_runs")

    _runs: tuple[tuple[int, int], ...]
    _ends: tuple[int, ...] | None  # cumulative lengths, built on first positional access
    _hash: int | None
    _ascending: bool | None

    def __init__(self, runs: Iterable[tuple[int, int]] = ()) -> None:
        """The sequence of ``runs`` (``(start, stop)`` pairs, each non-empty), consecutive
        runs merged."""
        merged: list[tuple[int, int]] = []
        for start, stop in runs:
            if stop <= start:
                raise ValueError(f"the run ({start}, {stop}) is empty")
            if merged and merged[-1][1] == start:
                merged[-1] = (merged[-1][0], stop)
            else:
                merged.append((start, stop))
        self._set(tuple(merged))

    def _set(self, runs: tuple[tuple[int, int], ...]) -> None:
        self._runs = runs
        self._ends = None
        self._hash = None
        self._ascending = None

    @classmethod
    def _unmerged(cls, runs: tuple[tuple[int, int], ...]) -> Indices:
        """The runs as given, not checked or merged: a stored form still to be checked."""
        made = cls.__new__(cls)
        made._set(runs)
        return made

    @classmethod
    def of(cls, values: Iterable[int]) -> Indices:
        """The sequence of ``values`` (an ``Indices`` is returned as it is)."""
        if isinstance(values, Indices):
            return values
        if isinstance(values, range) and values.step == 1:
            return cls(((values.start, values.stop),) if len(values) else ())
        runs: list[tuple[int, int]] = []
        start = stop = None
        for value in values:
            if stop is not None and value == stop:
                stop += 1
                continue
            if start is not None and stop is not None:
                runs.append((start, stop))
            start, stop = value, value + 1
        if start is not None and stop is not None:
            runs.append((start, stop))
        made = cls.__new__(cls)
        made._set(tuple(runs))
        return made

    @property
    def runs(self) -> tuple[tuple[int, int], ...]:
        """The ``(start, stop)`` pairs, in order."""
        return self._runs

    def _cumulative(self) -> tuple[int, ...]:
        ends = self._ends
        if ends is None:
            ends = self._ends = tuple(itertools.accumulate(b - a for a, b in self._runs))
        return ends

    def __len__(self) -> int:
        ends = self._cumulative()
        return ends[-1] if ends else 0

    def __bool__(self) -> bool:
        return bool(self._runs)

    def __iter__(self) -> Iterator[int]:
        return itertools.chain.from_iterable(itertools.starmap(range, self._runs))

    def __reversed__(self) -> Iterator[int]:
        return itertools.chain.from_iterable(
            range(stop - 1, start - 1, -1) for start, stop in reversed(self._runs)
        )

    @overload
    def __getitem__(self, index: int) -> int: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[int, ...]: ...

    def __getitem__(self, index: int | slice) -> int | tuple[int, ...]:
        if isinstance(index, slice):
            return tuple(self)[index]
        ends = self._cumulative()
        size = ends[-1] if ends else 0
        if index < 0:
            index += size
        if not 0 <= index < size:
            raise IndexError("Indices index out of range")
        k = bisect.bisect_right(ends, index)
        before = ends[k - 1] if k else 0
        return self._runs[k][0] + index - before

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, int):
            return False
        runs = self._runs
        if self.sorted_and_unique():
            k = bisect.bisect_right(runs, (value, float("inf"))) - 1
            return k >= 0 and runs[k][0] <= value < runs[k][1]
        return any(a <= value < b for a, b in runs)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Indices):
            return self._runs == other._runs
        if isinstance(other, tuple):
            return len(other) == len(self) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(tuple(self))  # as the equal tuple's
        return self._hash

    def __repr__(self) -> str:
        if len(self._runs) <= 8 and len(self) <= 32:
            return repr(tuple(self))
        shown = ", ".join(f"{a}" if b == a + 1 else f"{a}..{b - 1}" for a, b in self._runs[:8])
        more = ", …" if len(self._runs) > 8 else ""
        return f"Indices({shown}{more}; {len(self)} in all)"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Indices, (self._runs,))

    def sorted_and_unique(self) -> bool:
        """True when the numbers ascend, each once."""
        ascending = self._ascending
        if ascending is None:
            runs = self._runs
            ascending = self._ascending = all(
                a < b and b <= c for (a, b), (c, _) in itertools.pairwise(runs)
            ) and all(a < b for a, b in runs[-1:])
        return ascending

    def complement(self, size: int) -> Indices:
        """The numbers of ``range(size)`` not in this sequence (which must ascend)."""
        gaps: list[tuple[int, int]] = []
        position = 0
        for start, stop in self._runs:
            if start >= size:
                break
            if start > position:
                gaps.append((position, start))
            position = max(position, stop)
        if position < size:
            gaps.append((position, size))
        return Indices(gaps)


def as_indices(values: Iterable[int]) -> Indices:
    """``Indices.of``, as an attrs converter."""
    return Indices.of(values)
