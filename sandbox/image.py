"""The sandbox base image: Debian minbase with python3, built offline by debootstrap and `docker import`.

The image is tagged by a hash of its recipe, so a changed recipe builds a new image and an unchanged one is
never rebuilt. The root file system stays in the cache, where the namespace backend uses it as its root.
Environments that declare requirements run on a derived image: the base plus one read-only layer per prepared
requirement set (see requirements.py), built offline and tagged by a hash of the base and the sets.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from .backend import SANDBOX_UID, SERVER_DIR, WORKSPACE
from .errors import SandboxUnavailable
from .paths import cache_dir
from .requirements import REQS_ROOT, check_hashes, digest, prepared, require_prepared, site_dir, site_path

REPOSITORY = "toolgym/sandbox"
REQS_REPOSITORY = "toolgym/sandbox-reqs"
RECIPE = {
    "suite": "bookworm",
    "variant": "minbase",
    "include": ["python3"],
    "user": ["sandbox", SANDBOX_UID],
    "dirs": [WORKSPACE, SERVER_DIR, "/run/toolgym"],
    "version": 1,
}
DEFAULT_MIRROR = "http://deb.debian.org/debian"


def recipe_hash() -> str:
    return hashlib.sha256(json.dumps(RECIPE, sort_keys=True).encode()).hexdigest()[:12]


def default_image() -> str:
    """The image sandboxes use unless told otherwise: TOOLGYM_IMAGE, else the recipe's own tag."""
    return os.environ.get("TOOLGYM_IMAGE") or f"{REPOSITORY}:{recipe_hash()}"


def rootfs_dir() -> Path:
    return cache_dir() / "rootfs" / recipe_hash()


def rootfs_ready() -> bool:
    return (rootfs_dir() / ".toolgym-complete").exists()


def build_rootfs(log: Callable[[str], None] = print) -> Path:
    """debootstrap the recipe into the cache (once) and return the folder."""
    target = rootfs_dir()
    if rootfs_ready():
        log(f"root file system present: {target}")
        return target
    if os.geteuid() != 0:
        raise SandboxUnavailable(
            "Building the sandbox image needs root (debootstrap); run `sudo toolgym sandbox build-image`, "
            "or set TOOLGYM_IMAGE to any image that has python3."
        )
    if shutil.which("debootstrap") is None:
        from .engine import apt_install  # installs it where we are root on Debian, else says how

        apt_install(["debootstrap"], log)
    mirror = os.environ.get("TOOLGYM_DEBIAN_MIRROR", DEFAULT_MIRROR)
    work = Path(tempfile.mkdtemp(prefix="rootfs-", dir=target.parent if target.parent.exists() else None))
    target.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        "debootstrap",
        f"--variant={RECIPE['variant']}",
        f"--include={','.join(RECIPE['include'])}",
        RECIPE["suite"],
        str(work),
        mirror,
    ]
    log(
        f"debootstrap {RECIPE['suite']} ({RECIPE['variant']} + {', '.join(RECIPE['include'])}) from {mirror} ..."
    )
    started = time.monotonic()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        tail = "\n".join(proc.stdout.splitlines()[-5:])
        raise SandboxUnavailable(
            f"debootstrap could not build the root file system from {mirror} (set TOOLGYM_DEBIAN_MIRROR to a "
            f"reachable mirror, or TOOLGYM_IMAGE to an image with python3):\n{tail}"
        )
    _customize(work)
    if target.exists():
        shutil.rmtree(target)
    work.chmod(0o755)  # mkdtemp made it 0700: as `/` of a sandbox every uid there must reach into it
    work.rename(target)
    (target / ".toolgym-complete").write_text(json.dumps(RECIPE, sort_keys=True))
    log(f"root file system built in {time.monotonic() - started:.0f} s: {target}")
    return target


def reqs_mount_point(root: Path) -> Path:
    """The empty folder in a root file system that the namespace backend mounts requirement sets below.

    Made outside the recipe, so root file systems built before requirements existed keep their hash (and the
    base image its tag) and get it on first use."""
    path = root / REQS_ROOT.lstrip("/")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _customize(root: Path) -> None:
    name, uid = RECIPE["user"]
    with open(root / "etc/passwd", "a") as f:
        f.write(f"{name}:x:{uid}:{uid}:toolgym sandbox:{WORKSPACE}:/bin/sh\n")
    with open(root / "etc/group", "a") as f:
        f.write(f"{name}:x:{uid}:\n")
    for d in RECIPE["dirs"]:
        (root / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
    reqs_mount_point(root)
    # Package caches are of no use inside a sandbox and would only grow the image.
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for p in (root / junk).glob("*"):
            if p.is_file():
                p.unlink()


def image_present(client, image: str) -> bool:
    import docker.errors

    try:
        client.images.get(image)
        return True
    except docker.errors.ImageNotFound:
        return False


def build_image(client, log: Callable[[str], None] = print, force: bool = False) -> str:
    """Build (or find) the default image; returns its tag."""
    tag = f"{REPOSITORY}:{recipe_hash()}"
    if not force and image_present(client, tag):
        log(f"image present: {tag}")
        return tag
    root = build_rootfs(log)
    log(f"docker import -> {tag} ...")
    started = time.monotonic()
    with tempfile.NamedTemporaryFile(suffix=".tar", dir=cache_dir()) as tar:
        # the requirement sets' mount point is the namespace backend's alone (reqs_mount_point): left out, the
        # image holds the same files whether its root file system was built before requirement sets or after
        subprocess.run(
            [
                "tar", "-C", str(root), "--exclude=./.toolgym-complete", f"--exclude=.{REQS_ROOT}",
                "-cf", tar.name, ".",
            ],
            check=True,
        )  # fmt: skip
        repository, version = tag.split(":")
        client.api.import_image_from_file(
            tar.name,
            repository=repository,
            tag=version,
            changes=[f'CMD ["python3", "{SERVER_DIR}/server.py"]', f"WORKDIR {WORKSPACE}"],
        )
    if not image_present(client, tag):
        raise SandboxUnavailable(f"docker import finished but {tag} is not listed; see the engine's log")
    log(f"image built in {time.monotonic() - started:.0f} s: {tag}")
    return tag


def derived_tag(base: str, hashes: Iterable[str]) -> str:
    """The tag of `base` plus requirement sets `hashes`: the same base and sets always give the same tag."""
    payload = "\n".join([base, *sorted(check_hashes(hashes))])
    return f"{REQS_REPOSITORY}:{hashlib.sha256(payload.encode()).hexdigest()[:12]}"


def ensure_image(
    client, hashes: Iterable[str], log: Callable[[str], None] = print, base: str | None = None
) -> str:
    """The image of `base` (the default image) plus each requirement set at `site_path(h)`; returns its tag.

    Built when missing, offline, from the prepared folders alone (one root-owned, read-only layer per set).
    An existing image whose labels show another base or other contents for a set prepared here is rebuilt;
    one whose sets are not prepared here (pulled from a registry) is used as it is.
    """
    import docker.errors

    base = base or default_image()
    hashes = sorted(check_hashes(hashes))
    if not hashes:
        return base
    tag = derived_tag(base, hashes)
    try:
        base_id = client.images.get(base).id
    except docker.errors.ImageNotFound:
        raise SandboxUnavailable(
            f"The sandbox image {base} is missing: run `toolgym sandbox build-image` (offline, needs root)."
        ) from None
    labels = {"toolgym.base": base_id, **{f"toolgym.reqs.{h}": digest(h) for h in hashes if prepared(h)}}
    try:
        have = client.images.get(tag).labels or {}
        if all(have.get(key) == value for key, value in labels.items()):
            return tag
        log(f"{tag} holds another base or other contents of a set; rebuilding it")
    except docker.errors.ImageNotFound:
        pass
    for h in hashes:
        require_prepared(h)
    log(f"building {tag}: {base} + requirements {', '.join(hashes)} ...")
    started = time.monotonic()
    with tempfile.TemporaryFile(dir=cache_dir()) as context:
        _write_context(context, base, hashes)
        context.seek(0)
        stream = client.api.build(
            fileobj=context,
            custom_context=True,
            tag=tag,
            labels=labels,
            rm=True,
            forcerm=True,
            pull=False,
            network_mode="none",
            decode=True,
        )
        for chunk in stream:
            if "error" in chunk:
                raise SandboxUnavailable(f"docker build of {tag} failed: {chunk['error'].strip()}")
    if not image_present(client, tag):
        raise SandboxUnavailable(f"docker build finished but {tag} is not listed; see the engine's log")
    log(f"image built in {time.monotonic() - started:.1f} s: {tag}")
    return tag


def _write_context(f, base: str, hashes: list[str]) -> None:
    """A docker build context: a Dockerfile with one COPY (one layer) per set, and the sets' folders."""
    dockerfile = "".join([f"FROM {base}\n", *(f"COPY {h} {site_path(h)}\n" for h in hashes)]).encode()
    with tarfile.open(fileobj=f, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
        for h in hashes:
            tar.add(site_dir(h), arcname=h, filter=_root_owned)


def _root_owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Owned by root and writable by root only, whoever prepared the folder: agent code cannot change it."""
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if info.isdir():
        info.mode = 0o755
    elif info.isfile():
        info.mode = 0o755 if info.mode & 0o100 else 0o644
    return info
