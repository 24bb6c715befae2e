"""Async LLM clients for OpenAI-compatible servers (vLLM first), on httpx.

`ChatClient` uses `/v1/chat/completions` and the server's own template and parsers. `CompletionsClient`
uses `/v1/completions`: it renders the prompt with one of our encodings and parses the text with the same
one, so the thinking rule and tool-call format are ours whatever the server's template says.
Both retry 429/5xx, connection errors and garbage answers with seeded exponential backoff, bound each request
by a timeout (`timeout_s`, 120 s by default), cap concurrency, and sum usage. A base URL may list several
servers (`URL[=CAP],URL[=CAP],...`): requests go to the least busy one under its cap, and a server that fails
rests for a cool-down while its request moves on to another (see `parse_base_urls`). Failures are `ModelServerError`s
whose `kind` tells a hang, a stalled answer, a dropped connection, a 5xx, a garbage answer, a rejected request
and an overflowing context apart (`MODEL_ERROR_KINDS`). Everything read from a server comes out as clean strings.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from . import encodings
from .encodings._safe import MAX_TEXT_CHARS, clean_text, loads, one_line
from .messages import Message, normalize_messages, openai_tool

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
DEFAULT_TIMEOUT_S = 120.0
"""Seconds one request may take, from sending it to the last byte of the answer (see `_ServerClient`)."""
MAX_RESPONSE_BYTES = 64 * 2**20
"""A bigger answer is read as garbage: no real completion comes near it."""
DEFAULT_COOLDOWN_S = 30.0
"""Seconds a failed server of a base-URL list is passed over while another one answers."""


class ModelServerError(RuntimeError):
    """A model server problem, in one sentence that names the fix.

    `kind` says which (it becomes the step error's kind in a trajectory); `infra` says whether it is the
    infrastructure's failure (retried by the rollout, kept out of agent metrics) or the agent's.
    """

    kind = "model_error"
    infra = True

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(one_line(message, 1000))
        self.status = status


class ModelServerUnavailable(ModelServerError):
    """Nothing answers at the base URL (connection refused, no such host, a URL that is not http)."""

    kind = "model_unavailable"


class ModelServerTimeout(ModelServerError):
    """No answer began within the request timeout (a hung or overloaded server)."""

    kind = "model_timeout"


class ModelServerSlowStream(ModelServerTimeout):
    """The answer began but did not finish within the request timeout (it stalled or trickled)."""

    kind = "model_slow_stream"


class ModelServerDropped(ModelServerError):
    """The server closed the connection without a whole answer (it crashed or was killed)."""

    kind = "model_dropped"


class ModelServerHTTPError(ModelServerError):
    """Still a 5xx (or 408/409/429) after the retries."""

    kind = "model_http_error"


class ModelServerBadResponse(ModelServerError):
    """The answer was not an OpenAI-compatible completion: not JSON, or JSON of the wrong shape."""

    kind = "model_bad_response"


class ModelServerRejected(ModelServerError):
    """A 4xx other than a context overflow (unknown model, bad parameter, auth): a configuration error."""

    kind = "model_rejected"


class ContextLengthExceeded(ModelServerError):
    """The server refused the prompt as longer than the model's context window (vLLM's "maximum context
    length", OpenAI's `context_length_exceeded`). The agent's own conversation grew too long: its failure,
    not the infrastructure's, so the episode ends with stop_reason "context_length" and is not retried."""

    kind = "context_length"
    infra = False


MODEL_ERROR_KINDS = tuple(
    c.kind
    for c in (
        ModelServerError,
        ModelServerUnavailable,
        ModelServerTimeout,
        ModelServerSlowStream,
        ModelServerDropped,
        ModelServerHTTPError,
        ModelServerBadResponse,
        ModelServerRejected,
        ContextLengthExceeded,
    )
)


@dataclass
class RetryPolicy:
    max_retries: int = 4
    """Retries after the first attempt (so up to max_retries + 1 requests)."""
    backoff_s: float = 0.5
    """Delay before the first retry; doubles each time up to max_backoff_s."""
    max_backoff_s: float = 16.0
    jitter: float = 0.25
    """Each delay is scaled by a factor drawn from [1 - jitter, 1 + jitter]."""
    seed: int = 0
    """Seeds the jitter, so a run's retry timing is reproducible."""
    timeout_retries: int = 0
    """How many of the retries may follow a timed-out attempt. None by default: a hung server costs one
    request timeout, then the rollout retries the whole episode (on a fresh sandbox) by itself."""

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before retry number `attempt` (0-based)."""
        base = min(self.max_backoff_s, self.backoff_s * 2**attempt)
        return base * (1 + self.jitter * rng.uniform(-1, 1))

    def delays(self) -> list[float]:
        """The waits of a client's first retried request (one seeded RNG per client)."""
        rng = random.Random(self.seed)
        return [self.delay(attempt, rng) for attempt in range(self.max_retries)]


@dataclass
class Usage:
    """Token usage summed over a client's requests."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    """Successful requests."""
    retries: int = 0
    """Attempts that failed and were retried."""
    failovers: int = 0
    """Requests moved to another server of a base-URL list after one failed them."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, usage: Mapping[str, Any] | None) -> None:
        self.requests += 1
        if isinstance(usage, Mapping):
            self.prompt_tokens += token_count(usage.get("prompt_tokens"))
            self.completion_tokens += token_count(usage.get("completion_tokens"))


def token_count(value: Any) -> int:
    """A server's token count as an int; anything that is not a count (a string, a negative, NaN) is 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    return int(value) if value == value and 0 <= value < 2**53 else 0


def clean_usage(usage: Any) -> dict[str, Any]:
    """The server's token counts as ints: prompt, completion and total ({} when it sent no usage object)."""
    if not isinstance(usage, Mapping):
        return {}
    counts = {key: token_count(usage.get(key)) for key in ("prompt_tokens", "completion_tokens")}
    return {**counts, "total_tokens": token_count(usage.get("total_tokens")) or sum(counts.values())}


@dataclass
class Completion:
    """One model turn: the parsed assistant message and what came with it."""

    message: Message
    """The assistant message; its `parse_errors` lists what could not be read (empty when clean)."""
    finish_reason: str | None
    usage: dict[str, Any] = field(default_factory=dict)
    prompt: str | None = None
    """The prompt text sent (raw completions mode only)."""
    text: str | None = None
    """The raw completion text (raw completions mode only)."""


def api_root(base_url: str) -> str:
    """`http://host:8000`, `http://host:8000/` and `http://host:8000/v1` all mean the same server."""
    root = base_url.rstrip("/")
    return root if root.endswith("/v1") else root + "/v1"


def parse_base_urls(base_url: str) -> list[tuple[str, int | None]]:
    """The servers of a `--base-url`: `URL` or a comma-separated list of `URL` or `URL=CAP` (at most CAP
    requests in flight on that server), as (url, cap or None). Raises ValueError naming the fix."""
    servers: list[tuple[str, int | None]] = []
    seen: set[str] = set()
    for item in base_url.split(","):
        url, cap = item.strip(), None
        head, eq, tail = url.rpartition("=")
        if eq:
            if not (tail.strip().isdigit() and int(tail) >= 1):
                raise ValueError(
                    f"--base-url entry {url!r}: a server's cap is a whole number of requests, at least 1 "
                    "(as in http://host:8000/v1=8)."
                )
            url, cap = head.strip(), int(tail)
        if not url:
            raise ValueError(
                f"--base-url {base_url!r} has an empty entry: list servers as URL[=CAP],URL[=CAP] "
                "with no empty item."
            )
        if api_root(url) in seen:
            raise ValueError(f"--base-url lists {url} twice: give each server once (with =CAP to weigh it).")
        seen.add(api_root(url))
        servers.append((url, cap))
    return servers


def base_urls(base_url: str) -> list[str]:
    """The server URLs of a `--base-url` (one, or each of a list), caps left out."""
    return [url for url, _ in parse_base_urls(base_url)]


@dataclass
class Server:
    """One server of a client's base-URL list, with what the client knows of it."""

    url: str
    cap: int | None
    """At most this many of the client's requests in flight on it (None: only the client's own cap)."""
    http: httpx.AsyncClient = field(repr=False)
    in_flight: int = 0
    """Requests on it now (a request waiting out a retry delay still counts)."""
    requests: int = 0
    """Requests sent to it, answered or not."""
    failures: int = 0
    """Times it failed a request after its retries and was put to rest."""
    cooling_until: float = 0.0
    """time.monotonic() until which it is passed over while another server is open."""


class _BadShape(Exception):
    """The answer is JSON, but not the completion the client asked for."""


class _Failed(Exception):
    """One attempt failed: `kind` is connect | hang | slow | dropped | status | garbage."""

    def __init__(self, kind: str, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.status = status


class _ServerGaveUp(Exception):
    """One server failed a request after its retries: `last` is its last failure, after `tries` attempts."""

    def __init__(self, last: _Failed, tries: int) -> None:
        super().__init__(last.detail)
        self.last = last
        self.tries = tries


_JSON_HEADERS = {"Content-Type": "application/json"}
_CONTEXT_LENGTH = re.compile(
    r"maximum context length|context[ _-]length[ _-]exceeded|longer than the maximum model length"
    r"|exceeds? the (?:model'?s? )?(?:maximum )?context (?:length|window)|prompt is too long",
    re.IGNORECASE,
)


def _encode(body: Mapping[str, Any]) -> bytes:
    """The request as UTF-8 JSON; lone surrogates (a tool result, say) become U+FFFD instead of failing."""
    return clean_text(json.dumps(body, ensure_ascii=False, allow_nan=False)).encode("utf-8")


def _error_object(data: Any) -> Mapping[str, Any]:
    """The error object of an error answer: OpenAI `{"error": {...}}`, vLLM's flat one, FastAPI `detail`."""
    if not isinstance(data, Mapping):
        return {}
    err = data.get("error")
    return err if isinstance(err, Mapping) else data


def _server_message(data: Any, text: str, reason: str) -> str:
    """What the server said went wrong, on one line (at most 300 characters)."""
    if isinstance(data, str):
        msg: Any = data
    else:
        err = _error_object(data)
        msg = err.get("message") or err.get("detail")
        if not msg and isinstance(data, Mapping):
            msg = data.get("error")
    if not isinstance(msg, str) or not msg.strip():
        msg = text if data is None and text.strip() else reason
    return one_line(msg or "no message", 300)


def _is_context_length(data: Any, message: str) -> bool:
    code = _error_object(data).get("code")
    return code == "context_length_exceeded" or bool(_CONTEXT_LENGTH.search(message))


def _first_choice(data: Mapping[str, Any]) -> Mapping[str, Any]:
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise _BadShape("JSON without a choices list")
    if not isinstance(choices[0], Mapping):
        raise _BadShape("JSON whose choices[0] is not an object")
    return choices[0]


def _finish_reason(choice: Mapping[str, Any]) -> str | None:
    reason = choice.get("finish_reason")
    return one_line(reason, 100) if isinstance(reason, str) else None


class _ServerClient:
    """What both clients share: the servers (one httpx client each), the retry loop, the semaphore, the usage
    sums.

    `base_url` names one server or several (`parse_base_urls`: `URL[=CAP],...`). Each request goes to the open
    server with the fewest requests in flight (ties: the one sent the fewest) whose cap allows one more, and is
    retried there as one server's requests always were; a server that still fails it (or refuses the
    connection, while another is left to try) rests for `cooldown_s` and the request moves to the next server.
    Only when every server has failed it does the request raise.

    `timeout_s` (default 120 s, None for none) bounds each request from sending it to the last byte of the
    answer: a server that hangs, or starts answering and stalls, fails within it instead of holding the
    episode until the rollout's episode timeout. It is not the episode's budget (`Budgets.max_wall_s`);
    waiting for a free slot under `max_concurrency` or a server's cap does not count. Failures raise a
    `ModelServerError` whose `kind` tells them apart (see MODEL_ERROR_KINDS) and whose message is one sentence.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
        max_concurrency: int = 16,
        retry: RetryPolicy | None = None,
        sampling: Mapping[str, Any] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        cooldown_s: float = DEFAULT_COOLDOWN_S,
    ) -> None:
        self.base_url = base_url
        self.model = model
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self.sampling = dict(sampling or {})
        self.usage = Usage()
        self.cooldown_s = cooldown_s
        # One RNG per client, drawn at each retry: concurrent requests get different waits (no herd).
        self._rng = random.Random(self.retry.seed)
        self._sleep = sleep
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._changed = asyncio.Condition()
        """Notified when a server frees a slot or is put to rest: a request waiting for a server looks again."""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.servers = []
        for url, cap in parse_base_urls(base_url):
            slots = min(cap or max_concurrency, max_concurrency)
            http = httpx.AsyncClient(
                base_url=api_root(url),
                headers=headers,
                timeout=httpx.Timeout(timeout_s),
                limits=httpx.Limits(max_connections=slots, max_keepalive_connections=slots),
                transport=transport,
            )
            self.servers.append(Server(url, cap, http))

    async def __aenter__(self) -> _ServerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for server in self.servers:
            await server.http.aclose()

    async def _attempt(self, server: Server, path: str, payload: bytes) -> tuple[int, bytes, str]:
        """One POST: (status, body, reason phrase), or _Failed saying what went wrong."""
        began = False  # the status line and headers arrived
        try:
            async with asyncio.timeout(self.timeout_s):
                async with server.http.stream(
                    "POST", path, content=payload, headers=_JSON_HEADERS
                ) as response:
                    began = True
                    chunks, size = [], 0
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > MAX_RESPONSE_BYTES:
                            raise _Failed("garbage", f"an answer over {MAX_RESPONSE_BYTES // 2**20} MiB")
                        chunks.append(chunk)
                    return response.status_code, b"".join(chunks), response.reason_phrase
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol) as exc:
            raise _Failed("connect", one_line(str(exc) or type(exc).__name__, 200)) from None
        except (TimeoutError, httpx.TimeoutException):
            raise _Failed("slow" if began else "hang", "") from None
        except httpx.TransportError as exc:
            raise _Failed("dropped", one_line(str(exc) or type(exc).__name__, 200)) from None
        except httpx.HTTPError as exc:
            raise _Failed("garbage", one_line(f"{type(exc).__name__}: {exc}", 200)) from None

    async def _acquire(self, tried: set[int]) -> Server | None:
        """A slot on the next server for a request that `tried` the servers of those indices; None when it has
        tried them all. Servers at rest are passed over while an open one is left, even a busy one."""
        while True:
            untried = [s for i, s in enumerate(self.servers) if i not in tried]
            if not untried:
                return None
            now = time.monotonic()
            resting = [s.cooling_until - now for s in untried if s.cooling_until > now]
            pool = [s for s in untried if s.cooling_until <= now] or untried
            free = [s for s in pool if s.cap is None or s.in_flight < s.cap]
            if free:
                server = min(free, key=lambda s: (s.in_flight, s.requests))
                server.in_flight += 1
                server.requests += 1
                return server
            async with self._changed:
                try:
                    # a server coming back from rest frees no slot: look again when the first one does
                    await asyncio.wait_for(self._changed.wait(), min(resting) if resting else None)
                except TimeoutError:
                    pass

    async def _release(self, server: Server, failed: bool) -> None:
        server.in_flight -= 1
        if failed:
            server.failures += 1
            server.cooling_until = time.monotonic() + self.cooldown_s
        else:
            server.cooling_until = 0.0
        async with self._changed:
            self._changed.notify_all()

    async def _post(self, path: str, body: dict[str, Any], read: Callable[[dict[str, Any]], Any]) -> Any:
        """POST with retries, moving to another server when one fails; `read(data)` takes what the client
        needs from the JSON answer (raising _BadShape when it is not there). Returns what `read` returns or
        raises a ModelServerError."""
        payload = _encode(body)
        tried: set[int] = set()
        gave_up: _ServerGaveUp | None = None
        failed_at: Server | None = None
        async with self._semaphore:
            while (server := await self._acquire(tried)) is not None:
                tried.add(self.servers.index(server))
                if gave_up is not None:
                    self.usage.failovers += 1
                failed = False
                try:
                    return await self._post_to(
                        server, path, payload, read, last=len(tried) == len(self.servers)
                    )
                except _ServerGaveUp as exc:
                    gave_up, failed_at, failed = exc, server, True
                finally:
                    await self._release(server, failed)
        assert gave_up is not None and failed_at is not None
        raise self._give_up(gave_up.last, path, gave_up.tries, failed_at)

    async def _post_to(
        self, server: Server, path: str, payload: bytes, read: Callable[[dict[str, Any]], Any], last: bool
    ) -> Any:
        """The request on one server with its retries; `last`: no other server is left to try, so a refused
        connection is retried here too. Raises _ServerGaveUp, or the errors no other server would change (a
        rejected request, an overflowing context)."""
        last_failure = _Failed("garbage", "")
        timeouts = tries = 0
        for attempt in range(self.retry.max_retries + 1):
            if attempt:
                self.usage.retries += 1
                await self._sleep(self.retry.delay(attempt - 1, self._rng))
            tries += 1
            try:
                status, raw, reason = await self._attempt(server, path, payload)
            except _Failed as failed:
                last_failure = failed
                if failed.kind == "connect" and not last:
                    break  # nothing listens there: the next server, not a backoff
                if failed.kind in ("hang", "slow"):
                    timeouts += 1
                    if timeouts > self.retry.timeout_retries:
                        break
                continue
            text = raw.decode("utf-8", "replace")  # bytes that are not UTF-8 become U+FFFD
            data, why = loads(text)
            if status >= 400 or (isinstance(data, dict) and "error" in data and "choices" not in data):
                message = _server_message(data, text, reason)
                if _is_context_length(data, message):
                    raise ContextLengthExceeded(
                        f"The prompt no longer fits the model's context window ({status}: {message}).",
                        status=status,
                    )
                if status in RETRY_STATUSES:
                    last_failure = _Failed("status", f"{status}: {message}", status)
                    continue
                if status >= 400:
                    raise ModelServerRejected(
                        f"The model server at {server.url} rejected the request ({status}): {message}",
                        status=status,
                    )
                last_failure = _Failed("garbage", f"an error object instead of a completion ({message})")
                continue
            if not isinstance(data, dict):
                shown = one_line(text[:80], 80) if text.strip() else "an empty body"
                last_failure = _Failed("garbage", f"something other than a JSON object ({shown!r})")
                continue
            try:
                result = read(data)
            except _BadShape as exc:
                last_failure = _Failed("garbage", str(exc))
                continue
            self.usage.add(data.get("usage"))
            return result
        raise _ServerGaveUp(last_failure, tries)

    def _give_up(self, last: _Failed, path: str, tries: int, server: Server) -> ModelServerError:
        """The error of a request every server failed: the last server's failure, said as for one server, with
        the list named when there are several."""
        error = self._server_error(last, path, tries, server.url)
        if len(self.servers) == 1:
            return error
        urls = ", ".join(s.url for s in self.servers)
        if last.kind == "connect":
            message = (
                f"No model server answers at any of {urls}: start them (toolgym serve prints the command) "
                "or fix --base-url."
            )
        else:
            message = f"Every model server of --base-url failed the request ({urls}); the last: {error}"
        return type(error)(message, status=error.status)

    def _server_error(self, last: _Failed, path: str, tries: int, url: str) -> ModelServerError:
        n = f"{tries} {'try' if tries == 1 else 'tries'}"
        limit = f"{self.timeout_s:g}s" if self.timeout_s is not None else "its timeout"
        if last.kind == "connect":
            return ModelServerUnavailable(
                f"No model server answers at {url}: start it (toolgym serve prints the command) or fix --base-url."
            )
        if last.kind == "hang":
            return ModelServerTimeout(
                f"The model server at {url} did not answer within {limit} ({n}): it hangs "
                "or is overloaded; check its log, lower the concurrency or raise timeout_s."
            )
        if last.kind == "slow":
            return ModelServerSlowStream(
                f"The model server at {url} began answering but did not finish within {limit} "
                f"({n}): the answer stalled; check its log or raise timeout_s."
            )
        if last.kind == "dropped":
            return ModelServerDropped(
                f"The model server at {url} dropped the connection {tries} times ({last.detail}): "
                "check its log, it may have crashed or run out of memory."
            )
        if last.kind == "status":
            return ModelServerHTTPError(
                f"The model server at {url} kept failing ({last.detail}) after {n}: "
                "check its log, or lower the concurrency if it is overloaded.",
                status=last.status,
            )
        return ModelServerBadResponse(
            f"The server at {url} answered {path} with {last.detail} ({n}); check that --base-url "
            "points at an OpenAI-compatible API."
        )


class ChatClient(_ServerClient):
    """`/v1/chat/completions`: the server renders the chat and parses tool calls and reasoning."""

    async def complete(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        *,
        tool_choice: str | Mapping[str, Any] | None = None,
        thinking: bool | None = None,
        **sampling: Any,
    ) -> Completion:
        """One assistant turn. Reasoning goes back to the server as `reasoning_content` on assistant turns.

        `thinking` sets the template switch (`chat_template_kwargs`: DeepSeek's `thinking`, Qwen's
        `enable_thinking`); None leaves the server default.
        """
        history = [{k: v for k, v in m.items() if k != "parse_errors"} for m in normalize_messages(messages)]
        body: dict[str, Any] = {"model": self.model, "messages": history, **self.sampling, **sampling}
        if tools:
            body["tools"] = [openai_tool(t) for t in tools]
            if tool_choice is not None:
                body["tool_choice"] = tool_choice
        if thinking is not None:
            body["chat_template_kwargs"] = {"thinking": thinking, "enable_thinking": thinking}

        def read(data: dict[str, Any]) -> Completion:
            choice = _first_choice(data)
            if not isinstance(choice.get("message"), Mapping):
                raise _BadShape("JSON whose choices[0] has no message object")
            return Completion(
                message=encodings.parse("openai", choice["message"]),
                finish_reason=_finish_reason(choice),
                usage=clean_usage(data.get("usage")),
            )

        return await self._post("/chat/completions", body, read)


class CompletionsClient(_ServerClient):
    """`/v1/completions` with our own encoding: we render the prompt and parse the text ourselves."""

    def __init__(self, base_url: str, model: str, *, encoding: str = "deepseek_v32", **kwargs: Any) -> None:
        self.encoding = encodings.get(encoding)
        if not hasattr(self.encoding, "STOP_STRINGS"):
            raise ValueError(
                f"encoding {encoding!r} has no text form for /v1/completions; use ChatClient for it."
            )
        self.encoding_name = encoding
        super().__init__(base_url, model, **kwargs)

    async def complete(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        *,
        thinking: bool = False,
        **sampling: Any,
    ) -> Completion:
        """One assistant turn from the raw text; cut-off or malformed output shows up in `parse_errors`."""
        prompt = encodings.render(self.encoding_name, messages, tools, thinking)
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": prompt,
            # DSML tags may be special tokens: keep them in the text or the calls vanish.
            "skip_special_tokens": False,
            **self.sampling,
            **sampling,
        }
        stops = getattr(self.encoding, "STOP_STRINGS", ())
        if stops and "stop" not in body:
            body["stop"] = list(stops)

        def read(data: dict[str, Any]) -> Completion:
            choice = _first_choice(data)
            text = choice.get("text", 0)
            if text is not None and not isinstance(text, str):
                raise _BadShape("JSON whose choices[0] has no text string")
            message = encodings.parse(self.encoding_name, text or "", thinking=thinking)
            finish = _finish_reason(choice)
            if finish == "length":
                message["parse_errors"].append("the output hit max_tokens and was cut off")
            return Completion(
                message=message,
                finish_reason=finish,
                usage=clean_usage(data.get("usage")),
                prompt=prompt,
                # What the loop keeps of unreadable output: clean and capped like the parsed fields.
                text=clean_text((text or "")[:MAX_TEXT_CHARS]),
            )

        return await self._post("/completions", body, read)
