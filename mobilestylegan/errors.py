"""Errors every layer may raise about what the user gave it (no imports: any module can use these)."""


class UsageError(Exception):
    """Bad input from the user (an option, a file of the wrong kind): the CLIs print it as one line, exit code 2."""


class UnknownSourceError(UsageError):
    """A generator source that is neither an existing file nor a known pretrained name."""
