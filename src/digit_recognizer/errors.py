"""The exceptions users see as a clean one-line message (CLI) or a 4xx JSON answer (web)."""


class DigitsError(Exception):
    """A problem the user can fix: bad input, missing data, a wrong option.

    The CLI prints its message on one line and exits non-zero; the web app answers 4xx.
    """


class DataError(DigitsError):
    """A dataset file is missing, truncated, corrupt or does not match its checksum."""


class ImageError(DigitsError):
    """The bytes are not a readable image (not an image, truncated, unsupported)."""


class ImageTooLargeError(DigitsError):
    """The image has more pixels than MAX_PIXELS (a decompression bomb, or just too big)."""


class NoDigitError(DigitsError):
    """The image is blank or holds nothing that looks like ink."""
