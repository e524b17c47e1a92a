"""Waiting items served round-robin by group: an ApiKey's namespace.

A namespace with 10,000 waiting keys delays another namespace's key by one item per
turn, not by 10,000: each group has its own first-in-first-out line, and the groups
take turns (the apiserver's API Priority and Fairness does the same across flows).
One tenant's flood of changes thus waits mostly for itself (finding K2).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


def first_part(item: Hashable) -> Hashable:
    """The group of a ``(namespace, name)`` key is its namespace; anything else is its own."""
    return item[0] if isinstance(item, tuple) and item else item


class FairQueue(Generic[K]):
    def __init__(self, group: Callable[[K], Hashable] = first_part) -> None:
        self._group = group
        self._lines: dict[Hashable, deque[K]] = {}
        self._turns: deque[Hashable] = deque()  # groups with waiting items, next first
        self._members: set[K] = set()

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, item: K) -> bool:
        return item in self._members

    def push(self, item: K) -> bool:
        """Queue ``item`` at the end of its group's line; False if it waits already."""
        if item in self._members:
            return False
        self._members.add(item)
        group = self._group(item)
        line = self._lines.get(group)
        if line is None:
            line = self._lines[group] = deque()
            self._turns.append(group)
        line.append(item)
        return True

    def discard(self, item: K) -> None:
        """Stop ``item`` waiting (its place is skipped when its turn comes)."""
        self._members.discard(item)

    def pop(self) -> K | None:
        """The first waiting item of the group whose turn it is, or None."""
        while self._turns:
            group = self._turns.popleft()
            line = self._lines[group]
            item = line.popleft()
            if line:
                self._turns.append(group)
            else:
                del self._lines[group]
            if item in self._members:
                self._members.discard(item)
                return item
        return None
