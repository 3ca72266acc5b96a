"""Markdown that people write (dataset guidelines, comments), rendered for the workbench.

Two layers, both maintained libraries: markdown-it-py renders CommonMark with raw HTML turned off
(HTML in the source shows as text) and refuses `javascript:`, `vbscript:`, `file:` and most `data:`
links; then nh3 (Rust's ammonia) keeps only an allow-list of tags, attributes and URL schemes, so
nothing that reaches the page can run a script or load anything. Template syntax (`{{ x }}`,
`{% tag %}`) stays text: the result is inserted as a value, never rendered as a template.
"""

from __future__ import annotations

import nh3
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])

TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "code", "pre",
    "blockquote", "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}}  # no style: the CSP forbids inline styles
URL_SCHEMES = {"http", "https", "mailto"}


def render_markdown(text: str) -> SafeString:
    """Sanitised HTML of `text` (no images: the workbench loads nothing from elsewhere)."""
    html = nh3.clean(
        _MARKDOWN.render(text),
        tags=TAGS,
        attributes=ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
    )
    return mark_safe(html)  # sanitised by nh3 just above
