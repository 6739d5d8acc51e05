"""A document's bytes → plain text → passages: what retrieval searches and the prompt quotes.

Why here: the retriever and the document processing must agree on what a passage is. Formats: plain text,
Markdown (markup dropped), HTML (stdlib parser: scripts, styles and tags dropped) and PDF (pypdf's text layer,
page by page; a scanned PDF without one has no text and is refused as such).
"""

from __future__ import annotations

import html
import io
import re
from html.parser import HTMLParser

FORMATS = ("text", "markdown", "html", "pdf")
_SUFFIXES = {".txt": "text", ".text": "text", ".md": "markdown", ".markdown": "markdown", ".html": "html",
             ".htm": "html", ".pdf": "pdf"}
_MIME = {"text/plain": "text", "text/markdown": "markdown", "text/x-markdown": "markdown", "text/html": "html",
         "application/xhtml+xml": "html", "application/pdf": "pdf"}


class UnsupportedDocument(ValueError):
    """The bytes are in a format this server cannot read; the message names the accepted ones."""


def detect_format(name: str, content_type: str | None, head: bytes) -> str:
    """The format from the bytes (PDF magic, an HTML start), then the content type, then the file suffix."""
    if head.startswith(b"%PDF"):
        return "pdf"
    start = head.lstrip()[:64].lower()
    if start.startswith((b"<!doctype html", b"<html")):
        return "html"
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if mime in _MIME:
        return _MIME[mime]
    suffix = name[name.rfind("."):].lower() if "." in name.rsplit("/", 1)[-1] else ""
    return _SUFFIXES.get(suffix, "text")


def to_text(body: bytes, fmt: str) -> str:
    if fmt == "pdf":
        return pdf_text(body)
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UnsupportedDocument(f"the document is not UTF-8 text; accepted formats: {', '.join(FORMATS)}") from None
    if "\x00" in text:
        raise UnsupportedDocument(f"the document is binary, not text; accepted formats: {', '.join(FORMATS)}")
    if fmt == "html":
        return html_text(text)
    if fmt == "markdown":
        return markdown_text(text)
    return text


class _TextOf(HTMLParser):
    SKIP = {"script", "style", "noscript", "template", "svg", "head"}
    BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "pre",
             "blockquote", "table", "ul", "ol", "title"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in self.SKIP:
            self._skipping += 1
        elif tag in self.BLOCK:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP and self._skipping:
            self._skipping -= 1
        elif tag in self.BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def pdf_text(body: bytes) -> str:
    """The text layer of every page, pages as paragraphs (an encrypted PDF is read only without a password)."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(body))
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnsupportedDocument("the PDF is encrypted with a password; give one that is not")
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, UnsupportedDocument):
            raise
        raise UnsupportedDocument(f"the PDF could not be read ({type(exc).__name__}: {exc})"[:300]) from None
    return "\n\n".join(pages)


def html_text(markup: str) -> str:
    parser = _TextOf()
    parser.feed(markup)
    parser.close()
    return html.unescape("".join(parser.parts))


_MD_RULES = [
    (re.compile(r"^```.*?$", re.M), ""),  # code fences (the code stays)
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),  # images → alt text
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # links → their text
    (re.compile(r"^\s{0,3}#{1,6}\s*", re.M), ""),  # heading marks
    (re.compile(r"^\s{0,3}>\s?", re.M), ""),  # quotes
    (re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+", re.M), ""),  # list bullets
    (re.compile(r"(\*\*|__|\*|_|`)(?=\S)(.+?)(?<=\S)\1"), r"\2"),  # emphasis, inline code
    (re.compile(r"^\s*(?:-{3,}|\*{3,}|_{3,})\s*$", re.M), ""),  # rules
]


def markdown_text(source: str) -> str:
    for pattern, repl in _MD_RULES:
        source = pattern.sub(repl, source)
    return source


_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def passages(text: str, max_words: int) -> list[str]:
    """Paragraphs packed into passages of at most `max_words` words, cut between sentences (a sentence
    longer than that is cut between words); a passage never spans two paragraphs."""
    out: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        words_in = " ".join(paragraph.split())
        if not words_in:
            continue
        current: list[str] = []
        for sentence in _SENTENCE.split(words_in):
            words = sentence.split()
            while len(words) > max_words:  # one overlong sentence: its own passages
                if current:
                    out.append(" ".join(current))
                    current = []
                out.append(" ".join(words[:max_words]))
                words = words[max_words:]
            if current and len(current) + len(words) > max_words:
                out.append(" ".join(current))
                current = []
            current.extend(words)
        if current:
            out.append(" ".join(current))
    return out
