"""One error type for every user mistake.

Library code raises :class:`TinylmError` with a one-line message that names the
problem and what to do about it; the CLI turns it into ``tinylm: error: ...`` and
exit status 2, never a traceback. It subclasses ``ValueError`` so notebook users
can catch it with the exception they would expect for bad input.
"""

from __future__ import annotations


class TinylmError(ValueError):
    """A problem with the user's input: bad argument, file, corpus or config."""
