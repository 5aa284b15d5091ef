"""Range checks for numeric options, shared by :func:`amiwire.connect` and the Simulator: an
out-of-range number (negative, NaN, infinite, a port past 65535) is refused by its argument's
name before anything starts, instead of surfacing later as an OverflowError or a hang."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any


def check_ranges(
    options: Mapping[str, Any],
    *,
    non_negative: Iterable[str],
    counts: Mapping[str, range],
    error: type[Exception],
) -> None:
    """Raises ``error`` naming the first option out of range; options absent or None pass."""
    for key in non_negative:
        value = options.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
            raise error(f"{key} must be a finite number >= 0, not {value!r}")
    for key, allowed in counts.items():
        value = options.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
            raise error(f"{key} must be a whole number from {allowed.start} to {allowed.stop - 1}, not {value!r}")
