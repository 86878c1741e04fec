"""Where every value of a spec came from: 1-based (line, col) by path from the document root, and,
for objects made by a `repeat:` template or filled from `defaults:`, the path of the node in the
file they were made from and the name of the instance (`pods[17].links[0]`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

Path_ = tuple[str | int, ...]


def dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


@dataclass
class SourceMap:
    """1-based (line, col) of every value and mapping key, by path from the document root.
    The positions may be recorded late (`defer`): only a problem or a warning needs one, and
    recording them costs as much as the rest of a parse."""

    filename: str
    _values: dict[Path_, tuple[int, int]] = field(default_factory=dict, repr=False)
    _keys: dict[Path_, tuple[int, int]] = field(default_factory=dict, repr=False)
    # a path of the expanded spec (an item's, or a defaulted field's) → (the path in the file it
    # was made from, its name in messages); longest prefix wins
    redirects: dict[Path_, tuple[Path_, str]] = field(default_factory=dict)
    # a path in the file → the file it is in, when not `filename` (an `include:` fragment)
    files: dict[Path_, str] = field(default_factory=dict)
    # records the positions into the map when they are first asked for (a module-level function
    # or a partial of one: a Loaded stays picklable)
    _pending: Callable[[SourceMap], object] | None = field(default=None, repr=False, compare=False)

    def defer(self, record: Callable[[SourceMap], object]) -> None:
        """Have `record(a SourceMap)` record the positions when they are first needed, not now."""
        self._pending = record

    def _recorded(self) -> None:
        """Record the deferred positions: into a map of their own, which then replaces this one's
        tables at once (a reader in another thread sees them all or none)."""
        record = self._pending
        if record is None:
            return
        into = SourceMap(self.filename)
        record(into)
        self._values, self._keys, self._pending = into._values, into._keys, None

    @property
    def values(self) -> dict[Path_, tuple[int, int]]:
        """(line, col) of every value, by path."""
        if self._pending is not None:
            self._recorded()
        return self._values

    @property
    def keys(self) -> dict[Path_, tuple[int, int]]:
        """(line, col) of every mapping key, by the path of its value."""
        if self._pending is not None:
            self._recorded()
        return self._keys

    def origin(self, path: Path_) -> tuple[Path_, str]:
        """(the path in the file, the name of the object at `path`: "" when it is written there)."""
        if self.redirects:
            for n in range(len(path), 0, -1):
                hit = self.redirects.get(path[:n])
                if hit is not None:
                    src, name = hit
                    rest = path[n:]
                    if not rest:
                        return src, name
                    tail = dotted(rest)
                    return (*src, *rest), name + (tail if isinstance(rest[0], int) else "." + tail)
        return path, ""

    def position(self, path: Path_, key: bool = False) -> str:
        """file:line:col of a path in the file (not an expanded one): the key itself for key
        problems, else the value; falls back to the nearest existing ancestor (e.g. for a
        missing field, the mapping that lacks it)."""
        probe = tuple(path)
        while True:
            table = self.keys if key else self.values
            if probe in table:
                line, col = table[probe]
                return f"{self._file(probe)}:{line}:{col}"
            if not probe:
                return f"{self.filename}:1:1"
            probe = probe[:-1]
            key = False

    def _file(self, path: Path_) -> str:
        if self.files:
            for n in range(len(path), 0, -1):
                hit = self.files.get(path[:n])
                if hit is not None:
                    return hit
        return self.filename

    def where(self, path: Path_, key: bool = False) -> str:
        """Position of a path of the (expanded) spec; for an object made by a template, the
        template's position followed by the instance's name (`t.yaml:12:9: pods[17].links[0].name`)."""
        src, name = self.origin(path)
        pos = self.position(src, key)
        return f"{pos}: {name}" if name else pos

    def describe(self, path: Path_, key: bool = False) -> str:
        """`file:line:col: NAME` of a path, for a message that follows."""
        src, name = self.origin(path)
        return f"{self.position(src, key)}: {name or dotted(path)}"
