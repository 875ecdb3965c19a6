"""`content_hash`: the one digest of plain data (a trial's parameters, a task-0 prefix, a
classifier's settings, a resolved sweep), so that equal content always gets an equal name."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def content_hash(data: Any, length: int | None = None) -> str:
    """sha1 of `data` as JSON with sorted keys (what JSON lacks written with str), hex, cut to
    `length` characters. Changing it renames every cached prefix and classifier and every
    configuration key already written: it stays as it is."""
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:length]
