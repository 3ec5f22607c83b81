"""Drives Gaia's MCP server with the official Python SDK (`mcp` on PyPI).

    python_client.py stdio GAIA_BIN DB_URL STORY
    python_client.py http URL TOKEN STORY OPERATOR_TOKEN

Connects, lists the tools and calls every one of them (the server runs with a short approval
wait, so the approval tools answer `pending` or deny). STORY must exist with a ready task.
`approval_decide` is refused to the agent (an error result; the request stays pending) and
then decides as an operator (`gaia mcp --role operator`, or OPERATOR_TOKEN over HTTP). Over
HTTP every request carries the server's origin in `Origin`, as the MCP specification asks.
Prints `ok` and exits 0 when every check holds.
"""

import json
import sys
from contextlib import asynccontextmanager

import anyio
from mcp import ClientSession

TOOLS = {
    "status", "backlog_ready", "backlog_followup", "claim_acquire", "claim_refresh",
    "claim_release", "event_append", "events_recent", "approval_request", "approval_wait",
    "approval_decide", "permission_prompt",
}
READ_ONLY = {"status", "events_recent", "approval_wait"}


@asynccontextmanager
async def connect(argv, operator=False):
    if argv[0] == "stdio":
        from mcp.client.stdio import StdioServerParameters, stdio_client

        who = ["--agent", "py-operator", "--role", "operator"] if operator else ["--agent", "py-agent"]
        params = StdioServerParameters(
            command=argv[1],
            args=["--db", argv[2], "mcp", *who, "--approval-wait", "2s", "--progress-every", "1s"],
        )
        async with stdio_client(params) as streams:
            yield streams
    else:
        from urllib.parse import urlsplit

        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        url = urlsplit(argv[1])
        token = argv[4] if operator else argv[2]
        headers = {"Authorization": f"Bearer {token}", "Origin": f"{url.scheme}://{url.netloc}"}
        async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
            async with streamable_http_client(argv[1], http_client=http) as streams:
                yield streams


async def decide_as_operator(argv, request_id):
    """Approves the request as an operator; a second decision is refused."""
    async with connect(argv, operator=True) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            decided = data(await session.call_tool(
                "approval_decide", {"id": request_id, "decision": "approve", "reason": "ok"}))
            assert decided["status"] == "approved", decided
            again = await session.call_tool("approval_decide", {"id": request_id, "decision": "deny"})
            assert again.is_error and "refused" in again.content[0].text, again


def data(result):
    assert not result.is_error, result.content[0].text
    return json.loads(result.content[0].text)


async def main(argv):
    story = argv[3]
    async with connect(argv) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            assert init.server_info.name == "gaia", init
            tools = (await session.list_tools()).tools
            names = {t.name for t in tools}
            assert names == TOOLS, names
            for t in tools:
                assert bool(t.annotations and t.annotations.read_only_hint) == (t.name in READ_ONLY), t

            status = data(await session.call_tool("status", {}))
            assert status["ready_tasks"] >= 1, status
            ready = data(await session.call_tool("backlog_ready", {"story": story}))
            assert ready["tasks"], ready
            took = data(await session.call_tool("backlog_ready", {"story": story, "take": True}))
            assert took["taken"] is True, took
            f = data(await session.call_tool("backlog_followup", {
                "story": story, "path": f"doc/{story}.py.1.extra.md", "task": "1",
                "title": "Follow up", "body": "From Python."}))
            assert f["outcome"] in ("added", "unchanged"), f
            for tool, args, outcome in [
                ("claim_acquire", {"story": "py-story", "ttl": "5m"}, "acquired"),
                ("claim_refresh", {"story": "py-story"}, "refreshed"),
                ("claim_release", {"story": "py-story"}, "released"),
            ]:
                r = data(await session.call_tool(tool, args))
                assert r["outcome"] == outcome, (tool, r)
            ev = data(await session.call_tool("event_append", {
                "type": "chat.message", "subject": "py", "data": {"text": "hi"}}))
            recent = data(await session.call_tool("events_recent", {"since": ev["event"]["seq"] - 1}))
            assert recent["events"][0]["seq"] == ev["event"]["seq"], recent

            progress = []

            async def on_progress(p, total, message):
                progress.append(p)

            req = data(await session.call_tool(
                "approval_request", {"command": "make deploy", "reason": "from python"},
                progress_callback=on_progress))
            assert req["status"] == "pending", req
            assert progress, "no progress while waiting"
            waited = data(await session.call_tool("approval_wait", {"id": req["id"], "timeout_s": 0}))
            assert waited["status"] == "pending", waited
            refused = await session.call_tool("approval_decide", {"id": req["id"], "decision": "approve"})
            assert refused.is_error and "operator" in refused.content[0].text, refused
            waited = data(await session.call_tool("approval_wait", {"id": req["id"], "timeout_s": 0}))
            assert waited["status"] == "pending", ("the refusal changed the request", waited)
            await decide_as_operator(argv, req["id"])
            waited = data(await session.call_tool("approval_wait", {"id": req["id"], "timeout_s": 0}))
            assert waited["status"] == "approved", waited
            assert waited["decided_via"] == "mcp", waited
            prompt = await session.call_tool("permission_prompt", {
                "tool_name": "Bash", "input": {"command": "rm -rf /"}, "tool_use_id": "t1"})
            answer = json.loads(prompt.content[0].text)
            assert answer["behavior"] == "deny", answer

            bad = await session.call_tool("claim_acquire", {"story": "x", "ttl": "forever"})
            assert bad.is_error, bad
    print("ok")


if __name__ == "__main__":
    anyio.run(main, sys.argv[1:])
