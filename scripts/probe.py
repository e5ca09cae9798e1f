"""The HTTP check that scripts/cluster and its drill (drill.py) share."""

from __future__ import annotations

import urllib.request


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False
