"""Seeds derived from the run's seed: deterministic, distinct per use, and always small enough for every emulator.

ALE takes a C ``int`` seed per environment and seeds environment ``i`` of a vector with ``seed + i``; each further
reset moves on by the number of environments. Derived seeds therefore lie in ``[0, 2**30)``, leaving room for
``2**30`` more, while the run's own seed may be anything in ``[0, SEED_MAX]``.
"""

from __future__ import annotations

import numpy as np

SEED_MAX = 2**31 - 1  # the largest run seed: ALE's seeds are C ints
DERIVED_SPAN = 2**30  # derived seeds lie in [0, DERIVED_SPAN)

# the first entry of each derivation, so that no two uses share a stream
AGENT, TRAINING_ENV, EVALUATION_ENV = 0, 1, 2


def derive_seed(seed: int, use: int, *parts: int) -> int:
    """A seed in ``[0, 2**30)`` for ``use`` (``AGENT``, ``TRAINING_ENV``, ``EVALUATION_ENV``) and ``parts`` (block,
    step, game, ...), from the run's ``seed``: the same arguments always give the same seed, any change another."""
    entropy = [int(seed), int(use), *(int(p) for p in parts)]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint32)[0]) % DERIVED_SPAN
