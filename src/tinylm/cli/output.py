"""One line of output on stdout, whatever the text it names holds.

A line naming a folder, a file, a run or a varied value from the user is printed
with :func:`tinylm.terminal.printable` in one-line mode: its control characters
are shown as escapes and a newline in a name cannot start a second line.
"""

from __future__ import annotations

import sys

from tinylm.terminal import printable


def say(line: str) -> None:
    """Print ``line`` as one safe line (flushed, so progress shows as it happens)."""
    print(printable(line, one_line=True), flush=True)


def note_decode_kernels(weights: str, device: str) -> None:
    """One line on stderr when int8 or bfloat16 weights decode without tinylm's C kernels.

    Without them the formats still give the same tokens, but each product widens its
    whole matrix to float32 first, so they run slower than float32 does: worth knowing.
    """
    if weights == "float32" or device != "cpu":
        return
    # torch-free start-up: every command imports this module, few decode int8
    from tinylm.inference.native_kernels import kernel_status

    status = kernel_status()
    if not status.available:
        line = (
            f"note: {weights} weights decode through torch here, slower than float32, because "
            f"tinylm's C kernels are not available: {status.reason}"
        )  # the reason may hold a path or a compiler's message: one safe line
        print(printable(line, one_line=True), file=sys.stderr)
