"""Figures beside their same-run baselines, the targets they are held to, the table and the JSON."""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Figure:
    """One measured value and the baseline it is judged against.

    ratio is value / baseline, or, when the two were measured in pairs (back to back, round after
    round), the median of the per-pair ratios: on a shared machine whose load drifts, that cancels
    the drift that two separate medians would catch differently.
    """

    key: str
    label: str
    value: float
    unit: str
    baseline: float
    baseline_label: str
    max_ratio: float | None = None  # target: ratio <= max_ratio
    max_value: float | None = None  # target: value <= max_value (when a ratio means nothing)
    min_value: float | None = None  # target: value >= min_value (a rate)
    paired_ratio: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.paired_ratio is not None:
            return self.paired_ratio
        return self.value / self.baseline if self.baseline else None

    @property
    def target(self) -> str:
        if self.max_ratio is not None:
            return f"<= {self.max_ratio:g}x"
        if self.max_value is not None:
            return f"<= {self.max_value:g}"
        if self.min_value is not None:
            return f">= {self.min_value:g}"
        return ""

    @property
    def result(self) -> str:
        if self.max_ratio is not None:
            ratio = self.ratio
            return "PASS" if ratio is not None and ratio <= self.max_ratio else "MISS"
        if self.max_value is not None:
            return "PASS" if self.value <= self.max_value else "MISS"
        if self.min_value is not None:
            return "PASS" if self.value >= self.min_value else "MISS"
        return "info"

    def as_json(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "value": self.value, "unit": self.unit,
                "baseline": self.baseline, "baseline_label": self.baseline_label, "ratio": self.ratio,
                "ratio_of": "medians of pairs" if self.paired_ratio is not None else "value / baseline",
                "target": self.target or None, "result": self.result, "detail": self.detail}


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def _number(value: float, unit: str) -> str:
    text = f"{value:.0f}" if abs(value) >= 100 or value == int(value) else f"{value:.3g}"
    return f"{text} {unit}".rstrip()


def table(figures: Sequence[Figure]) -> str:
    """A Markdown table: readable in a terminal and pasteable into docs/performance.md."""
    header = ("Figure", "Value", "Baseline", "Ratio", "Target", "Result")
    rows = [header]
    for f in figures:
        ratio = f"{f.ratio:.2f}x" if f.ratio is not None else "-"
        rows.append((f.label, _number(f.value, f.unit), f"{_number(f.baseline, f.unit)} ({f.baseline_label})",
                     ratio, f.target or "-", f.result))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def environment(settings: dict[str, Any]) -> dict[str, Any]:
    """Where and how the figures were taken."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                check=True, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": commit,
            "python": sys.version.split()[0], "platform": platform.platform(), "cpus": cpus, **settings}


def write_json(path: Path, figures: Sequence[Figure], meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"meta": meta, "figures": [f.as_json() for f in figures]}
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
