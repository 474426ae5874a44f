"""The one exception family for bad input: a file, a config field or a flag the user gave.

Every check of user input raises a subclass of `InputError` whose message names the file or
the config field, what is wrong, and the fix. The ``neuromimic`` command prints that message
alone and exits with status 2 (the convention of argparse and of shells for misuse); any
other exception is a bug of neuromimic and keeps its traceback. ``--debug`` (or
``NEUROMIMIC_DEBUG=1``) shows the traceback of input errors too.
"""

from __future__ import annotations

#: Exit status of the ``neuromimic`` command for bad input.
INPUT_ERROR_EXIT_CODE = 2


class InputError(ValueError):
    """Bad user input; the message names the file or config field, the problem and the fix."""
