"""User-facing errors: raised for bad input, printed as one line by the CLIs.

``UmtError`` is :class:`plumbing.errors.UserError` under its old name, not a subclass: both wings
(``umt`` and ``symbolic``) and every CLI raise and catch the one type, so an error raised by
shared plumbing (an atomic write on a full disk, a bad device name) is caught by every
``except UmtError`` as well.
"""

from plumbing.errors import UserError

UmtError = UserError

__all__ = ["UmtError", "UserError"]
