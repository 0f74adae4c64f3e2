"""The one exception type that users see as a clean one-line message."""


class DigitsError(Exception):
    """A problem the user can fix: bad input, missing data, a wrong option.

    The CLI prints its message on one line and exits non-zero; the web app answers 4xx.
    """


class DataError(DigitsError):
    """A dataset file is missing, truncated, corrupt or does not match its checksum."""
