"""The int8 indexer cache, the fused decode kernel (score + top-k) and auto mode (dense below a crossover)."""

import json

import pytest
import toolgym.model.dsa as dsa
import torch
from toolgym.model.dsa import (
    DecodeBuffers,
    Int8Keys,
    crossover,
    decode_select,
    dsa_attention,
    fused_sparse_attention,
    index_scores,
    pack_keys,
    prefill_select,
    quantize_keys,
    save_crossover,
    select_topk,
    sparse_attention,
    visible_keys,
)
from toolgym.model.lm import Cache, LayerCache, generate_ids


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Each test gets its own toolgym cache: no calibration from this machine leaks in."""
    monkeypatch.setenv("TOOLGYM_CACHE", str(tmp_path / "cache"))
    dsa.forget_crossover()


def reference_select(q, w, keys: Int8Keys, k, key_valid=None):
    n = keys.values.shape[1]
    visible = visible_keys(torch.tensor([n - 1]), n, key_valid)
    scores = index_scores(q, w, keys, visible)
    return scores, select_topk(scores, k)


def as_sets(idx):
    return [sorted(row.tolist()) for row in idx.reshape(-1, idx.shape[-1])]


@pytest.mark.parametrize("d", [16, 64, 128])  # 64 and 128 take the VNNI loop where the CPU has one
@pytest.mark.parametrize("padded", [False, True])
def test_decode_select_matches_index_scores_then_select_topk(d, padded):
    g = torch.Generator().manual_seed(d)
    B, n, H, k = 3, 700, 4, 50
    q, w = torch.randn(B, 1, H, d, generator=g), torch.randn(B, 1, H, generator=g)
    keys = quantize_keys(torch.randn(B, n, d, generator=g))
    key_valid = None
    if padded:
        key_valid = torch.rand(B, n, generator=g) > 0.3
        key_valid[:, -1] = True
    buffers = DecodeBuffers()
    idx, valid = decode_select(q, w, keys, k, buffers, key_valid)
    scores, (ref_idx, ref_valid) = reference_select(q, w, keys, k, key_valid)
    assert idx.shape == (B, 1, k) and valid.dtype == torch.bool
    assert as_sets(idx) == as_sets(ref_idx)
    assert bool(valid.all()) and bool(ref_valid.all())
    if dsa.decode_kernel() is not None:
        torch.testing.assert_close(buffers.scores[:, :n], scores[:, 0], rtol=1e-5, atol=1e-5)


def test_ties_at_the_kth_score_go_to_the_latest_keys_as_in_select_topk():
    d, n, k = 64, 300, 40
    q = torch.zeros(1, 1, 2, d)
    q[..., 0] = 1.0
    keys = torch.zeros(1, n, d)
    keys[0, ::3, 0] = 1.0  # 100 equal positive scores, the rest exactly 0: ties at the k-th
    ik = quantize_keys(keys @ dsa.hadamard(d).T)  # rotated back, so the cache holds e_0 again
    idx, _ = decode_select(q, torch.ones(1, 1, 2), ik, k, DecodeBuffers())
    _, (ref, _) = reference_select(q, torch.ones(1, 1, 2), ik, k)
    assert as_sets(idx) == as_sets(ref) == [list(range(n - 3 * k, n, 3))]


def test_without_the_kernel_the_torch_path_selects_the_same(monkeypatch):
    g = torch.Generator().manual_seed(1)
    q, w = torch.randn(2, 1, 4, 64, generator=g), torch.randn(2, 1, 4, generator=g)
    keys = quantize_keys(torch.randn(2, 500, 64, generator=g))
    fused, _ = decode_select(q, w, keys, 64, DecodeBuffers())
    fused = as_sets(fused)
    monkeypatch.setattr(dsa, "decode_kernel", lambda: None)
    plain, _ = decode_select(q, w, keys, 64, DecodeBuffers())
    assert as_sets(plain) == fused


@pytest.mark.parametrize("n_queries", [1, 9])  # one query on one thread; several split over threads
def test_fused_sparse_attention_equals_sparse_attention(n_queries):
    if dsa.decode_kernel() is None:
        pytest.skip("no C++ compiler: sparse_attention serves decode")
    g = torch.Generator().manual_seed(3)
    B, n, H, D, K = 2, 500, 8, 64, 100
    k_cache, v_cache = torch.randn(B, 600, D, generator=g), torch.randn(B, 600, D, generator=g)
    k, v = k_cache[:, :n], v_cache[:, :n]  # views of a longer cache, as in decoding
    q = torch.randn(B, n_queries, H, D, generator=g)
    idx = torch.stack([torch.randperm(n, generator=g)[:K] for _ in range(B * n_queries)]).view(
        B, n_queries, K
    )
    valid = torch.rand(B, n_queries, K, generator=g) > 0.2
    valid[..., 0] = True  # every query sees at least its own key
    expected, _ = sparse_attention(q, k, v, idx, valid)
    torch.testing.assert_close(fused_sparse_attention(q, k, v, idx, valid, DecodeBuffers()), expected)
    q.requires_grad_(True)
    assert fused_sparse_attention(q, k, v, idx, valid) is None  # training keeps the autograd path


@pytest.fixture
def split_over_three_threads(monkeypatch):
    """Decode steps split at any size, over 3 threads (more than this machine's cores: uneven ranges)."""
    if dsa.decode_kernel() is None:
        pytest.skip("no C++ compiler: nothing to split")
    monkeypatch.setattr(dsa, "SPLIT_SELECT_KEYS", 1)
    monkeypatch.setattr(dsa, "SPLIT_ATTEND_KEYS", 1)
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("padded", [False, True])
def test_a_split_decode_select_keeps_the_one_pass_selection(split_over_three_threads, padded):
    g = torch.Generator().manual_seed(11)
    B, n, H, d, k = 2, 701, 4, 64, 50  # 701: ranges that do not end on a 16-key block
    q, w = torch.randn(B, 1, H, d, generator=g), torch.randn(B, 1, H, generator=g)
    keys = quantize_keys(torch.randn(B, n, d, generator=g))
    key_valid = None
    if padded:
        key_valid = torch.rand(B, n, generator=g) > 0.3
        key_valid[0, 240:480] = False  # one thread's whole range hidden
        key_valid[:, -1] = True
    idx, valid = decode_select(q, w, keys, k, DecodeBuffers(), key_valid)
    _, (ref_idx, _) = reference_select(q, w, keys, k, key_valid)
    assert as_sets(idx) == as_sets(ref_idx) and bool(valid.all())


def test_ties_stay_with_the_latest_keys_across_split_ranges(split_over_three_threads):
    d, n, k = 64, 300, 40
    q = torch.zeros(1, 1, 2, d)
    q[..., 0] = 1.0
    keys = torch.zeros(1, n, d)
    keys[0, ::3, 0] = 1.0  # 100 equal scores over all three ranges: the k latest win
    ik = quantize_keys(keys @ dsa.hadamard(d).T)
    idx, _ = decode_select(q, torch.ones(1, 1, 2), ik, k, DecodeBuffers())
    assert as_sets(idx) == [list(range(n - 3 * k, n, 3))]


def test_a_split_decode_attention_equals_sparse_attention(split_over_three_threads):
    g = torch.Generator().manual_seed(12)
    n, H, D, K = 500, 32, 64, 100
    k, v = torch.randn(1, n, D, generator=g), torch.randn(1, n, D, generator=g)
    q = torch.randn(1, 1, H, D, generator=g) * 4  # peaked softmaxes: the merge's rescaling matters
    idx = torch.randperm(n, generator=g)[:K].view(1, 1, K)
    valid = torch.rand(1, 1, K, generator=g) > 0.2
    valid[..., 33:66] = False  # the middle thread's keys are all masked
    expected, _ = sparse_attention(q, k, v, idx, valid)
    torch.testing.assert_close(fused_sparse_attention(q, k, v, idx, valid, DecodeBuffers()), expected)


def selected(idx, valid):
    """Each query's selected keys as a sorted list: the masked slots left out."""
    rows = zip(idx.reshape(-1, idx.shape[-1]), valid.reshape(-1, idx.shape[-1]), strict=True)
    return [sorted(i[v].tolist()) for i, v in rows]


@pytest.mark.parametrize("d", [16, 64, 128])  # all take the packed VNNI loop where the CPU has one
@pytest.mark.parametrize("q_offset,padded", [(0, False), (150, False), (150, True)])
def test_prefill_select_matches_index_scores_then_select_topk(d, q_offset, padded):
    if dsa.decode_kernel() is None:
        pytest.skip("no C++ compiler: prefill selects with select_topk")
    g = torch.Generator().manual_seed(d + q_offset)
    B, Lq, H, k = 2, 70, 4, 40
    n = q_offset + Lq
    q, w = torch.randn(B, Lq, H, d, generator=g), torch.randn(B, Lq, H, generator=g)
    keys = quantize_keys(torch.randn(B, n, d, generator=g))
    key_valid = None
    if padded:
        key_valid = torch.rand(B, n, generator=g) > 0.3
        key_valid[:, q_offset:] = True  # each query's own key is real
    packed = pack_keys(keys, n)
    assert packed is not None
    idx, valid = prefill_select(q, w, packed, k, q_offset, key_valid)
    visible = visible_keys(torch.arange(q_offset, n), n, key_valid)
    ref_idx, ref_valid = select_topk(index_scores(q, w, keys, visible), k)
    assert idx.shape == (B, Lq, k) and valid.dtype == torch.bool
    assert selected(idx, valid) == selected(ref_idx, ref_valid)
    if q_offset == 0:  # the first queries see fewer than k keys: all of them, the rest masked
        assert selected(idx, valid)[0] == [0] and int(valid[0, 0].sum()) == 1


@pytest.mark.parametrize("padded", [False, True])
def test_prefill_in_the_kernel_equals_the_torch_path(monkeypatch, padded):
    if dsa.decode_kernel() is None:
        pytest.skip("no C++ compiler: prefill runs the torch path only")
    g = torch.Generator().manual_seed(5)
    B, L, H, D, k = 2, 300, 4, 64, 48
    q, kv = torch.randn(B, L, H, D, generator=g), torch.randn(B, L, 2, D, generator=g)
    iq, iw = torch.randn(B, L, 4, 64, generator=g), torch.randn(B, L, 4, generator=g)
    ik = quantize_keys(torch.randn(B, L, 64, generator=g))
    key_valid = None
    if padded:
        key_valid = torch.ones(B, L, dtype=torch.bool)
        key_valid[1, :37] = False  # a left-padded row
    args = (q[:, 100:], kv[:, :, 0], kv[:, :, 1], iq[:, 100:], iw[:, 100:], ik)
    kw = dict(top_k=k, q_offset=100, key_valid=key_valid, chunk=64)
    fused, _ = dsa_attention(*args, **kw)
    monkeypatch.setattr(dsa, "decode_kernel", lambda: None)
    plain, _ = dsa_attention(*args, **kw)
    torch.testing.assert_close(fused, plain, rtol=1e-4, atol=1e-4)


def test_decoding_reuses_its_buffers_step_after_step():
    if dsa.decode_kernel() is None:
        pytest.skip("no C++ compiler: the kernel (and its buffers) are not used")
    g = torch.Generator().manual_seed(2)
    cap = 400
    values = torch.randint(-127, 128, (1, cap, 64), dtype=torch.int8, generator=g)
    cache = Int8Keys(values, torch.rand(1, cap, generator=g))
    buffers = DecodeBuffers()
    pointers = set()
    for n in range(100, 110):
        q, w = torch.randn(1, 1, 4, 64, generator=g), torch.randn(1, 1, 4, generator=g)
        idx, valid = decode_select(q, w, cache.prefix(n), 32, buffers)
        pointers.add((idx.data_ptr(), valid.data_ptr(), buffers.scores.data_ptr(), buffers.q.data_ptr()))
    assert len(pointers) == 1


@pytest.mark.parametrize("split", [False, True])
def test_a_decode_step_allocates_nothing_in_the_kernels_once_warm(split, monkeypatch):
    """Select and attention, one step per new key: after the first step the kernels' scratch never grows
    (it is the only memory they allocate; a std::function per parallel call used to allocate too)."""
    so = dsa.decode_kernel()
    if so is None:
        pytest.skip("no C++ compiler: the kernels are not used")
    threads = torch.get_num_threads()
    if split:
        monkeypatch.setattr(dsa, "SPLIT_SELECT_KEYS", 1)
        monkeypatch.setattr(dsa, "SPLIT_ATTEND_KEYS", 1)
        torch.set_num_threads(3)
    try:
        g = torch.Generator().manual_seed(3)
        cap, H, D, top = 600, 8, 64, 64
        cache = Int8Keys(
            torch.randint(-127, 128, (1, cap, 64), dtype=torch.int8, generator=g), torch.rand(1, cap)
        )
        k, v = torch.randn(1, cap, D, generator=g), torch.randn(1, cap, D, generator=g)
        buffers = DecodeBuffers()
        grows = []
        for n in range(500, 520):
            q, w = torch.randn(1, 1, 4, 64, generator=g), torch.randn(1, 1, 4, generator=g)
            idx, valid = decode_select(q, w, cache.prefix(n), top, buffers)
            out = fused_sparse_attention(torch.randn(1, 1, H, D, generator=g), k, v, idx, valid, buffers)
            assert out is not None
            grows.append(so.dsa_scratch_grows())
        assert len(set(grows[1:])) == 1, grows
    finally:
        torch.set_num_threads(threads)


def test_int8_cache_is_a_quarter_of_fp32_indexer_keys(make_model):
    cfg32 = make_model(index_dim=64, index_rope_dim=32).cfg
    cfg8 = make_model(index_dim=64, index_rope_dim=32, index_precision="int8").cfg
    fp32 = LayerCache(cfg32, 1, 8, torch.float32, torch.device("cpu"))
    int8 = LayerCache(cfg8, 1, 8, torch.float32, torch.device("cpu"))
    kv = 2 * cfg32.head_dim * 4
    assert fp32.bytes_per_token() == kv + 64 * 4
    assert int8.bytes_per_token() == kv + 64 + 4  # one byte per dim plus the token's scale
    assert int8.ik.values.dtype == torch.int8


@pytest.mark.parametrize("index_dim", [16, 64])
def test_int8_cached_decoding_matches_the_uncached_model(make_model, index_dim):
    model = make_model(top_k=8, index_dim=index_dim, index_rope_dim=8, index_precision="int8")
    x = torch.randint(0, 1024, (2, 30))
    with torch.no_grad():
        full = model(x, sparse=True).logits
        cache = Cache(model.cfg, 2, 30)
        steps = [model(x[:, :20], cache=cache, sparse=True).logits]
        steps += [model(x[:, t : t + 1], cache=cache, sparse=True).logits for t in range(20, 30)]
    assert isinstance(cache.layers[0].ik, Int8Keys)
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-4, atol=1e-4)


def test_auto_equals_dense_whenever_k_covers_the_sequence(make_model):
    model = make_model(top_k=64, index_dim=64, index_rope_dim=8, index_precision="int8")
    save_crossover({64: {"prefill": 1, "decode": 1}})  # sparse wherever it may be
    x = torch.randint(0, 1024, (2, 64))
    with torch.no_grad():
        assert torch.equal(model(x, sparse="auto").logits, model(x, sparse=False).logits)
    prompts = [[1, 5, 9, 3], [7, 2]]
    dense = generate_ids(model, prompts, 40, temperature=0, sparse=False)
    assert generate_ids(model, prompts, 40, temperature=0, sparse="auto") == dense


def test_auto_is_dense_below_the_crossover_and_sparse_from_it(make_model):
    model = make_model(top_k=8, index_precision="int8")
    x = torch.randint(0, 1024, (1, 40))
    with torch.no_grad():
        dense, sparse = model(x, sparse=False).logits, model(x, sparse=True).logits
        assert not torch.allclose(dense, sparse, atol=1e-4)
        save_crossover({8: {"prefill": 41, "decode": 41}})
        assert torch.equal(model(x, sparse="auto").logits, dense)
        save_crossover({8: {"prefill": 40, "decode": 40}})
        assert torch.equal(model(x, sparse="auto").logits, sparse)


def test_crossover_defaults_scale_with_k_and_survive_a_damaged_file():
    assert crossover(2048, "decode") == int(dsa.DEFAULT_CROSSOVER["decode"] * 2048)
    path = save_crossover({2048: {"prefill": 12000, "decode": 3000}, 256: {"prefill": 4000, "decode": 900}})
    assert json.loads(path.read_text())["2048"]["decode"] == 3000
    assert crossover(2048, "decode") == 3000
    assert crossover(256, "prefill") == 4000
    assert crossover(4096, "decode") == 6000  # nearest k, scaled by the ratio of the k values
    path.write_text("{not json")
    dsa.forget_crossover()
    assert crossover(2048, "prefill") == int(dsa.DEFAULT_CROSSOVER["prefill"] * 2048)


def test_without_a_writable_cache_the_kernel_is_skipped_not_an_error(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("TOOLGYM_CACHE", str(blocker))  # kernels/ cannot be created under a file
    dsa.decode_kernel.cache_clear()
    try:
        assert dsa.decode_kernel() is None
        g = torch.Generator().manual_seed(4)
        keys = quantize_keys(torch.randn(1, 300, 64, generator=g))
        idx, valid = decode_select(
            torch.randn(1, 1, 4, 64, generator=g),
            torch.randn(1, 1, 4, generator=g),
            keys,
            32,
            DecodeBuffers(),
        )
        assert idx.shape == (1, 1, 32) and bool(valid.all())
    finally:
        dsa.decode_kernel.cache_clear()
