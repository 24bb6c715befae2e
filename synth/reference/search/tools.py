"""Search tools over a local corpus (SQLite FTS5, ranked by BM25): search for documents, open one, find a
phrase inside one. The corpus describes generated long-tail entities, so answers must be looked up."""

from __future__ import annotations

import re

from toolgym_env import Context, ToolError, tool


@tool
def search(ctx: Context, query: str, k: int = 5) -> list[dict]:
    """Search the corpus; the best-matching documents first, each with a snippet.

    Args:
        query: Plain words to look for.
        k: How many results to return (1 to 10).
    """
    words = re.findall(r"\w+", query)
    if not words:
        raise ToolError("the query has no words; search for names or key words.")
    if not 1 <= k <= 10:
        raise ToolError("k must be between 1 and 10.")
    match = " OR ".join(f'"{w}"' for w in words[:16])
    return ctx.rows(
        "SELECT doc_id, title, snippet(docs, 2, '[', ']', '...', 12) AS snippet FROM docs WHERE docs MATCH ? "
        "ORDER BY bm25(docs, 0.0, 5.0, 1.0) LIMIT ?",
        (match, k),
    )


@tool
def open_document(ctx: Context, doc_id: str) -> dict:
    """The full text of one document.

    Args:
        doc_id: The document's id from a search result, e.g. "d0042".
    """
    rows = ctx.rows("SELECT doc_id, title, body FROM docs WHERE doc_id = ?", (doc_id,))
    if not rows:
        raise ToolError(f"there is no document {doc_id!r}; use an id from a search result.")
    return rows[0]


@tool
def find_in_document(ctx: Context, doc_id: str, phrase: str) -> list[str]:
    """The sentences of a document that contain a phrase (case-insensitive).

    Args:
        doc_id: The document's id.
        phrase: The phrase to look for.
    """
    body = open_document(ctx, doc_id)["body"]
    sentences = re.split(r"(?<=[.!?])\s+", body)
    return [s for s in sentences if phrase.lower() in s.lower()]
