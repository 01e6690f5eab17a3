"""What every method's trainer hands the runner after a chunk (see `rlax_zoo.runner`)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class ChunkSummary(NamedTuple):
    """Per-seed results of one chunk of training.

    episodes: per seed, an [E, 3] array of finished episodes (env-step offset within the
      chunk, undiscounted return, length), in the order they ended.
    scalars: metric name -> [S] array (e.g. mean loss of the chunk per seed).
    """

    episodes: list[np.ndarray]
    scalars: dict[str, np.ndarray]
