"""One exception type for bad input or bad usage, and one for a run stopped by a signal.

Entry points catch :class:`UserError`, print its one-line message on stderr and exit with code 2.
Library code raises it wherever a user can fix the problem; the message names the file (or config
key), the field, and the fix; :func:`quote` keeps an offending value short. Entry points catch
:class:`Interrupted` too, and exit with ``128 + signal number`` (130 for Ctrl-C, 143 for SIGTERM).
"""

import difflib
import signal

QUOTE_CHARS = 80  # an offending value is quoted up to this many characters


class UserError(Exception):
    """Bad input or bad usage that the user can fix; the message is one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class ConfigError(UserError):
    """An unknown config key, a wrong type, or an unparseable override."""


class Interrupted(Exception):
    """A run stopped on a signal after saving its state; ``code`` is the exit status."""

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(" ".join(str(message).split()))
        self.code = 128 + int(signum)


def quote(value: object, limit: int = QUOTE_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters (``...`` and the full length at the cut), so
    that a message stays one short line however long the offending value."""
    text = " ".join(repr(value).split())
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def close_match(word: str, options) -> str:
    """``; did you mean X?`` naming the option closest to a misspelt ``word``, or ``""``."""
    near = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"; did you mean {near[0]!r}?" if near else ""
