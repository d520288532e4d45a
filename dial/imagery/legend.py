"""Class legends: names, colours, and how a mask file's values map to classes."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

IGNORE_INDEX = 255


@dataclass(frozen=True)
class ClassInfo:
    name: str
    colour: tuple[int, int, int]

    @property
    def hex(self) -> str:
        return "#{:02X}{:02X}{:02X}".format(*self.colour)


def parse_hex(colour: str) -> tuple[int, int, int]:
    value = colour.lstrip("#")
    if len(value) != 6:
        raise ValueError(f"colour {colour!r} is not #RRGGBB")
    return tuple(int(value[i : i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]


@dataclass(frozen=True)
class Legend:
    """Classes in index order, plus colours that mean "not annotated"."""

    classes: tuple[ClassInfo, ...]
    unannotated: tuple[tuple[int, int, int], ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)

    def index_of(self, name: str) -> int:
        for i, info in enumerate(self.classes):
            if info.name == name or info.name.split(" (")[0] == name:
                return i
        raise KeyError(f"class {name!r} is not in the legend; classes are {list(self.names)}")

    @classmethod
    def load(cls, path: Path) -> "Legend":
        data = json.loads(Path(path).read_text())
        entries = sorted(data["classes"], key=lambda e: e.get("index", 0))
        classes = []
        for entry in entries:
            rgb = entry.get("rgb") or parse_hex(entry["hex"])
            classes.append(ClassInfo(name=entry["name"], colour=tuple(int(v) for v in rgb)))
        unannotated = []
        if "unannotated" in data:
            un = data["unannotated"]
            unannotated.append(tuple(int(v) for v in (un.get("rgb") or parse_hex(un["hex"]))))
        return cls(classes=tuple(classes), unannotated=tuple(unannotated))

    @classmethod
    def binary(cls, foreground: str = "foreground") -> "Legend":
        return cls(classes=(ClassInfo(f"not {foreground}", (0, 0, 0)), ClassInfo(foreground, (255, 255, 255))))
