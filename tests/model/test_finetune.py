"""The SFT and GRPO losses and advantages against hand-computed cases, and the steps on a tiny real model."""

from __future__ import annotations

import math

import pytest
import torch
from toolgym.model.finetune import (
    IGNORE,
    GRPOConfig,
    Sequence,
    _logits,
    _logits_from,
    _pad,
    _shared_prompt,
    batches,
    group_advantages,
    grpo_loss,
    grpo_train,
    labels_of,
    merge_steps,
    sequence_logprobs,
    sft_loss,
    sft_train,
)

L = math.log


def test_advantages_are_reward_minus_the_group_mean_without_std_division():
    adv = group_advantages([1, 0, 0, 1, 0.5, 0.5, 1], ["a", "a", "a", "a", "b", "b", "c"])
    assert adv == [0.5, -0.5, -0.5, 0.5, 0.0, 0.0, 0.0]
    # a std-normalised GRPO would give +-1 here: the report's variant keeps the reward scale
    assert group_advantages([0.2, 0.0], ["g", "g"]) == pytest.approx([0.1, -0.1])


def _case():
    # sample 1: A=+1, its second token's ratio 0.5 (clipped at 0.8 only where that lowers the objective)
    # sample 2: A=-1, pi_theta half of pi_old on both tokens: mean log(pi_old/pi_theta) = log 2 = 0.693
    logp = torch.tensor([[L(0.5), L(0.25)], [L(0.25), L(0.25)]])
    old = torch.tensor([[L(0.5), L(0.5)], [L(0.5), L(0.5)]])
    ref = torch.tensor([[L(0.5), L(0.25)], [L(0.5), L(0.5)]])
    adv = torch.tensor([1.0, -1.0])
    mask = torch.ones(2, 2, dtype=torch.bool)
    return logp, old, ref, adv, mask


def test_grpo_loss_matches_the_hand_computed_case_with_off_policy_masking():
    logp, old, ref, adv, mask = _case()
    loss, stats = grpo_loss(logp, old, ref, adv, mask, GRPOConfig(clip=0.2, kl_coef=0.1, offpolicy_delta=0.5))
    # sample 1: surrogate min(1*1, 1*1)=1 and min(0.5*1, 0.8*1)=0.5; KL 0 (pi_ref = pi_theta): mean -0.75
    # sample 2: masked (A<0, drift log 2 > 0.5); KL per token: ratio 0.5 * (2 - log 2 - 1) = 0.15343
    kl2 = 0.5 * (2 - L(2) - 1)
    expected = (-0.75 + 0.1 * kl2) / 2
    assert float(loss) == pytest.approx(expected, abs=1e-6)
    assert stats["masked_samples"] == 1
    assert stats["kl"] == pytest.approx(kl2 / 2, abs=1e-6)


def test_grpo_loss_without_masking_takes_the_pessimistic_clip_for_a_negative_advantage():
    logp, old, ref, adv, mask = _case()
    loss, stats = grpo_loss(logp, old, ref, adv, mask, GRPOConfig(clip=0.2, kl_coef=0.1, offpolicy_delta=1.0))
    # sample 2 kept: min(0.5 * -1, 0.8 * -1) = -0.8 per token, so -surrogate = 0.8
    kl2 = 0.5 * (2 - L(2) - 1)
    assert float(loss) == pytest.approx((-0.75 + 0.8 + 0.1 * kl2) / 2, abs=1e-6)
    assert stats["masked_samples"] == 0


def test_a_masked_sample_gets_only_the_kl_gradient_and_padding_counts_for_nothing():
    logp, old, ref, adv, mask = _case()
    logp = logp.clone().requires_grad_(True)
    loss, _ = grpo_loss(logp, old, ref, adv, mask, GRPOConfig(clip=10.0, kl_coef=0.0, offpolicy_delta=0.5))
    loss.backward()
    assert torch.all(logp.grad[1] == 0)  # masked, no KL: no gradient at all
    assert torch.all(logp.grad[0] != 0)
    # a padded position changes nothing
    pad_logp = torch.cat([logp.detach(), torch.tensor([[-9.0], [-9.0]])], 1)

    def pad(t: torch.Tensor, v: float) -> torch.Tensor:
        return torch.cat([t, torch.full((2, 1), v)], 1)

    padded_mask = torch.cat([mask, torch.zeros(2, 1, dtype=torch.bool)], 1)
    a, _ = grpo_loss(logp.detach(), old, ref, adv, mask, GRPOConfig())
    b, _ = grpo_loss(pad_logp, pad(old, -1.0), pad(ref, -3.0), adv, padded_mask, GRPOConfig())
    assert float(a) == pytest.approx(float(b))


def test_the_kl_estimate_is_unbiased_for_samples_from_pi_old():
    # E_{x~pi_old}[(pi_theta/pi_old) * k3] = KL(pi_theta || pi_ref): check exactly on a 3-symbol distribution
    p_old = torch.tensor([0.5, 0.3, 0.2])
    p_theta = torch.tensor([0.4, 0.4, 0.2])
    p_ref = torch.tensor([0.2, 0.5, 0.3])
    ratio = p_theta / p_old
    d = torch.log(p_ref) - torch.log(p_theta)
    estimate = float((p_old * ratio * (torch.exp(d) - d - 1)).sum())
    exact = float((p_theta * (torch.log(p_theta) - torch.log(p_ref))).sum())
    assert estimate == pytest.approx(exact, abs=1e-6)


def test_sft_loss_is_the_cross_entropy_of_the_labelled_positions_only():
    torch.manual_seed(0)
    logits = torch.randn(1, 5, 7)
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    labels = torch.tensor([[IGNORE, IGNORE, 3, IGNORE, 5]])
    by_hand = -(torch.log_softmax(logits[0, 1], -1)[3] + torch.log_softmax(logits[0, 3], -1)[5]) / 2
    assert float(sft_loss(logits, labels)) == pytest.approx(float(by_hand), abs=1e-6)
    assert labels_of(Sequence([1, 2, 3], [False, True, True])) == [IGNORE, 2, 3]
    del ids


def test_merge_steps_extends_a_sequence_only_when_the_next_prompt_is_its_exact_continuation():
    seqs = merge_steps([([1, 2], [3, 4]), ([1, 2, 3, 4, 5], [6]), ([1, 2, 9], [7]), ([1], [])])
    assert [s.ids for s in seqs] == [[1, 2, 3, 4, 5, 6], [1, 2, 9, 7]]
    assert [s.mask for s in seqs] == [
        [False, False, True, True, False, True],
        [False, False, False, True],
    ]


def test_batches_stay_within_the_token_budget():
    seqs = [Sequence([0] * n, [True] * n) for n in (10, 3, 7, 7, 2, 12)]
    out = batches(seqs, 21)
    assert sorted(i for b in out for i in b) == list(range(6))
    for b in out:
        assert len(b) == 1 or len(b) * max(len(seqs[i].ids) for i in b) <= 21


@pytest.fixture(scope="module")
def tiny():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=50,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=128,
    )
    return LlamaForCausalLM(config)


def test_sft_train_learns_the_trained_tokens_and_not_the_prompt(tiny):
    import copy

    model = copy.deepcopy(tiny)
    seq = Sequence(list(range(1, 21)), [False] * 10 + [True] * 10)
    before = sequence_logprobs(model, [seq], temperature=1.0, batch_tokens=64, pad_id=0, precision=None)[0]
    stats = sft_train(model, [seq] * 4, epochs=10, lr=1e-2, batch_tokens=40, pad_id=0, precision=None)
    after = sequence_logprobs(model, [seq], temperature=1.0, batch_tokens=64, pad_id=0, precision=None)[0]
    assert len(before) == len(after) == 10
    assert sum(after) > sum(before) + 5
    assert stats.losses[-1] < stats.losses[0] and stats.tokens == 20 * 4 * 10
    with pytest.raises(ValueError, match="no tokens to train on"):
        sft_train(model, [Sequence([1, 2], [False, False])])


def test_the_shared_prompt_ends_one_before_the_earliest_trained_token_of_any_row():
    t = torch.tensor([[0, 0, 0, 0, 0, 1, 1], [0, 0, 0, 1, 1, 0, 0]], dtype=torch.bool)
    assert _shared_prompt(t) == 2  # row 2 trains position 3, predicted by the logit at 2
    assert _shared_prompt(torch.tensor([[1, 1, 0]], dtype=torch.bool)) == 0
    # a row with nothing trained (GRPO's zero-advantage KL rows never come here, but a bad batch must not
    # reach past a row's end)
    assert _shared_prompt(torch.tensor([[0, 0, 1], [0, 0, 0]], dtype=torch.bool)) == 0


def test_a_detached_prompt_gives_the_same_loss_and_trains_only_through_the_tail(tiny):
    import copy

    model = copy.deepcopy(tiny).eval()
    # two rows of different lengths, right-padded: the shorter one's padding must stay masked after the cache
    seqs = [
        Sequence(list(range(3, 23)), [False] * 12 + [True] * 8),
        Sequence(list(range(25, 39)), [False] * 9 + [True] * 5),
    ]
    ids, attn, trained = _pad(seqs, 0)
    labels = torch.where(trained, ids, torch.full_like(ids, IGNORE))
    start = _shared_prompt(trained)
    assert start == 8
    full = sft_loss(_logits(model, ids, attn), labels)
    tail = sft_loss(_logits_from(model, ids, attn, start), labels[:, start:])
    assert tail.item() == pytest.approx(full.item(), abs=1e-5)
    tail.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    full.backward()
    # the embedding rows of tokens seen only in the detached prompt get no gradient; with the prompt they do
    emb = [n for n in grads if "embed_tokens" in n][0]
    assert float(grads[emb][3].abs().sum()) == 0.0
    assert float(dict(model.named_parameters())[emb].grad[3].abs().sum()) > 0.0
    # and it still learns the trained tokens
    seq = Sequence(list(range(1, 21)), [False] * 10 + [True] * 10)
    before = sequence_logprobs(model, [seq], temperature=1.0, batch_tokens=64, pad_id=0, precision=None)[0]
    stats = sft_train(
        model, [seq] * 4, epochs=10, lr=1e-2, batch_tokens=40, pad_id=0, precision=None, detach_prompt=True
    )
    after = sequence_logprobs(model, [seq], temperature=1.0, batch_tokens=64, pad_id=0, precision=None)[0]
    assert sum(after) > sum(before) + 5 and stats.losses[-1] < stats.losses[0]


def test_grpo_train_raises_the_good_sample_and_lowers_the_bad_one(tiny):
    import copy

    model, ref = copy.deepcopy(tiny), copy.deepcopy(tiny)
    good = Sequence([1, 2, 3, 4, 5, 6], [False, False, True, True, True, True], advantage=0.5, group="g")
    bad = Sequence([1, 2, 7, 8, 9, 10], [False, False, True, True, True, True], advantage=-0.5, group="g")
    cfg = GRPOConfig(kl_coef=0.0, clip=10.0, offpolicy_delta=100.0)

    def lp(s: Sequence) -> float:
        return sum(
            sequence_logprobs(model, [s], temperature=1.0, batch_tokens=64, pad_id=0, precision=None)[0]
        )

    g0, b0 = lp(good), lp(bad)
    stats = grpo_train(model, ref, [good, bad], cfg, lr=1e-2, epochs=5, batch_tokens=64, precision=None)
    assert lp(good) > g0 and lp(bad) < b0
    assert stats.steps == 5 and all(e["masked_samples"] == 0 for e in stats.extra)
