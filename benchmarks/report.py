"""The results table: figure | reelgen | baseline | ratio | target | pass/fail."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """A bound on reelgen's figure; ``text`` is how it reads in the table."""

    text: str
    check: Callable[[float], bool]

    @staticmethod
    def at_most(limit: float, text: str) -> Target:
        return Target(text, lambda value: value <= limit + 1e-12)


@dataclass(frozen=True)
class Row:
    figure: str
    reelgen: float | None
    baseline: float | None
    unit: str = ""
    target: Target | None = None
    note: str = ""
    """Extra text after the reelgen figure, e.g. the share of the generation time."""
    baseline_note: str = ""
    decimals: int = 2
    compare: bool = True
    """False where a ratio means nothing (counts of jobs that succeeded)."""

    def verdict(self) -> str:
        if self.target is None or self.reelgen is None or math.isnan(self.reelgen):
            return "-"
        return "pass" if self.target.check(self.reelgen) else "FAIL"

    def ratio(self) -> str:
        if not self.compare or self.reelgen is None or self.baseline is None or self.baseline == 0:
            return "-"
        if math.isnan(self.reelgen) or math.isnan(self.baseline):
            return "-"
        return f"{self.reelgen / self.baseline:.2f}x"

    def cell(self, value: float | None, note: str) -> str:
        if value is None:
            return "n/a"
        if math.isnan(value):
            return "-"
        text = f"{value:.{self.decimals}f}{(' ' + self.unit) if self.unit else ''}"
        return f"{text} {note}" if note else text


HEADERS = ("figure", "reelgen", "baseline", "ratio", "target", "pass/fail")


def cells(row: Row) -> tuple[str, str, str, str, str, str]:
    return (
        row.figure,
        row.cell(row.reelgen, row.note),
        row.cell(row.baseline, row.baseline_note),
        row.ratio(),
        row.target.text if row.target else "-",
        row.verdict(),
    )


def render(rows: Sequence[Row], *, markdown: bool = False) -> str:
    """A plain-text table (aligned columns), or a Markdown one."""
    table = [HEADERS, *(cells(r) for r in rows)]
    if markdown:
        lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
        lines += [
            "| " + " | ".join(c.replace("|", "\\|") for c in line) + " |" for line in table[1:]
        ]
        return "\n".join(lines)
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADERS))]
    out = []
    for index, line in enumerate(table):
        out.append("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        if index == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)
