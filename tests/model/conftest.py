"""Shared fixtures: a small seeded corpus, a tokenizer trained on it, and tiny DSA models."""

import pytest
import torch
from toolgym.model.config import tiny
from toolgym.model.corpus import synthetic_corpus
from toolgym.model.lm import DSALM
from toolgym.model.tokenizer import train_tokenizer


@pytest.fixture(scope="session")
def corpus_texts() -> list[str]:
    return synthetic_corpus(400, seed=0)


@pytest.fixture(scope="session")
def tokenizer(corpus_texts):
    return train_tokenizer(corpus_texts, vocab_size=400)


@pytest.fixture
def make_model():
    """A tiny DSALM in eval mode, seeded; keyword arguments override the config."""

    def build(seed: int = 0, **overrides) -> DSALM:
        torch.manual_seed(seed)
        return DSALM(tiny(**overrides)).eval()

    return build


@pytest.fixture(autouse=True)
def short_bench_timing(monkeypatch):
    """Bench runs in tests time few rounds: they check rows and paths, not speeds."""
    monkeypatch.setenv("TOOLGYM_BENCH_SECONDS", "0.3")


@pytest.fixture(autouse=True)
def crossover_read_afresh():
    """crossover() reads its file once per process: a test that moves the cache gets it read again, and
    the tests after it do not see what it stored."""
    from toolgym.model.dsa import forget_crossover

    forget_crossover()
    yield
    forget_crossover()
