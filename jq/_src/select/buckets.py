"""Bucketed sizes: the shapes jq compiles for, so one compiled program serves many tensors.

Every size is rounded up to the ladder ``8, 12, 16, 24, 32, 48, ...`` (``2^k`` and
``1.5 * 2^k``): at most 50 % padding (33 % on average over an octave) and two programs per
octave of sizes. Padded slots are masked out of every reduction, so results do not depend on
the padding (``tests/select/test_buckets.py`` checks this bit for bit against exact-shape programs).
"""

from __future__ import annotations

MIN_BUCKET = 8


def bucket(n: int, *, minimum: int = MIN_BUCKET) -> int:
    """Smallest ladder size ``>= n`` (ladder: ``2^k`` and ``3 * 2^(k-1)``, from ``minimum``).

    Examples:
      >>> from jq._src.select.buckets import bucket
      >>> [bucket(n) for n in (1, 9, 13, 17, 576, 4608)]
      [8, 12, 16, 24, 768, 6144]
      >>> bucket(3, minimum=1), bucket(5, minimum=1)
      (3, 6)
    """
    n = max(int(n), 1)
    if n <= minimum:
        return minimum
    p = 1 << (n - 1).bit_length()  # power of two >= n
    three_quarters = 3 * p // 4
    return three_quarters if n <= three_quarters and three_quarters >= minimum else p
