"""Alternative correct episodes of code tasks score 1.0 through the real env server: another correct fix (the
function rewritten: its body moved into a helper, unparsed from the AST, so no line matches the reference's
edit), the whole module written at once where the variant has write_file, other call orders (tests first,
bugs fixed in reverse order), extra reads and listings, and any closing text. Half a fix still scores 0."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from toolgym.envs import replay
from toolgym.envs.runtime import LocalEnvServer
from toolgym.envs.spec import ToolCall
from toolgym.synth.code import FAMILY as code
from toolgym.synth.code.family import PROMPTS
from toolgym.synth.code.library import library
from toolgym.synth.code.repo import compose, module_source

SEED = 0


def _rewritten(fn: str) -> str:
    """A different correct implementation of a library function: the body in a helper of another name (from the
    AST, so quotes, spacing and docstring differ) and the public function calling it."""
    tree = ast.parse(library()[fn].source).body[0]
    tree.name = f"_{fn}_impl"
    return f"{ast.unparse(tree)}\n\n\ndef {fn}(*args, **kwargs):\n    return _{fn}_impl(*args, **kwargs)"


def _covering_keys() -> list[tuple]:
    """Variants of the full plan that cover every issue kind between them and the tool-set axes that change
    how a fix is made (paged reads, apply_edit, no write_file, run_tests after the last edit)."""
    keys, kinds, axes = [], set(), set()
    for key in code.plan("full"):
        cfg = code.variant_config(key, SEED)
        repo = compose(key, SEED)
        new_axes = {
            a for a in ("paged_read", "apply_edit", "no_write_file", "test_after_edit") if cfg[a]
        } - axes
        has_double = any(m.parts for m in repo.bugs.values())
        if new_axes or (has_double and "double" not in kinds):
            keys.append(key)
            axes |= new_axes
            kinds |= {"double"} if has_double else set()
        if len(axes) == 4 and "double" in kinds:
            return keys
    raise AssertionError("the full plan lacks a variant of some kind")


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """(key, cfg, repo, server, one candidate per kind) for each covering variant."""
    store = tmp_path_factory.mktemp("code_alt")
    out = []
    for key in _covering_keys():
        env = code.build_env(store, key, SEED)
        cands = code.make_tasks(env, key, SEED, 40)
        picked = {c.template.split("/")[1]: c for c in reversed(cands)}
        out.append(
            (key, code.variant_config(key, SEED), compose(key, SEED), LocalEnvServer(Path(env)), picked)
        )
    kinds = {k for *_, picked in out for k in picked}
    assert kinds == set(PROMPTS), kinds
    yield out
    for *_, server, _ in out:
        server.close()


def _bugs(c) -> list[str]:
    return c.extra["issue"]["bugs"]


def _reward(server, c, calls, answer="Done.") -> float:
    return replay(server, {"id": "t", "verifier": c.verifier, "params": c.params}, calls, answer)["reward"]


def _rewrite_calls(cfg: dict, repo, bugs: list[str]) -> list[ToolCall]:
    name, old_arg, new_arg = cfg["edit"]
    return [
        ToolCall(
            name=name,
            arguments={"path": repo.path_of(fn), old_arg: repo.bugs[fn].source, new_arg: _rewritten(fn)},
        )
        for fn in bugs
    ]


def test_another_correct_implementation_passes(sample):
    """Each buggy function replaced whole by a rewritten correct one, bugs in reverse order, tests run first
    and last, other files read on the way; fixing all but one bug scores 0."""
    for _, cfg, repo, server, picked in sample:
        for c in picked.values():
            bugs = _bugs(c)
            reads = [ToolCall(name="list_files"), ToolCall(name="read_file", arguments={"path": "README.md"})]
            calls = [ToolCall(name="run_tests"), *reads, *_rewrite_calls(cfg, repo, bugs[::-1])]
            calls.append(ToolCall(name="run_tests"))
            assert _reward(server, c, calls, "Rewrote the functions; all green.") == 1.0, c.prompt
            partial = [*_rewrite_calls(cfg, repo, bugs[1:]), ToolCall(name="run_tests")]
            assert _reward(server, c, partial) == 0.0


def test_two_site_bugs_need_both_sites_fixed(sample):
    for _, cfg, repo, server, picked in sample:
        c = picked.get("double")
        if c is None:
            continue
        fn = _bugs(c)[0]
        name, old_arg, new_arg = cfg["edit"]
        for half in repo.bugs[fn].parts:  # either site alone left in place
            edit = {"path": repo.path_of(fn), old_arg: repo.bugs[fn].source, new_arg: half}
            assert (
                _reward(server, c, [ToolCall(name=name, arguments=edit), ToolCall(name="run_tests")]) == 0.0
            )
        edit = {"path": repo.path_of(fn), old_arg: repo.bugs[fn].source, new_arg: library()[fn].source}
        assert _reward(server, c, [ToolCall(name=name, arguments=edit), ToolCall(name="run_tests")]) == 1.0


def test_the_whole_module_written_at_once_passes(sample):
    """Where the variant has write_file, the fixed modules written whole (the reference edits snippets)."""
    covered = 0
    for _, cfg, repo, server, picked in sample:
        if cfg["no_write_file"]:
            continue
        for c in picked.values():
            bugs = _bugs(c)
            texts = {}
            for fn in bugs:
                m = repo.module_of(fn)
                texts[m] = texts.get(m, module_source(repo, m)).replace(
                    repo.bugs[fn].source, library()[fn].source
                )
            calls = [
                ToolCall(name="write_file", arguments={"path": f"{repo.pkg}/{m}.py", "content": text})
                for m, text in sorted(texts.items())
            ]
            assert _reward(server, c, [*calls, ToolCall(name="run_tests")], "") == 1.0, c.prompt
            covered += 1
    assert covered


def test_reference_with_extra_reads_and_any_final_text_passes(sample):
    for *_, server, picked in sample:
        for c in picked.values():
            extra = [ToolCall(name="read_file", arguments={"path": "README.md"}), ToolCall(name="list_files")]
            for text in ("", "Fixed.", f"<answer>fixed {', '.join(_bugs(c))}</answer>"):
                assert _reward(server, c, [*extra, *c.solution], text) == 1.0
