"""Moving environment folders between machines: one tar of a folder, and a node's cache keyed by content hash.

Ray nodes share no filesystem. Rollouts ship each environment to a node once (`pack_env` / `unpack_env`, which
checks the hash on arrival); synthesis ships built folders back to the one process that writes the corpus
(`pack_folder` / `unpack_folder`).
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import uuid
from pathlib import Path

from .spec import content_hash


def pack_folder(folder: Path) -> bytes:
    """The folder's files (names sorted, modes kept) as tar bytes, rooted at the folder's own name."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(folder, arcname=Path(folder).name)
    return buf.getvalue()


def unpack_folder(data: bytes, parent: Path) -> Path:
    """Unpack `pack_folder` bytes under `parent`; the folder made. The "data" filter refuses absolute paths,
    links out of the folder and device files, so a corrupt or hostile archive cannot write elsewhere."""
    parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = {m.name.split("/", 1)[0] for m in tar.getmembers()}
        if len(names) != 1:
            raise ValueError(f"a shipped folder holds {len(names)} top-level entries, not one")
        tar.extractall(parent, filter="data")
    return parent / names.pop()


def pack_env(env_dir: Path) -> tuple[str, bytes]:
    """(content hash, tar bytes) of an environment folder."""
    return content_hash(env_dir), pack_folder(Path(env_dir))


def unpack_env(env_id: str, digest: str, data: bytes, root: Path) -> Path:
    """Unpack a shipped environment into `root/<hash>/<env_id>` (atomically, so processes sharing a node's cache
    never see half of one) and check its content hash. Already there: nothing is unpacked."""
    final = root / digest / env_id
    if final.is_dir():
        return final
    staging = root / f".{digest}.{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        got = unpack_folder(data, staging)
        if got.name != env_id or content_hash(got) != digest:
            raise RuntimeError(f"the environment {env_id} arrived with other contents than its hash says")
        try:
            os.rename(staging, root / digest)
        except OSError:
            if not final.is_dir():  # not another process of this node that unpacked it first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final
