"""umt: a universal music translation network (Mor et al., 2018)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from umt.errors import UmtError

if TYPE_CHECKING:
    from umt.batch import translate_files
    from umt.inference import Translator

__all__ = ["Translator", "UmtError", "translate_files"]


def __getattr__(name: str) -> Any:
    # `import umt` stays cheap (no torch); the model stack loads on first use of Translator.
    if name == "Translator":
        from umt.inference import Translator

        return Translator
    if name == "translate_files":
        from umt.batch import translate_files

        return translate_files
    raise AttributeError(f"module 'umt' has no attribute {name!r}")
