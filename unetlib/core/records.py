"""What a finished output was asked to compute, and whether a new request is the same.

Every step that can skip work (train, quantify, split-stack, pick-frames, crossval)
records its request beside its output and compares the next request with it here, with
one rule: both are compared as JSON (tuples and lists alike); a setting the record lacks
was added to unetlib after the output was made and is left out, and a setting only the
record has was removed since and must have been unset (``None``) there. So an output made
by an earlier version stays reusable after an upgrade.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["as_record", "same_request"]


def as_record(value: Any) -> Any:
    """``value`` as it reads back from a JSON file: tuples become lists, keys strings.

    Examples
    --------
    >>> as_record({"lasers": (1, 2), "seed": 0})
    {'lasers': [1, 2], 'seed': 0}
    """
    return json.loads(json.dumps(value))


def same_request(current: Any, stored: Any) -> bool:
    """Whether ``current`` asks for what ``stored`` (read from a record) asked for.

    Examples
    --------
    >>> same_request({"epochs": 5, "lasers": (1, 2)}, {"epochs": 5, "lasers": [1, 2]})
    True
    >>> same_request({"epochs": 5, "new_option": "on"}, {"epochs": 5})  # added since
    True
    >>> same_request({"epochs": 5}, {"epochs": 5, "old_option": None})  # removed since
    True
    >>> same_request({"epochs": 5}, {"epochs": 5, "old_option": 3})  # removed, was set
    False
    >>> same_request({"epochs": 6}, {"epochs": 5})
    False
    """
    return _same(as_record(current), as_record(stored))


def _same(current: Any, stored: Any) -> bool:
    if isinstance(current, dict) and isinstance(stored, dict):
        removed = [key for key in stored if key not in current]
        return (all(stored[key] is None for key in removed)
                and all(_same(value, stored[key]) for key, value in current.items()
                        if key in stored))
    return current == stored
