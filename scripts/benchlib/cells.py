"""Table cells from raw results: medians, per-round ratios, peaks, and the verdict column.
`results[section][workload][target]` is a list of samples (one dict per run)."""

from __future__ import annotations

import statistics


def values(results, sec, wl, target, key) -> list[float]:
    return [s[key] for s in results.get(sec, {}).get(wl, {}).get(target, []) if key in s]


def med(results, sec, wl, target, key) -> float | None:
    v = values(results, sec, wl, target, key)
    return statistics.median(v) if v else None


def ratio(results, sec, wl, target, base, key="mbps") -> float | None:
    """Median over the rounds of target / base in the same round (ratio of the medians when
    the two were not measured in the same rounds)."""
    a, b = values(results, sec, wl, target, key), values(results, sec, wl, base, key)
    if not a or not b:
        return None
    if len(a) == len(b):
        return statistics.median(x / y for x, y in zip(a, b))
    return statistics.median(a) / statistics.median(b)


def cell(results, sec, wl, target, key, ratio_to: str | None = "direct", digits=0) -> str:
    v = values(results, sec, wl, target, key)
    if not v:
        return "–"
    m = statistics.median(v)
    text = f"{m:.{digits}f}"
    if len(v) > 1:
        text += f" [{min(v):.{digits}f}–{max(v):.{digits}f}]"
    x = ratio(results, sec, wl, target, ratio_to, key) if ratio_to and target != ratio_to else None
    if x:
        text += f" ×{x:.2f}"
    return text


def peak(results, sec, wl, target, key) -> float | None:
    v = values(results, sec, wl, target, key)
    return max(v) if v else None


def size_label(size: int) -> str:
    return "1 GiB" if size == 1 << 30 else f"{size >> 20} MiB"


def row(label: str, cells: list[str]) -> str:
    return f"| {label} | " + " | ".join(cells) + " |"


def multi(results, sec, target, parts, digits=2) -> str:
    """Several medians in one cell, e.g. CPU s/GiB for download / upload."""
    got = [med(results, sec, wl, target, key) for wl, key in parts]
    if all(g is None for g in got):
        return "–"
    return " / ".join("–" if g is None else f"{g:.{digits}f}" for g in got)


def fmt_mib(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f}"


def verdict(ok: bool, close: bool = False) -> str:
    return "**met**" if ok else ("missed (within 3 %, noise level)" if close else "**missed**")
