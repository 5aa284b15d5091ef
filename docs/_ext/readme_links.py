"""An mkdocs hook: the site's front page is README.md itself, so that the package page and the
site cannot say different things. Its links to `docs/...` are written from the repository
root; on the site those pages are siblings of the front page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[2] / "README.md"


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    if page.file.src_uri == "index.md":
        return README.read_text(encoding="utf-8").replace("](docs/", "](")
    return markdown
