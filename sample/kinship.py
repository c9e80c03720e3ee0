"""Building blocks of the generator shared by its modules (no imports of the generator itself)."""
from __future__ import annotations

import math

#: GB/T 4761-2008 relation to the household head used by the generator.
REL_HEAD, REL_SPOUSE, REL_SON, REL_DAUGHTER = "02", "10", "20", "30"
REL_GRANDSON, REL_GRANDDAUGHTER, REL_FATHER, REL_MOTHER, REL_OTHER_KIN = "41", "42", "51", "52", "97"


def allocate(total: int, weights: list[float]) -> list[int]:
    """Split ``total`` into integers proportional to ``weights`` (largest remainder; ties by position)."""
    s = float(sum(weights))
    exact = [total * w / s for w in weights]
    base = [int(math.floor(x)) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - base[i]), i))
    for i in order[: total - sum(base)]:
        base[i] += 1
    return base
