"""One line of output on stdout, whatever the text it names holds.

A line naming a folder, a file, a run or a varied value from the user is printed
with :func:`tinylm.terminal.printable` in one-line mode: its control characters
are shown as escapes and a newline in a name cannot start a second line.
"""

from __future__ import annotations

from tinylm.terminal import printable


def say(line: str) -> None:
    """Print ``line`` as one safe line (flushed, so progress shows as it happens)."""
    print(printable(line, one_line=True), flush=True)
