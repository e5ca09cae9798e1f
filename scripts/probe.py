"""The HTTP check that scripts/cluster and its drill (drill.py) share."""

from __future__ import annotations

import urllib.request


def http_ok(url: str, headers: dict[str, str] | None = None) -> bool:
    """Whether `url` answers 200 (`headers`, e.g. Authorization, sent along)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=2) as r:
            return r.status == 200
    except OSError:
        return False
