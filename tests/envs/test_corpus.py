"""A corpus from the reference store, and sub-corpora: filters, the first N, a seeded random sample."""

from __future__ import annotations

import pytest
from toolgym.envs.corpus import CorpusError, load_corpus


def test_select_filters_limits_and_samples():
    corpus = load_corpus("reference")
    general = corpus.select(category="general")
    assert general.tasks and all(t.category == "general" for t in general.tasks)
    assert set(general.env_dirs) == {t.env_id for t in general.tasks}  # only the environments it uses
    assert [t.id for t in corpus.select(limit=3).tasks] == [t.id for t in corpus.tasks[:3]]
    a, b = corpus.select(sample=7, seed=1), corpus.select(sample=7, seed=1)
    assert [t.id for t in a.tasks] == [t.id for t in b.tasks] == sorted(t.id for t in a.tasks)
    assert len({t.id for t in a.tasks}) == 7 and set(a.env_dirs) == {t.env_id for t in a.tasks}
    assert [t.id for t in corpus.select(sample=7, seed=2).tasks] != [t.id for t in a.tasks]
    with pytest.raises(CorpusError, match="cannot sample"):
        corpus.select(sample=len(corpus.tasks) + 1)


def test_per_category_can_name_the_categories_and_keeps_their_draw():
    corpus = load_corpus("reference")
    every = corpus.per_category(3, seed=4)
    some = corpus.per_category(3, seed=4, categories=["search", "code"])
    assert {t.category for t in some.tasks} == {"search", "code"}
    # naming fewer categories draws the same tasks of the ones named
    assert [t.id for t in some.tasks] == [t.id for t in every.tasks if t.category in ("search", "code")]
    assert set(some.env_dirs) == {t.env_id for t in some.tasks}
    with pytest.raises(CorpusError, match="no task of category serach.*it has: code, code_interpreter"):
        corpus.per_category(3, categories=["serach"])
