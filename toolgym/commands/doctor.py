"""`toolgym doctor`: what works on this machine, and the one-line fix for what does not."""

from __future__ import annotations

import importlib.util

PYTHON_DEPS = [
    ("docker", True, "pip install docker"),
    ("pydantic", True, "pip install pydantic"),
    ("tqdm", True, "pip install tqdm"),
    ("torch", False, "pip install torch==2.13.0 (CPU build) for toolgym.model"),
    ("safetensors", False, "pip install safetensors"),
    ("tokenizers", False, "pip install tokenizers"),
]


def default_model_check():
    """Whether the embedded default model is converted, without converting it (a hash of its 98 MB GGUF)."""
    from toolgym.model.default import (
        CONVERT_COMMAND,
        EXTRA_INSTALL,
        DefaultModelError,
        find_default_model,
        missing_conversion_deps,
    )
    from toolgym.sandbox.doctor import Check

    name = "default model"
    try:
        path = find_default_model()
    except DefaultModelError as err:
        return Check(name, False, str(err).split(":")[0], err.fix, False)
    if path is None:
        fix = f"{CONVERT_COMMAND}  (once, ~30 s)"
        if missing_conversion_deps():
            fix = f"{EXTRA_INSTALL} && {fix}"
        return Check(name, False, "not converted yet", fix, False)
    return Check(name, True, str(path), "", False)


def ray_checks():
    """Whether Ray is installed, and which cluster `--ray auto` would join (without joining it)."""
    from toolgym.agent.cluster import describe
    from toolgym.sandbox.doctor import Check

    ray = describe()
    if not ray["installed"]:
        return [Check("ray", False, "not installed (only --ray needs it)", ray["hint"], False)]
    target = ray["would_join"]
    return [
        Check("ray", True, f"Ray {ray['version']}", "", False),
        Check(
            "ray cluster (--ray auto)",
            bool(target),
            f"would join {target}" if target else "none running",
            ray["hint"],
            False,
        ),
    ]


def run(args) -> int:
    from toolgym.sandbox.doctor import Check, checks

    results = checks()
    for module, required, fix in PYTHON_DEPS:
        found = importlib.util.find_spec(module) is not None
        results.append(Check(f"python: {module}", found, "installed" if found else "missing", fix, required))
    results.append(default_model_check())
    results += ray_checks()
    width = max(len(c.name) for c in results)
    failed = 0
    for c in results:
        mark = "ok  " if c.ok else ("FAIL" if c.required else "warn")
        line = f"[{mark}] {c.name:<{width}}  {c.detail}"
        if not c.ok and c.fix:
            line += f"\n       {'':<{width}}  fix: {c.fix}"
        print(line)
        failed += (not c.ok) and c.required
    print("all required checks pass" if not failed else f"{failed} required check(s) failed")
    return 1 if failed else 0


def add_parser(sub) -> None:
    from toolgym.cli import add_command

    add_command(
        sub,
        "doctor",
        "Check the engine, image, backends and Python deps; print fixes.",
        "toolgym doctor",
        run,
    )
