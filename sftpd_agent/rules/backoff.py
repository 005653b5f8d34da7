"""How long to wait before trying again: exponential backoff with "equal jitter", pure.

One rule for every retry of the agent (the provider's connection, a notification channel,
a campaign step short of disk space): the n-th consecutive failure waits ``base * 2**(n-1)``
capped at ``ceiling``, of which a random half is jitter, so that many waiters spread out and
none waits less than half.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    base: float = 1.0
    ceiling: float = 300.0
    permanent: float = 600.0
    """The wait after a failure retrying will not fix (host key, authentication)."""
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, failures: int, *, permanent: bool = False) -> float:
        """Seconds to wait after the ``failures``-th failure in a row (1 for the first)."""
        if permanent:
            return self.permanent
        raw = min(self.ceiling, self.base * 2.0 ** max(0, failures - 1))
        return float(raw * (0.5 + self.rng.random() / 2))  # "equal jitter": never less than half
