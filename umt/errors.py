"""User-facing errors: raised for bad input, printed as one line by the CLIs."""


class UmtError(Exception):
    """A mistake in the user's input (file, folder, option), not a bug in umt."""
