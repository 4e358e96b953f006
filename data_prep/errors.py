"""One exception type for bad input or bad usage.

Entry points catch :class:`UserError`, print its one-line message on stderr and exit with code 2.
Library code raises it wherever a user can fix the problem; the message names the file (or config
key), the field, and the fix.
"""


class UserError(Exception):
    """Bad input or bad usage that the user can fix; the message is one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class ConfigError(UserError):
    """An unknown config key, a wrong type, or an unparseable override."""
