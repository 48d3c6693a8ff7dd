"""One error type for every user mistake.

Library code raises :class:`TinylmError` with a one-line message that names the
problem and what to do about it; the CLI turns it into ``tinylm: error: ...`` and
exit status 2, never a traceback. It subclasses ``ValueError`` so notebook users
can catch it with the exception they would expect for bad input.

The library speaks the library's language: a message names a *setting*
(``out_dir``, ``block_size``, ``prompt``), never a command-line flag. When the fix
is to change one setting, the error is a :class:`SettingError` that carries the
setting's name, so a front end can add its own spelling of it (the CLI adds the
flag that sets it; see ``tinylm.cli.errors``).
"""

from __future__ import annotations

from typing import Any


class TinylmError(ValueError):
    """A problem with the user's input: bad argument, file, corpus or config."""


class TrainingDiverged(TinylmError):
    """Training stopped because the loss or a gradient norm became NaN or infinite.

    Its own type so a caller that expects some runs to diverge (a learning-rate
    sweep) can record that run as diverged and go on, while any other mistake
    still stops it.
    """


class SettingError(TinylmError):
    """A mistake that is fixed by changing the setting named ``setting``.

    ``reason`` is a short stable name for the rule that was broken (``"run_exists"``,
    ``"unknown_key"``, ...) and ``details`` the values the message was made from,
    so a front end can word the same fix in its own terms.
    """

    def __init__(
        self, message: str, setting: str, reason: str | None = None, **details: Any
    ) -> None:
        super().__init__(message)
        self.setting = setting
        self.reason = reason
        self.details = details

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors raised in worker processes are pickled back to the caller; the
        # default would call SettingError(message) and lose (or fail on) the rest.
        return (_rebuild, (type(self), str(self), self.setting, self.reason, self.details))


def _rebuild(
    cls: type[SettingError], message: str, setting: str, reason: str | None, details: dict
) -> SettingError:
    return cls(message, setting, reason, **details)
