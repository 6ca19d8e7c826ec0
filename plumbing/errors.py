"""The one error type for a user's mistake, printed as one line by every CLI."""


class UserError(Exception):
    """A mistake in the user's input (file, folder, option, config), not a bug."""
