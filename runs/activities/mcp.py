"""The effect behind ``ctx.activities.call_mcp``: one MCP ``tools/call`` on a configured server.

Each call opens its own connection (a fresh stdio subprocess, or a streamable-HTTP
session) and closes it afterwards. That costs a process start per call, but the
activity runs on a worker thread with no event loop of its own, is recorded once
and replayed from the record afterwards, so a pooled connection would buy little
and would tie a server's lifetime to whichever thread happened to open it.

``settings.CMO_MCP_SERVERS`` maps a name to either
``{"command": ..., "args": [...], "env": {...}, "cwd": ...}`` (stdio; the child gets
only the SDK's safe environment plus ``env``) or ``{"url": ..., "headers": {...}}``
(streamable HTTP). ``"timeout"`` (seconds, default 30) bounds the whole call:
start, handshake and tool call.
"""

from __future__ import annotations

import tempfile
from contextlib import AsyncExitStack
from typing import IO, Any, TextIO, cast

import anyio
import httpx2
from django.conf import settings
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult

from runs.engine.errors import ActivityError
from runs.engine.plugins import ActivityKind, Call

DEFAULT_TIMEOUT = 30.0
KIND = "call_mcp"


def call_tool(server: str, tool: str, arguments: dict[str, Any]) -> Any:
    """Call ``tool`` on ``server``; returns {content, structured, is_error} or raises ActivityError."""
    servers: dict[str, Any] = settings.CMO_MCP_SERVERS
    config = servers.get(server)
    if not isinstance(config, dict):
        configured = ", ".join(sorted(servers)) or "(none)"
        raise ActivityError(KIND, f"unknown MCP server {server!r}; configured: {configured}")
    if "command" not in config and "url" not in config:
        raise ActivityError(KIND, f"MCP server {server!r} needs a 'command' (stdio) or a 'url' (streamable HTTP)")
    timeout = float(config.get("timeout", DEFAULT_TIMEOUT))
    with tempfile.TemporaryFile("w+") as errlog:
        try:
            result = anyio.run(_call, config, tool, arguments, timeout, cast(TextIO, errlog))
        except TimeoutError:
            raise ActivityError(KIND, f"MCP server {server!r}: {tool!r} did not finish within {timeout:g} s") from None
        except Exception as exc:  # transport, protocol and spawn failures all become one clear error
            raise ActivityError(
                KIND, f"MCP server {server!r}: {tool!r} failed: {_describe(exc)}{_tail(errlog)}"
            ) from exc
    if result.is_error:
        text = " ".join(getattr(block, "text", "") for block in result.content).strip()
        raise ActivityError(KIND, f"tool {tool!r} on MCP server {server!r} returned an error: {text}")
    return {
        "content": [block.model_dump(mode="json", by_alias=True, exclude_none=True) for block in result.content],
        "structured": result.structured_content,
        "is_error": False,
    }


async def _call(
    config: dict[str, Any], tool: str, arguments: dict[str, Any], timeout: float, errlog: TextIO
) -> CallToolResult:
    with anyio.fail_after(timeout):
        async with AsyncExitStack() as stack:
            if "url" in config:
                http = await stack.enter_async_context(
                    httpx2.AsyncClient(headers=config.get("headers"), timeout=timeout)
                )
                transport = streamable_http_client(config["url"], http_client=http)
            else:
                params = StdioServerParameters(
                    command=config["command"], args=config.get("args", []), env=config.get("env"), cwd=config.get("cwd")
                )
                transport = stdio_client(params, errlog=errlog)
            client = await stack.enter_async_context(Client(transport, cache=None))
            return await client.call_tool(tool, arguments)


def _describe(exc: BaseException) -> str:
    """The innermost real error, unwrapping the exception groups anyio task groups raise."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"


def _tail(errlog: IO[str], limit: int = 500) -> str:
    """The end of the server's stderr (stdio only), which usually says why it died."""
    errlog.seek(0)
    text = errlog.read().strip()
    return f"; server stderr: ...{text[-limit:]}" if text else ""


def _build(ctx: Any, seq: int, server: str, tool: str, arguments: dict[str, Any] | None = None) -> Call:
    """Call ``tool`` on the configured MCP server ``server`` (settings.CMO_MCP_SERVERS)."""
    request = {"server": server, "tool": tool, "arguments": arguments or {}}
    return Call(request=request, effect=lambda: call_tool(server, tool, arguments or {}))


KINDS = [ActivityKind(name=KIND, method=KIND, build=_build)]
