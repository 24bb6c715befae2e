"""Verifiers of the search environment: the answer must name the right entity, and the call log must show the
documents of every hop opened (or searched in), so an answer cannot be rewarded without the lookups."""

from __future__ import annotations

import re


def normalize(text: str) -> str:
    text = re.sub(r"[^a-z0-9 ]", " ", str(text).lower())
    return " ".join(w for w in text.split() if w not in ("the", "a", "an"))


def check_answer(ctx, answer, calls, expected: str, hops: list, distractors: list | None = None):
    """Reward 1 when the answer names `expected` (and no distractor) and every hop's document was read."""
    got = normalize(answer)
    if len(got.split()) > 15:
        return 0.0, "the answer is too long; give the name only"
    if normalize(expected) not in got:
        return 0.0, "the answer does not name the right entity"
    for other in distractors or []:
        if normalize(other) in got:
            return 0.0, f"the answer also names {other}"
    for doc_id in hops:
        if not any(
            c.get("ok")
            and c["name"] in ("open_document", "find_in_document")
            and isinstance(c.get("arguments"), dict)
            and c["arguments"].get("doc_id") == doc_id
            for c in calls
        ):
            return 0.0, f"document {doc_id} on the path to the answer was never read"
    return 1.0, "right, and every hop was looked up"
