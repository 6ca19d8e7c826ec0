"""Read a listening page back with the standard HTML parser (shared by the page tests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse


@dataclass
class Page:
    """What the tests look at: media links, and table rows as lists of (text, classes) cells."""

    audio: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    tables: list[list[list[tuple[str, str]]]] = field(default_factory=list)


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.page = Page()
        self._cell: list[str] | None = None
        self._cls = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "audio":
            self.page.audio.append(a.get("src") or "")
        elif tag == "img":
            self.page.images.append(a.get("src") or "")
        elif tag == "a":
            self.page.links.append(a.get("href") or "")
        elif tag == "table":
            self.page.tables.append([])
        elif tag == "tr":
            self.page.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell, self._cls = [], a.get("class") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.page.tables[-1][-1].append(("".join(self._cell).strip(), self._cls))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse_page(path: Path) -> Page:
    """Parse an HTML file into a :class:`Page`."""
    parser = _Parser()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return parser.page


def broken_links(path: Path, page: Page) -> list[str]:
    """Every audio, image and link target that is absolute or names no file beside ``path``."""
    bad = []
    for src in page.audio + page.images + page.links:
        url = urlparse(src)
        if url.scheme or url.netloc or src.startswith("/") or not src:
            bad.append(src)  # the page must stay relative, to be zipped or served as it is
        elif not (path.parent / unquote(url.path)).is_file():
            bad.append(src)
    return bad
