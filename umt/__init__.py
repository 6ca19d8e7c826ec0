"""umt: a universal music translation network (Mor et al., 2018)."""

from umt.errors import UmtError

__all__ = ["UmtError"]
