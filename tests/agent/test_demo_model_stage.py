"""The demo's real-model stage: its bounded sample holds every category, the same tasks each run."""

from __future__ import annotations

from toolgym.envs.corpus import load_corpus

from toolgym.commands.demo import per_category


def test_the_sample_holds_n_tasks_of_every_category_and_their_environments_only():
    corpus = load_corpus("reference")
    sample = per_category(corpus, 2)
    categories = sorted({t.category for t in corpus.tasks})
    assert [t.category for t in sample.tasks].count(categories[0]) == 2
    assert sorted({t.category for t in sample.tasks}) == categories
    assert len(sample.tasks) == 2 * len(categories)
    assert set(sample.env_dirs) == {t.env_id for t in sample.tasks}
    assert [t.id for t in per_category(corpus, 2).tasks] == [t.id for t in sample.tasks]
