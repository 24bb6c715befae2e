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
