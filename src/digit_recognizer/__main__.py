"""`python -m digit_recognizer` is the `digits` command."""

from digit_recognizer.cli import main

main()
