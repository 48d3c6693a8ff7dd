"""Progress bars, one policy for the whole library.

Long steps (pre-tokenizing, merging, preparing data, training) show a tqdm bar on
stderr. ``enabled=False`` silences it completely, for callers that report progress
their own way. When enabled, the bar is drawn only if stderr is a terminal, so
logs, pipes and CI output stay clean and error messages stay one line.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tqdm import tqdm


def progress_bar(enabled: bool = True, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr; drawn only when ``enabled`` and stderr is a terminal.

    tqdm is imported here, not at the top: importing it costs about as much as the
    rest of the tokenizers together, and ``from tinylm import BPETokenizer`` should
    not pay for a bar it may never draw.
    """
    from tqdm import tqdm

    kwargs.setdefault("file", sys.stderr)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(disable=None if enabled else True, **kwargs)
