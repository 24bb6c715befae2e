"""A code-family variant's tool set and rules (from its index alone) and the files they render into: tools.py
(the repository tools of `templates/code/repo_tools.j2`, shared with the code_repair reference), verify.py and
the repository under state/."""

from __future__ import annotations

import hashlib
import textwrap

from ..family import jinja
from .repo import GROUP_DOCS, behaviour_cases, compose, module_source, unittest_file, visible_tests

TOOL_AXES = ("paged_read", "search_code", "no_shell", "apply_edit", "test_filter", "no_write_file")
"""Bits of the tool-set index; index 0 is the reference tool set."""
RULES = ("keep_tests", "keep_files", "test_after_edit")


def tool_config(key: tuple) -> dict:
    """The tool set and rules of a variant, from its index alone: 37 is odd, so `v * 37 % 64` walks every tool
    set once in 64 variants (v = 0 is the reference's); the rules cycle on their own and shift by one every 64
    variants, so no two of the first 512 share both tool set and rules."""
    v = key[1]
    tools = v * 37 % 2 ** len(TOOL_AXES)
    rules = (v * 3 + 1 + v // 2 ** len(TOOL_AXES)) % 2 ** len(RULES)
    cfg = {axis: bool(tools >> i & 1) for i, axis in enumerate(TOOL_AXES)}
    cfg |= {rule: bool(rules >> i & 1) for i, rule in enumerate(RULES)}
    cfg["page_lines"] = (40, 60, 80)[v % 3]
    cfg["edit"] = (
        ("apply_edit", "search", "replace") if cfg["apply_edit"] else ("replace_in_file", "old", "new")
    )
    return cfg


def render_sources(key: tuple, seed: int) -> dict[str, str]:
    """Every file of the environment but env.json: tools.py, verify.py and the repository under state/."""
    repo = compose(key, seed)
    cfg = tool_config(key)
    first = next(iter(repo.modules))
    example = f"{repo.pkg}/{first}.py"
    tests = visible_tests(repo)
    files = {
        f"state/{repo.pkg}/__init__.py": f'"""{repo.pkg}: small pure-Python utilities."""\n',
        "state/tests/__init__.py": "",
        **{f"state/tests/{name}": unittest_file(repo, name, cases) for name, cases in tests.items()},
    }
    for module in repo.modules:
        files[f"state/{repo.pkg}/{module}.py"] = module_source(repo, module)
    files["state/README.md"] = (
        jinja(True)
        .get_template("code/repo/README.md.j2")
        .render(
            pkg=repo.pkg,
            modules=[(m, GROUP_DOCS[repo.group_of[m]], fns) for m, fns in repo.modules.items()],
        )
    )
    doc = (
        f"Code tools over the {repo.pkg} repository in the working folder: list"
        f"{', search' if cfg['search_code'] else ''}, read and edit files, run the tests"
        f"{' or any shell command' if not cfg['no_shell'] else ''}. Paths are relative to the repository root "
        "and may not leave it. Rendered by the code family from the code_repair reference tools."
    )
    ctx = {"pkg": repo.pkg, "cfg": cfg, "example": example}
    ctx["doc"] = textwrap.fill(doc, 107)
    files["tools.py"] = jinja(True).get_template("code/tools.py.j2").render(**ctx)
    visible = {f: x for cases in tests.values() for f, x in cases.items()}
    ctx["visible"] = repr(behaviour_cases(repo, visible))
    shipped = sorted((rel, text) for rel, text in files.items() if rel.startswith(f"state/{repo.pkg}/"))
    ctx["package_digest"] = package_digest([(rel.rsplit("/", 1)[1], text.encode()) for rel, text in shipped])
    ctx["edit_tools"] = [cfg["edit"][0]] + ([] if cfg["no_write_file"] else ["write_file"])
    files["verify.py"] = jinja(True).get_template("code/verify.py.j2").render(**ctx)
    return files


def package_digest(files: list[tuple[str, bytes]]) -> str:
    """sha256 over a package folder's (file name, bytes) in name order: verify.py's `tree_digest` of the package
    as shipped, so the verifier knows an unchanged repository without running it."""
    h = hashlib.sha256()
    for rel, data in sorted(files):
        digest_entry(h, rel, b"file", data)
    return h.hexdigest()


def digest_entry(h, rel: str, kind: bytes, data: bytes) -> None:
    """One file of a tree digest, each part length-prefixed: no two trees (a file's bytes moved into another's,
    a name ending in a separator) give the same byte stream. The same framing as verify.py's `tree_digest`."""
    for part in (rel.encode(), kind, data):
        h.update(len(part).to_bytes(8, "big") + part)


def rules_text(cfg: dict) -> list[str]:
    rules = ["the repository's original tests must keep passing"]
    if cfg["keep_tests"]:
        rules.append("do not modify anything under tests/")
    if cfg["keep_files"]:
        rules.append("do not create, delete or rename files")
    if cfg["test_after_edit"]:
        rules.append("call run_tests after your last edit, before you answer")
    return rules
