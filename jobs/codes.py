"""China code pack (first cut): GB 11643 citizen ID numbers.

Extended by the code-pack work: keep the public signatures below stable.
"""
from __future__ import annotations

#: GB 11643-1999 §8.2: weights W_i = 2^(17-i) mod 11 for the 17 body digits (ISO 7064 MOD 11-2).
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
#: Check character for (sum of a_i * W_i) mod 11 = 0..10.
ID_CHECK_CHARS = "10X98765432"


def id_check_char(body17: str) -> str:
    """Return the GB 11643 check character ('0'-'9' or 'X') of a 17-digit body.

    Raises:
        ValueError: ``body17`` is not 17 ASCII digits.
    """
    if len(body17) != 17 or not body17.isascii() or not body17.isdigit():
        raise ValueError(f"an ID body is 17 digits, got {body17!r}")
    return ID_CHECK_CHARS[sum(int(d) * w for d, w in zip(body17, ID_WEIGHTS)) % 11]
