"""Requirements an environment declares, installed ahead of time into a folder the sandbox imports from.

A set of pip requirement lines is named by a hash (`requirements_hash`). `prepare` installs it once into
`cache_dir()/reqs/<hash>/`, offline from a host wheel cache (a package index is needed only to fill that cache),
for the sandbox's Python (CPython 3.11 x86_64 on Debian bookworm) whatever the host's Python is. Sandboxes see
the folder read-only at `site_path(hash)`: the Docker backend through a derived image (image.ensure_image),
the namespace backend through a bind mount. Nothing is installed at episode time.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

from .errors import SandboxUnavailable
from .paths import cache_dir

REQS_ROOT = "/opt/toolgym-reqs"
"""Where requirement sets live inside a sandbox. Not below /opt/toolgym: the in-sandbox server's code is bound
over that folder in both backends, which would hide anything an image holds beneath it."""
MARKER = ".toolgym-complete"
PYTHON_TARGET = {
    "implementation": "cp",
    "python_version": "3.11",
    "abi": "cp311",
    # bookworm's glibc 2.36 runs every manylinux wheel up to 2.36. pip does not widen a manylinux_2_x
    # platform to the older ones by itself, so each is named.
    "platforms": [f"manylinux_2_{minor}_x86_64" for minor in range(36, 4, -1)]
    + ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
    # A plain linux wheel is one built from source on this host and checked to run in the sandbox (see
    # _unfit_for_sandbox); PyPI holds none.
    + ["linux_x86_64"],
}
TARGET_LABEL = "CPython 3.11, manylinux x86_64"
SANDBOX_GLIBC = "2.36"
BOOKWORM_LIBS = frozenset(
    ["libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1", "libutil.so.1", "libgcc_s.so.1"]
    + ["libstdc++.so.6", "libz.so.1", "libffi.so.8", "libssl.so.3", "libcrypto.so.3", "libexpat.so.1"]
)
"""Libraries of the base image (minbase + python3), for when its root file system is not on this host."""
MAX_SOURCE_BUILDS = 20
"""Most source-only packages one set may build into wheels (each is one dependency pip found no wheel for)."""
MIN_PIP = (22, 2)  # --report
HASH_RE = re.compile(r"[0-9a-f]{12}")
NOT_PREPARED = "requirements {h} are not prepared; run `toolgym sandbox build-image --with <file>`"
NETWORK_ERRORS = re.compile(
    r"connection error|NewConnectionError|Failed to establish a new connection|Temporary failure in name "
    r"resolution|Name or service not known|Network is unreachable|ConnectTimeoutError|ReadTimeoutError|ProxyError"
)
"""What pip says (at -vv, or in its retry warnings) when it cannot reach an index."""


class RequirementsError(ValueError):
    """A requirement set that cannot be installed as written. The message names the fix."""


def normalize(lines: Iterable[str]) -> list[str]:
    """The requirement lines that count: stripped, without blanks and comments, each once, sorted."""
    out = set()
    for raw in lines:
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not line:
            continue
        if line.startswith("-"):
            raise RequirementsError(
                f"{line!r} is a pip option, not a requirement: a requirement set holds only requirement lines "
                "(`name==version`); name indexes with PIP_INDEX_URL and wheel folders with --find-links"
            )
        out.add(line)
    return sorted(out)


def requirements_hash(lines: Iterable[str]) -> str:
    """12 hex digits naming a set: its normalized lines and the sandbox Python they are installed for."""
    payload = json.dumps({"requirements": normalize(lines), "python": PYTHON_TARGET}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def site_path(h: str) -> str:
    """Where set `h` is importable inside a sandbox (put it on sys.path)."""
    return f"{REQS_ROOT}/{check_hash(h)}"


def check_hash(h: str) -> str:
    if not isinstance(h, str) or not HASH_RE.fullmatch(h):
        raise ValueError(
            f"{h!r} is not a requirement set hash (12 hex digits); get one from requirements_hash(lines)"
        )
    return h


def check_hashes(hashes: Iterable[str] | None) -> frozenset[str]:
    if isinstance(hashes, str):
        hashes = [hashes]  # one hash, not its characters
    return frozenset(check_hash(h) for h in hashes or ())


def reqs_dir() -> Path:
    return cache_dir() / "reqs"


def wheels_dir() -> Path:
    return cache_dir() / "wheels"


def site_dir(h: str) -> Path:
    """The host folder of set `h` (complete once `prepared(h)`)."""
    return reqs_dir() / check_hash(h)


def prepared(h: str) -> bool:
    return (site_dir(h) / MARKER).exists()


def require_prepared(h: str) -> Path:
    if not prepared(h):
        raise SandboxUnavailable(NOT_PREPARED.format(h=h))
    return site_dir(h)


def manifest(h: str) -> dict:
    """What a prepared set holds: its lines, the installed distributions, the wheels they came from."""
    return json.loads((require_prepared(h) / MARKER).read_text())


def digest(h: str) -> str:
    """A hash of what set `h` installed: the same lines resolved again to other versions give another one."""
    return hashlib.sha256((require_prepared(h) / MARKER).read_bytes()).hexdigest()[:12]


def prepared_sets() -> list[str]:
    """The hashes of every set prepared in the cache."""
    root = reqs_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if HASH_RE.fullmatch(p.name) and (p / MARKER).exists())


def lines_from_file(path: str | Path) -> list[str]:
    """The requirement lines of a requirements.txt (comments and blanks dropped; options refused)."""
    return normalize(Path(path).read_text().splitlines())


def prepare(
    lines: Iterable[str],
    log: Callable[[str], None] = print,
    *,
    find_links: Iterable[str | Path] = (),
    build_sources: bool = True,
) -> Path:
    """The host folder of these requirements, installed once into the cache; returns at once when present.

    `find_links`: folders of wheels to use besides the cache (offline users, tests). `build_sources`: a
    dependency with no wheel for the sandbox's Python but a source release is built into a wheel here (its
    build runs on this host, as `pip install` would run it) and kept when it runs in the sandbox (pure Python,
    or compiled here for the sandbox's ABI: see _unfit_for_sandbox); False refuses it instead.
    """
    reqs = normalize(lines)
    if not reqs:
        raise RequirementsError("no requirement lines given: name at least one package (`name==version`)")
    h = requirements_hash(reqs)
    target = site_dir(h)
    if prepared(h):
        log(f"requirements {h} present: {target}")
        return target
    _check_pip()
    reqs_dir().mkdir(parents=True, exist_ok=True)
    wheels_dir().mkdir(parents=True, exist_ok=True)
    links = [wheels_dir(), *(Path(p).resolve() for p in find_links)]
    for link in links[1:]:
        if not link.is_dir():
            raise RequirementsError(f"--find-links {link} is not a folder: give a folder that holds wheels")
    with _locked(reqs_dir() / f".{h}.lock"):
        if prepared(h):  # another process prepared it while we waited
            return target
        started = time.monotonic()
        log(f"requirements {h}: {', '.join(reqs)}")
        with tempfile.TemporaryDirectory(prefix=f".{h}-", dir=reqs_dir()) as tmp:
            work = Path(tmp)
            req_file = work / "requirements.txt"
            req_file.write_text("".join(line + "\n" for line in reqs))
            with _locked(wheels_dir() / ".lock"):
                chosen = _resolve(req_file, links, work, log, build_sources)
            site = work / "site"
            proc = _pip(
                "install",
                "--no-index",
                "--no-deps",
                "--target",
                str(site),
                *target_options(),
                "--no-compile",
                "--progress-bar",
                "off",
                "--quiet",
                *(str(path) for _, _, path in chosen),
            )
            if proc.returncode != 0:
                raise RequirementsError(
                    f"pip could not install the resolved wheels of {h} ({_first_error(proc.stdout)}); fix the "
                    "requirement lines"
                )
            _compile(site, log)
            _settle_modes(site)
            record = {
                "hash": h,
                "requirements": reqs,
                "python": PYTHON_TARGET,
                "installed": sorted(f"{name}=={version}" for name, version, _ in chosen),
                "wheels": {path.name: _sha256(path) for _, _, path in sorted(chosen)},
            }  # the same wheels give the same record (and digest), however they came into the cache
            (site / MARKER).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
            if target.exists():
                shutil.rmtree(target)  # an earlier try that died before its marker
            site.rename(target)
        size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file() and not p.is_symlink())
        log(
            f"requirements {h} prepared in {time.monotonic() - started:.1f} s: {len(chosen)} distributions, "
            f"{size / 1e6:.1f} MB at {target}"
        )
    return target


def target_options() -> list[str]:
    """pip options that pick wheels for the sandbox's Python instead of the host's."""
    opts = [
        "--only-binary=:all:",
        "--implementation",
        PYTHON_TARGET["implementation"],
        "--python-version",
        PYTHON_TARGET["python_version"],
        "--abi",
        PYTHON_TARGET["abi"],
    ]
    for tag in PYTHON_TARGET["platforms"]:
        opts += ["--platform", tag]
    return opts


def _resolve(
    req_file: Path, links: list[Path], work: Path, log: Callable[[str], None], build_sources: bool
) -> list[tuple[str, str, Path]]:
    """The wheels that install these requirements, all in the wheel cache: (name, version, path) each."""
    report = _resolve_offline(req_file, links, work)
    if report is None:
        log(f"downloading wheels for {TARGET_LABEL} into {wheels_dir()} ...")
        for _ in range(MAX_SOURCE_BUILDS + 1):
            proc = _pip(
                "download",
                "-vv",  # pip names an index it cannot reach only at this level when it does not retry
                "--dest",
                str(wheels_dir()),
                *_link_options(links),
                *target_options(),
                "--progress-bar",
                "off",
                "-r",
                str(req_file),
            )
            if proc.returncode == 0:
                break
            missing = _no_distribution(proc.stdout)
            unreachable = _index_unreachable(proc.stdout)
            if unreachable and missing:
                raise SandboxUnavailable(
                    f"No package index is reachable ({unreachable}) and the wheels for {missing} are not in the "
                    f"wheel cache {wheels_dir()}: run `toolgym sandbox build-image --with FILE` where PyPI (or "
                    "your PIP_INDEX_URL) is reachable, or pass --find-links DIR with the wheels."
                )
            if missing is None:
                raise RequirementsError(
                    f"pip could not resolve the requirements ({_first_error(proc.stdout)}); fix the requirement "
                    "lines"
                )
            if not build_sources:
                raise RequirementsError(
                    f"{missing} has no wheel for the sandbox's Python ({TARGET_LABEL}), and building source "
                    "releases is off: pin a version that ships a wheel, or pass --find-links DIR with a wheel "
                    f"built by `pip wheel --no-deps {missing}`"
                )
            _build_wheel(missing, log)
        else:
            raise RequirementsError(
                f"more than {MAX_SOURCE_BUILDS} dependencies have no wheel for {TARGET_LABEL}: pass --find-links "
                "DIR with wheels built for them"
            )
        report = _resolve_offline(req_file, links, work)
        if report is None:
            raise RequirementsError(
                f"the wheels downloaded into {wheels_dir()} do not install offline for {TARGET_LABEL}; remove "
                "that folder and run again"
            )
    chosen = []
    for item in report["install"]:
        path = _local_path(item["download_info"]["url"])
        if path.parent != wheels_dir():
            # A wheel from a --find-links folder joins the cache, so the set can be prepared again offline.
            shutil.copy2(path, wheels_dir() / path.name)
            path = wheels_dir() / path.name
        chosen.append((item["metadata"]["name"], item["metadata"]["version"], path))
    return chosen


def _resolve_offline(req_file: Path, links: list[Path], work: Path) -> dict | None:
    """pip's resolution of the requirements from the local wheels alone, or None when they do not suffice."""
    report = work / "report.json"
    proc = _pip(
        "install",
        "--dry-run",
        "--ignore-installed",
        "--target",
        str(work / "dry-run"),
        "--no-index",
        *_link_options(links),
        *target_options(),
        "--report",
        str(report),
        "--quiet",
        "-r",
        str(req_file),
    )
    if proc.returncode != 0:
        return None
    return json.loads(report.read_text())


def _build_wheel(spec: str, log: Callable[[str], None]) -> str:
    """Build a source-only dependency into a wheel in the cache, kept only when it runs in the sandbox."""
    log(f"{spec}: no wheel for {TARGET_LABEL} on the index; building one from its source release here ...")
    with tempfile.TemporaryDirectory(dir=wheels_dir()) as out:
        proc = _pip("wheel", "-vv", "--no-deps", "--wheel-dir", out, "--progress-bar", "off", spec)
        if proc.returncode != 0:
            unreachable = _index_unreachable(proc.stdout)
            if unreachable and _no_distribution(proc.stdout):
                raise SandboxUnavailable(
                    f"No package index is reachable ({unreachable}) to fetch the source of {spec}: run again "
                    "where PyPI (or your PIP_INDEX_URL) is reachable, or pass --find-links DIR with its wheel."
                )
            if _no_distribution(proc.stdout):
                raise RequirementsError(
                    f"{spec} does not resolve on the package index (no such name or version): fix its spelling "
                    "or version"
                )
            raise RequirementsError(
                f"{spec} has no wheel for the sandbox's Python ({TARGET_LABEL}) and its source did not build "
                f"here ({_first_error(proc.stdout)}): pin a version that ships a wheel, or pass --find-links DIR "
                "with one"
            )
        (wheel,) = Path(out).glob("*.whl")
        problem = _unfit_for_sandbox(wheel)
        if problem:
            raise RequirementsError(
                f"{spec} has no wheel for the sandbox's Python ({TARGET_LABEL}) and its build here ({wheel.name}) "
                f"would not run there ({problem}): pin a version that ships manylinux wheels, or pass "
                "--find-links DIR with a wheel built for CPython 3.11 manylinux x86_64"
            )
        os.replace(wheel, wheels_dir() / wheel.name)
        log(f"{spec}: built {wheel.name}")
        return wheel.name


def _unfit_for_sandbox(wheel: Path) -> str:
    """Why a wheel built on this host would not run in the sandbox ("" when it would).

    Pure Python always runs. Compiled code runs when this host builds for the sandbox's own ABI (CPython 3.11,
    x86_64, a glibc no newer than bookworm's, so no symbol it needs is missing there) and every library it
    links is in the sandbox's root or in the wheel itself.
    """
    python_tag, abi_tag, platform_tag = wheel.stem.split("-")[-3:]
    if abi_tag == "none" and platform_tag == "any" and python_tag.startswith("py"):
        return ""
    host = (sys.implementation.name, f"{sys.version_info[0]}.{sys.version_info[1]}", platform.machine())
    if host != ("cpython", PYTHON_TARGET["python_version"], "x86_64") or platform_tag != "linux_x86_64":
        return f"compiled for this host's {host[0]} {host[1]} {host[2]}"
    libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    if not libc.startswith("glibc ") or _version(libc.split()[1]) > _version(SANDBOX_GLIBC):
        return f"compiled against this host's {libc or 'C library'}, newer than the sandbox's glibc {SANDBOX_GLIBC}"
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        bundled = {Path(n).name for n in names}
        for name in names:
            if ".so" in Path(name).name:
                missing = sorted(
                    lib for lib in elf_needed(z.read(name)) if lib not in bundled and not _sandbox_has(lib)
                )
                if missing:
                    return f"{name} links {', '.join(missing)}, which the sandbox lacks"
    return ""


def elf_needed(data: bytes) -> list[str]:
    """The shared libraries an ELF64 little-endian file links (its DT_NEEDED entries)."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return []
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    needed = []
    for _, sh_type, _, _, offset, size, link, _, _, _ in sections:
        if sh_type != 6:  # SHT_DYNAMIC
            continue
        strtab = sections[link][4]
        for pos in range(offset, offset + size, 16):
            tag, value = struct.unpack_from("<qQ", data, pos)
            if tag == 0:
                break
            if tag == 1:  # DT_NEEDED
                end = data.index(b"\0", strtab + value)
                needed.append(data[strtab + value : end].decode())
    return needed


def _sandbox_has(lib: str) -> bool:
    from .image import rootfs_dir, rootfs_ready  # image imports this module

    if not rootfs_ready():
        return lib in BOOKWORM_LIBS
    root = rootfs_dir()
    return any(
        (root / d / lib).exists()
        for d in ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib", "usr/lib")
    )


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text))


def _compile(site: Path, log: Callable[[str], None]) -> None:
    """Byte-compile for the sandbox's Python, so imports from the read-only folder need not compile each time."""
    if (
        sys.implementation.name != "cpython"
        or f"{sys.version_info[0]}.{sys.version_info[1]}" != (PYTHON_TARGET["python_version"])
    ):
        log(f"note: this host runs Python {sys.version.split()[0]}, so modules are compiled at each import")
        return
    # unchecked-hash: the files never change (read-only in every sandbox), so no import re-reads the source.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "compileall",
            "-q",
            "-j",
            "0",
            "--invalidation-mode",
            "unchecked-hash",
            str(site),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # a file that does not compile (a template, old syntax in a test) would fail the same inside


def _settle_modes(site: Path) -> None:
    """World-readable, writable by the owner only: sandboxes read the folder, nothing of theirs writes it."""
    site.chmod(0o755)
    for root, dirs, files in os.walk(site):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, 0o755 if os.stat(path).st_mode & 0o100 else 0o644)


def _pip(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pip", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


@functools.cache
def _check_pip() -> None:
    proc = _pip("--version")
    match = re.match(r"pip (\d+)\.(\d+)", proc.stdout)
    if proc.returncode != 0 or match is None:
        raise SandboxUnavailable(
            f"pip is missing from {sys.executable}: run `{sys.executable} -m ensurepip` to install it."
        )
    if tuple(map(int, match.groups())) < MIN_PIP:
        raise SandboxUnavailable(
            f"pip {match.group(1)}.{match.group(2)} is too old to prepare requirements: run "
            f"`{sys.executable} -m pip install -U pip` (22.2 or newer)."
        )


def _link_options(links: list[Path]) -> list[str]:
    return [opt for link in links for opt in ("--find-links", str(link))]


def _no_distribution(output: str) -> str | None:
    """The requirement pip found no distribution for, as pip wrote it."""
    match = re.search(r"No matching distribution found for (.+)", output)
    return match.group(1).strip() if match else None


def _index_unreachable(output: str) -> str | None:
    """The index URL pip could not reach ("an index" when it did not say which), or None."""
    failed = [line for line in output.splitlines() if NETWORK_ERRORS.search(line)]
    for line in failed:
        match = re.search(r"Could not fetch URL (\S+?):? ", line)
        if match:
            return match.group(1)
    return "an index" if failed else None


def _first_error(output: str) -> str:
    errors = [
        line.removeprefix("ERROR: ").strip() for line in output.splitlines() if line.startswith("ERROR:")
    ]
    if errors:
        return errors[0]  # pip's first error names the cause; its last one often only points to the docs
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _local_path(url: str) -> Path:
    parsed = urlparse(url)
    if parsed.scheme != "file":
        raise RequirementsError(
            f"pip resolved {url} to a remote file offline; remove {wheels_dir()} and run again"
        )
    return Path(unquote(parsed.path))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (two preparing the same set, or downloading into one cache)."""
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
