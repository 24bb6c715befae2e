"""toolgym.sandbox: isolated execution for agent and environment code.

from toolgym.sandbox import open_sandbox, Limits
with open_sandbox(limits=Limits(memory_mb=512, timeout_s=10)) as sb:
    sb.run(["python3", "-c", "print(1)"])

Requirements an environment declares are prepared once (`prepare(lines)`, or `toolgym sandbox build-image
--with FILE`) and given by hash: `open_sandbox(requirements=[requirements_hash(lines)])`.
"""

from .errors import SandboxDied, SandboxError, SandboxFileNotFound, SandboxPathError, SandboxUnavailable
from .limits import Limits
from .pool import BlockingSandboxPool, PoolStats, SandboxPool
from .requirements import RequirementsError, prepare, requirements_hash, site_path
from .results import CellError, CellResult, RunResult
from .sandbox import PythonSession, Sandbox, get_backend, open_sandbox

__all__ = [
    "BlockingSandboxPool",
    "CellError",
    "CellResult",
    "Limits",
    "PoolStats",
    "PythonSession",
    "RequirementsError",
    "RunResult",
    "Sandbox",
    "SandboxDied",
    "SandboxError",
    "SandboxFileNotFound",
    "SandboxPathError",
    "SandboxPool",
    "SandboxUnavailable",
    "get_backend",
    "open_sandbox",
    "prepare",
    "requirements_hash",
    "site_path",
]
