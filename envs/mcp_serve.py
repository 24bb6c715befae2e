"""Any toolgym environment as an MCP server on stdio (`toolgym envs serve-mcp`), so an MCP client (an IDE, an agent
framework, the MCP SDK's ClientSession) can drive one episode of one of its tasks.

The server's tools are the environment's (schemas from env.json) plus `toolgym_submit(answer)`, which gives the
final answer: the episode ends with the verifier's verdict in the result (or, in a multi-turn task, the user's
next message comes back). The task's prompt is the server's instructions and its prompt "task". Every call runs
in a sandbox through `ToolEnv`, never in this process: an MCP client is untrusted.
"""

from __future__ import annotations

import asyncio
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .gym import ToolEnv
from .lease import InProcess
from .registry import find_env

SUBMIT_TOOL = "toolgym_submit"
SUBMIT_DESCRIPTION = (
    "Give your final answer to the user and end your turn. In the last turn this ends the episode and returns "
    "the verifier's verdict (a reward from 0 to 1); otherwise it returns the user's next message."
)
SERVER_NAME = "toolgym"


class McpEpisode:
    """One episode of a ToolEnv, driven call by call (synchronous: the MCP server runs it on one thread)."""

    def __init__(
        self, env: str | Path, task_id: str | None = None, *, backend="auto", limits=None, pool=None
    ) -> None:
        if isinstance(backend, InProcess) or backend == "inprocess":
            raise ValueError(
                "serve-mcp runs the environment in a sandbox only (an MCP client is untrusted); "
                "use --backend docker, namespace or auto"
            )
        env_dir = Path(env) if Path(env, "env.json").is_file() else find_env(str(env))
        self.env = ToolEnv(env_dir, backend=backend, limits=limits, pool=pool)
        self.task_id = task_id or self.env.tasks[0].id
        if self.task_id not in {t.id for t in self.env.tasks}:
            raise ValueError(
                f"environment {self.env.env_id} has no task {self.task_id!r}; its tasks are: "
                + ", ".join(t.id for t in self.env.tasks[:20])
            )
        self.spec = self.env.env_spec
        self.submit_name = SUBMIT_TOOL if self.spec.tool(SUBMIT_TOOL) is None else f"{SUBMIT_TOOL}_answer"
        self.verdict: dict | None = None
        self.ended: str | None = None
        """Why the episode is over (None while it runs)."""
        self._calls = 0
        self.prompt = ""

    def start(self) -> None:
        """Reset to the task: its sandbox, a fresh state, the first user turn."""
        _, info = self.env.reset(options={"task_id": self.task_id})
        users = [m["content"] for m in info["messages"] if m["role"] == "user"]
        self.prompt = "\n\n".join(users)

    @property
    def instructions(self) -> str:
        return (
            f"{self.spec.description}\n\nYour task: {self.prompt}\n\nWhen you are done, call {self.submit_name} "
            "with your final answer to the user."
        )

    def tools(self) -> list[dict]:
        """The environment's tools and the submit tool, as MCP tool dicts (wire names)."""
        out = []
        for t in self.spec.tools:
            parameters = dict(t.function.parameters)
            parameters.setdefault("type", "object")
            out.append(
                {
                    "name": t.name,
                    "description": t.function.description,
                    "inputSchema": parameters,
                    "annotations": {"readOnlyHint": t.access == "read" and not t.submit},
                }
            )
        out.append(
            {
                "name": self.submit_name,
                "description": SUBMIT_DESCRIPTION,
                "inputSchema": {
                    "type": "object",
                    "properties": {"answer": {"type": "string", "description": "your final answer"}},
                    "required": ["answer"],
                },
            }
        )
        return out

    def _over(self, verdict: dict | None, why: str) -> str:
        self.verdict = verdict
        self.ended = why
        if verdict is None:
            return f"The episode is over: {why}."
        return f"The episode is over ({why}): reward {verdict['reward']:g} ({verdict['reason']})."

    def call(self, name: str, arguments: dict) -> tuple[str, bool]:
        """One MCP tools/call: (text for the client, whether it is an error)."""
        if self.ended is not None:
            done = f"reward {self.verdict['reward']:g}" if self.verdict else self.ended
            return f"Error: the episode has ended ({done}); start the server again for another.", True
        if name == self.submit_name:
            answer = arguments.get("answer")
            if not isinstance(answer, str):
                return f"Error: {self.submit_name} takes one string argument, answer.", True
            count = len(self.env.messages)
            _, _, terminated, truncated, info = self.env.step({"content": answer})
            if terminated:
                return self._over(info.get("verdict"), "answered"), False
            if truncated:
                return self._over(None, info.get("env_error") or "it ran out of steps"), True
            said = [
                m["content"] if m["role"] == "user" else f"[{m['role']}] {m['content']}"
                for m in info["messages"][count + 1 :]
                if m["role"] in ("user", "system", "developer")
            ]
            return "The user replies: " + "\n\n".join(said), False
        self._calls += 1
        call = {
            "id": f"mcp_{self._calls}",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments)},
        }
        count = len(self.env.messages)
        _, _, terminated, truncated, info = self.env.step({"content": "", "tool_calls": [call]})
        replies = [m for m in info["messages"][count + 1 :] if m["role"] == "tool"]
        text = replies[0]["content"] if replies else (info.get("env_error") or "")
        ok = bool(info["tool_results"] and info["tool_results"][0]["ok"])
        if terminated:  # the environment's own submit tool
            return text + "\n\n" + self._over(info.get("verdict"), f"{name} submitted"), not ok
        if truncated:
            return text + "\n\n" + self._over(None, info.get("env_error") or "it ran out of steps"), True
        return text, not ok

    def close(self) -> None:
        self.env.close()


def build_server(episode: McpEpisode, run):
    """The MCP SDK's low-level Server over `episode`; `run(fn, *args)` runs a blocking call off the event loop."""
    import mcp.types as types
    from mcp.server import Server

    tools = [types.Tool.model_validate(t) for t in episode.tools()]

    async def list_tools(ctx, params) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools)

    async def call_tool(ctx, params) -> types.CallToolResult:
        text, error = await run(episode.call, params.name, dict(params.arguments or {}))
        return types.CallToolResult(content=[types.TextContent(text=text)], is_error=error)

    async def list_prompts(ctx, params) -> types.ListPromptsResult:
        return types.ListPromptsResult(
            prompts=[types.Prompt(name="task", description="The task of this episode, as the user asks it.")]
        )

    async def get_prompt(ctx, params) -> types.GetPromptResult:
        if params.name != "task":
            from mcp.shared.exceptions import MCPError

            raise MCPError(
                code=types.INVALID_PARAMS, message=f"there is no prompt {params.name!r}; use 'task'"
            )
        return types.GetPromptResult(
            description=f"{episode.spec.id} / {episode.task_id}",
            messages=[types.PromptMessage(role="user", content=types.TextContent(text=episode.prompt))],
        )

    return Server(
        SERVER_NAME,
        version="1",
        instructions=episode.instructions,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_prompts=list_prompts,
        on_get_prompt=get_prompt,
    )


def serve_mcp(env: str | Path, task_id: str | None = None, *, backend="auto", limits=None) -> dict | None:
    """Serve one episode of `env` (an id or a folder) as an MCP server on this process's stdin and stdout until
    the client disconnects; the verdict, where the episode was submitted. The sandbox starts before the
    handshake, so a bad environment, task or backend fails here with one sentence, before any MCP traffic."""
    import anyio
    from mcp.server.stdio import stdio_server

    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="toolgym-mcp-episode")
    episode = worker.submit(McpEpisode, env, task_id, backend=backend, limits=limits).result()
    try:
        worker.submit(episode.start).result()

        async def run(fn, *args):
            return await asyncio.wrap_future(worker.submit(fn, *args))

        server = build_server(episode, run)

        async def main() -> None:
            async with stdio_server() as (read, write):
                await server.run(read, write, server.create_initialization_options())

        anyio.run(main)
        return episode.verdict
    finally:
        worker.submit(episode.close).result()
        worker.shutdown()


def main(argv: list[str] | None = None) -> int:
    """`python -m toolgym.envs.mcp_serve ENV [--task ID] [--backend B]` (the same as `toolgym envs serve-mcp`)."""
    import argparse

    ap = argparse.ArgumentParser(prog="toolgym envs serve-mcp", description=__doc__.splitlines()[0])
    ap.add_argument("env", help="an environment id or folder")
    ap.add_argument("--task", help="the task id (default: the first task)")
    ap.add_argument("--backend", default="auto", choices=["auto", "docker", "namespace"])
    args = ap.parse_args(argv)
    try:
        verdict = serve_mcp(args.env, args.task, backend=args.backend)
    except ValueError as exc:
        print(f"toolgym: {exc}", file=sys.stderr)
        return 2
    if verdict is not None:
        print(f"toolgym: reward {verdict['reward']:g} ({verdict['reason']})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
