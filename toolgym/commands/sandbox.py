"""`toolgym sandbox ...`: set up the engine and image, run one command in a sandbox, reap leaks."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _setup(args) -> int:
    import shutil

    from toolgym.sandbox.engine import apt_install, ensure_engine
    from toolgym.sandbox.errors import SandboxUnavailable
    from toolgym.sandbox.image import build_image

    client = ensure_engine()
    build_image(client)
    if shutil.which("bwrap") is None:
        try:
            apt_install(["bubblewrap"])
        except SandboxUnavailable as exc:
            print(f"note: the namespace backend stays unavailable: {exc}")
    print("sandbox ready: `toolgym doctor` shows the details")
    return 0


def _build_image(args) -> int:
    from toolgym.sandbox.engine import docker_client
    from toolgym.sandbox.image import build_image, build_rootfs, ensure_image
    from toolgym.sandbox.requirements import prepare

    sets = requirement_sets(args.requirements or [])
    for h, (lines, sources) in sets.items():
        print(f"requirements {h}: {', '.join(lines)} (from {', '.join(sources)})")
        prepare(lines, find_links=args.find_links or (), build_sources=not args.no_source_builds)
    if args.rootfs_only:
        build_rootfs()
        if sets:
            print("the namespace backend binds the prepared folders; no image is needed")
        return 0
    client = docker_client()
    build_image(client, force=args.force)
    # A sandbox of one environment needs its own set; a pool serving them all needs every set at once.
    wanted = [[h] for h in sets] + ([sorted(sets)] if len(sets) > 1 else [])
    for hashes in wanted:
        print(f"image {ensure_image(client, hashes)} holds requirements {' '.join(hashes)}")
    return 0


def requirement_sets(paths: list[str]) -> dict[str, tuple[list[str], list[str]]]:
    """The requirement sets named by --with: hash -> (lines, where they came from), each set once."""
    from toolgym.sandbox.requirements import lines_from_file, normalize, requirements_hash

    sets: dict[str, tuple[list[str], list[str]]] = {}
    for path in map(Path, paths):
        if path.is_file():
            found = [(str(path), lines_from_file(path))]
        elif (path / "env.json").is_file():
            found = [(str(path), _env_requirements(path))]
        elif path.is_dir():
            found = [
                (str(env), _env_requirements(env))
                for env in sorted(path.iterdir())
                if (env / "env.json").is_file()
            ]
            if not found:
                raise ValueError(
                    f"{path} holds no env.json, nor folders that do: give a requirements.txt, an environment "
                    "folder or an env store"
                )
        else:
            raise FileNotFoundError(
                f"{path} does not exist: give a requirements.txt, an environment folder or an env store"
            )
        for source, lines in found:
            if not lines:
                continue
            lines = normalize(lines)
            sets.setdefault(requirements_hash(lines), (lines, []))[1].append(source)
        if not any(lines for _, lines in found):
            print(f"note: {path} declares no requirements")
    return sets


def _env_requirements(env: Path) -> list[str]:
    """An environment's "requirements" from its env.json, read as plain JSON (the format is envs/' business)."""
    try:
        lines = json.loads((env / "env.json").read_text()).get("requirements") or []
    except (OSError, json.JSONDecodeError, AttributeError) as exc:
        raise ValueError(
            f"{env / 'env.json'} is not a readable JSON object ({exc}); fix or remove it"
        ) from None
    if not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
        raise ValueError(f'{env / "env.json"}: "requirements" must be a list of pip requirement strings')
    return lines


def _run(args) -> int:
    from toolgym.sandbox import Limits, open_sandbox

    limits = Limits(memory_mb=args.memory_mb, timeout_s=args.timeout, network=args.network)
    with open_sandbox(args.backend, limits, image=args.image, requirements=args.requirements or ()) as sb:
        r = sb.run(args.cmd)
    sys.stdout.buffer.write(r.stdout_bytes)
    sys.stderr.buffer.write(r.stderr_bytes)
    if r.timed_out:
        print(f"toolgym: timed out after {args.timeout:g} s", file=sys.stderr)
    if r.oom_killed:
        print("toolgym: killed for using more than the memory limit", file=sys.stderr)
    return r.exit_code if r.exit_code >= 0 else 128 - r.exit_code


def _reap(args) -> int:
    from toolgym.sandbox import reaper
    from toolgym.sandbox.engine import docker_client

    client = docker_client()
    removed = reaper.reap_dead(client)
    print(f"removed {removed} container(s) of dead runs; {reaper.count(client)} toolgym container(s) remain")
    return 0


def add_parser(sub) -> None:
    from toolgym.cli import add_command

    p = sub.add_parser("sandbox", help="Set up and use sandboxes.", description="Set up and use sandboxes.")
    s = p.add_subparsers(dest="sandbox_command", metavar="SUBCOMMAND", required=True)
    add_command(
        s,
        "setup",
        "Install/start a Docker engine where we may (root on Debian) and build the image.",
        "sudo toolgym sandbox setup",
        _setup,
    )
    b = add_command(
        s,
        "build-image",
        "Build the sandbox base image offline: debootstrap minbase + python3, docker import, tagged by the "
        "recipe's hash; skipped when present. --with also prepares requirement sets (wheels for the sandbox's "
        "CPython 3.11 fetched once into the host cache, then installed offline) and builds the derived images "
        "that hold them, tagged by hash; environments name them and never install at episode time.",
        "toolgym sandbox build-image\n"
        "toolgym sandbox build-image --with requirements.txt          # prints the set's hash and image\n"
        "toolgym sandbox build-image --with ./store                   # every set its environments declare\n"
        "toolgym sandbox build-image --with ./store/notes --find-links ~/.cache/toolgym/wheels"
        "   # offline, from a folder of wheels\n"
        "# or skip building, where a registry is reachable: TOOLGYM_IMAGE=python:3.12-slim toolgym doctor",
        _build_image,
    )
    b.add_argument("--force", action="store_true", help="re-import even when the tag exists")
    b.add_argument(
        "--rootfs-only",
        action="store_true",
        help="only the root file system (namespace backend) and the requirement sets' folders",
    )
    b.add_argument(
        "--with",
        dest="requirements",
        action="append",
        metavar="REQS",
        help='a requirements.txt, an environment folder (its env.json\'s "requirements"), or an env store '
        "(each of its environments' sets); repeatable",
    )
    b.add_argument(
        "--find-links",
        action="append",
        metavar="DIR",
        help="a folder of wheels to install from besides the cache (no index needed for what it holds)",
    )
    b.add_argument(
        "--no-source-builds",
        action="store_true",
        help="refuse a dependency that has no wheel instead of building it here from its source release",
    )
    r = add_command(
        s,
        "run",
        "Run one shell command in a fresh sandbox and print its output.",
        "toolgym sandbox run 'python3 -c \"print(6*7)\"'\ntoolgym sandbox run --backend namespace 'id; ls /'\n"
        "toolgym sandbox run --requirements b0428be39bfa "
        "'PYTHONPATH=/opt/toolgym-reqs/b0428be39bfa python3 -c \"import mcp\"'   # the hash build-image printed",
        _run,
    )
    r.add_argument("cmd", help="a shell command (run by /bin/sh -c inside the sandbox)")
    r.add_argument("--backend", default="auto", choices=["auto", "docker", "namespace"])
    r.add_argument("--image", default=None, help="image for the docker backend (default: the built one)")
    r.add_argument(
        "--requirements",
        action="append",
        metavar="HASH",
        help="a prepared requirement set (from build-image --with), importable at /opt/toolgym-reqs/HASH",
    )
    r.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    r.add_argument("--memory-mb", type=int, default=512)
    r.add_argument("--network", action="store_true", help="allow network access (off by default)")
    add_command(
        s,
        "reap",
        "Remove the containers of toolgym runs that are no longer alive.",
        "toolgym sandbox reap",
        _reap,
    )
