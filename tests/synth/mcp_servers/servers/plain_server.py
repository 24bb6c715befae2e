"""A minimal MCP server in plain Python (no SDK, stdlib only), for the client's failure paths: a counter, a tool
that sleeps, one that makes the server exit, one that answers with an error, one with non-text content.

    python3 plain_server.py
"""

import json
import os
import sys
import time

TOOLS = [
    {
        "name": "bump",
        "description": "Add one to the counter.",
        "inputSchema": {"type": "object", "properties": {}},
    },
    {
        "name": "count",
        "description": "The counter.",
        "inputSchema": {"type": "object", "properties": {}},
        "annotations": {"readOnlyHint": True},
    },
    {
        "name": "nap",
        "description": "Sleep.",
        "inputSchema": {
            "type": "object",
            "properties": {"seconds": {"type": "number"}},
            "required": ["seconds"],
        },
    },
    {"name": "die", "description": "Exit the server.", "inputSchema": {"type": "object", "properties": {}}},
    {"name": "fail", "description": "A tool error.", "inputSchema": {"type": "object", "properties": {}}},
    {"name": "get-picture", "description": "An image.", "inputSchema": {"type": "object", "properties": {}}},
]


def main() -> None:
    counter = 0
    for line in sys.stdin:
        msg = json.loads(line)
        if "id" not in msg:
            continue  # a notification
        method, params = msg.get("method"), msg.get("params") or {}
        result, error = None, None
        if method == "initialize":
            result = {
                "protocolVersion": params.get("protocolVersion", "2025-06-18"),
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "plain", "version": "0.1"},
                "instructions": "A counter and some ways to fail.",
            }
        elif method == "tools/list":
            result = {"tools": TOOLS}
        elif method == "tools/call":
            name = params.get("name")
            if name == "bump":
                counter += 1
                result = {"content": [{"type": "text", "text": str(counter)}]}
            elif name == "count":
                result = {"content": [], "structuredContent": {"count": counter}}
            elif name == "nap":
                time.sleep(float(params["arguments"]["seconds"]))
                result = {"content": [{"type": "text", "text": "rested"}]}
            elif name == "die":
                sys.stderr.write("dying as asked\n")
                os._exit(3)
            elif name == "fail":
                result = {"content": [{"type": "text", "text": "that did not work"}], "isError": True}
            elif name == "get-picture":
                result = {"content": [{"type": "image", "data": "aGVsbG8=", "mimeType": "image/png"}]}
            else:
                error = {"code": -32602, "message": f"Unknown tool: {name}"}
        else:
            error = {"code": -32601, "message": f"no method {method}"}
        reply = {"jsonrpc": "2.0", "id": msg["id"]}
        reply.update({"error": error} if error else {"result": result})
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
