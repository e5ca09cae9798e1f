"""The failover drill's report and verdict (drill.py): client-visible failures by kind,
split into those while a node was up and those excused (while no node was up, see
drill_faults.ClusterWatch.excused), the checks of what was acknowledged, and the one-line
verdict `drill PASSED: …` / `drill FAILED: …`."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drill import Drill
    from drill_faults import Faults

MIB = 1024 * 1024
KINDS = ("get_cut", "get_failed", "put_failed", "tus_stalled")


@dataclass
class Failure:
    kind: str  # one of KINDS
    what: str  # e.g. "PUT 502", "GET ConnectionResetError mid-body"
    began: float  # epoch seconds: the attempt started
    ended: float  # and the client saw it fail


@dataclass
class Checked:
    """What the verification after the load found (names)."""

    verified: int
    lost: list[str]  # acknowledged, then gone or with other bytes
    partial: list[str]  # visible, never acknowledged, not the bytes the drill sent
    whole: list[str]  # visible, never acknowledged, but whole: only the answer was lost
    missing: list[str]  # acknowledged, not listed


def by_kind(failures: list[Failure]) -> dict[str, int]:
    return {k: sum(f.kind == k for f in failures) for k in KINDS}


def by_message(failures: list[Failure]) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in failures:
        out[f.what] = out.get(f.what, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def split_excused(failures: list[Failure], windows) -> tuple[list[Failure], list[Failure]]:
    """(failures while a node was up, failures excused: seen inside a window)."""
    counted, excused = [], []
    for f in failures:
        (excused if any(a <= f.ended <= b for a, b in windows) else counted).append(f)
    return counted, excused


def listing(kinds: dict[str, int]) -> str:
    return ", ".join(f"{k}={n}" for k, n in kinds.items() if n)


def verdict(counted: dict[str, int], excused: int, allow, problems: list[str],
            verified: int) -> tuple[bool, str]:
    """The one-line verdict; `problems` are the failed checks other than failures."""
    failing = {k: n for k, n in counted.items() if k not in allow}
    allowed = {k: n for k, n in counted.items() if k in allow and n}
    if n := sum(failing.values()):
        problems = [f"{n} client-visible failure{'s' * (n != 1)} while a node was up: "
                    f"{listing(failing)}",
                    *problems]
    notes = [f"{sum(allowed.values())} allowed by --allow: {listing(allowed)}"] if allowed else []
    notes += [f"{excused} while no node was up, excused",
              f"{verified} acknowledged files verified"]
    if problems:
        return False, f"drill FAILED: {'; '.join(problems)} ({'; '.join(notes)})"
    return True, f"drill PASSED: 0 client-visible failures ({'; '.join(notes)})"


def report(drill: Drill, chaos: Faults, started: float, checked: Checked, windows,
           no_node_up) -> int:
    """Prints the report and the verdict; the exit status."""
    s, c = drill.stats, checked
    counted, excused = split_excused(s.failures, windows)
    print(json.dumps({
        "duration_s": round(time.time() - started, 1),
        "requests_sent": s.sent,
        "requests_failed": len(s.failures),
        "client_retries": s.retried,
        "uploads_acknowledged": s.uploads_acked,
        "tus_uploads_acknowledged": s.tus_acked,
        "tus_resumes": sum(s.resumes.values()),
        "downloads_verified_during_load": s.downloads_ok,
        "downloads_with_wrong_bytes": s.wrong_bytes,
        "mib_uploaded": round(s.bytes_up / MIB, 1),
        "mib_downloaded": round(s.bytes_down / MIB, 1),
        "acknowledged_files_verified": c.verified,
        "acknowledged_files_lost_or_corrupt": len(c.lost),
        "partial_or_unacknowledged_files_visible": len(c.partial),
        "whole_files_visible_whose_acknowledgement_was_lost": len(c.whole),
        "acknowledged_files_missing_from_listing": len(c.missing),
        "client_visible_failures": by_kind(counted),
        "failures_while_no_node_was_up": by_kind(excused),
        "allowed_kinds": sorted(drill.opts.allow),
        "no_node_up_intervals": [{"from_s": round(a - started, 2), "to_s": round(b - started, 2)}
                                 for a, b in no_node_up],
        "kills": chaos.kills,
        "hangs": chaos.hangs,
        "failures_by_message": by_message(s.failures),
        "tus_resumes_by_message": s.resumes,
        "slowest_s": s.slowest,
    }, indent=2))
    if c.lost:
        print("LOST:", c.lost[:20])
    if c.partial:
        print("VISIBLE BUT NEVER ACKNOWLEDGED:", c.partial[:20])
    ok, line = verdict(by_kind(counted), len(excused), drill.opts.allow,
                       problems(c, s.wrong_bytes), c.verified)
    print(line)
    return 0 if ok else 1


def problems(c: Checked, wrong_bytes: int) -> list[str]:
    """The failed checks of what was acknowledged (always fatal, whatever --allow says)."""
    checks = [(len(c.lost), "acknowledged files lost or corrupt"),
              (wrong_bytes, "downloads returned wrong bytes"),
              (len(c.partial), "files visible that were never acknowledged"),
              (len(c.missing), "acknowledged files missing from the listing")]
    found = [f"{n} {what}" for n, what in checks if n]
    return found if c.verified else [*found, "no acknowledged file to verify"]
