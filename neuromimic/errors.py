"""The one exception family for bad input: a file, a config field or a flag the user gave.

Every check of user input raises a subclass of `InputError` whose message names the file or
the config field, what is wrong, and the fix. The ``neuromimic`` command prints that message
alone and exits with status 2 (the convention of argparse and of shells for misuse); any
other exception is a bug of neuromimic and keeps its traceback. ``--debug`` (or
``NEUROMIMIC_DEBUG=1``) shows the traceback of input errors too.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

#: Exit status of the ``neuromimic`` command for bad input.
INPUT_ERROR_EXIT_CODE = 2


class InputError(ValueError):
    """Bad user input; the message names the file or config field, the problem and the fix."""


class ConfigError(InputError):
    """A config value that cannot work; the message names the field as it is written in a
    config file (``model.env.substeps``) and the values it may take."""


def check_config(ok: bool, field: str, value: object, requirement: str) -> None:
    """Raise `ConfigError` ``"<field> is <value>; it must be <requirement>"`` unless ``ok``.

    Args:
        ok: whether the value is acceptable.
        field: the field's dotted path in a config file (``model.ppo.epochs``).
        value: the value given.
        requirement: what the value must be, and why where it helps (``">= 1"``).
    """
    if not ok:
        raise ConfigError(f"{field} is {value!r}; it must be {requirement}")


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the choice closest to a misspelled ``name``, or ``""``."""
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def find_input_error(error: BaseException) -> InputError | None:
    """The `InputError` behind ``error``: itself, or the first one in its chain of causes.

    Config values are checked when LightningCLI (through jsonargparse) builds the config's
    classes, and jsonargparse re-raises what a constructor raised as a cause of its own
    error; this finds the message meant for the user.
    """
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, InputError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None
