"""A long approval through the Python SDK by a client that handles no progress: its calls time
out after 60 s, the server answers `pending` when its wait (50 s by default) ends, and the
client then receives the decision through `approval_wait`.

    python_pending.py GAIA_BIN DB_URL

Whoever runs this decides the request meanwhile. Prints the first answer's status, the final
one and how many `approval_wait` calls it took, as JSON.
"""

import json
import sys

import anyio
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

TIMEOUT_S = 60.0


async def main(gaia, db):
    params = StdioServerParameters(command=gaia, args=["--db", db, "mcp", "--agent", "py-agent"])
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            first = await session.call_tool(
                "approval_request", {"command": "make release", "reason": "long decision"},
                read_timeout_seconds=TIMEOUT_S)
            assert not first.is_error, first.content[0].text
            first = json.loads(first.content[0].text)
            final, waits = first, 0
            while final["status"] == "pending":
                waits += 1
                r = await session.call_tool("approval_wait", {"id": first["id"]},
                                            read_timeout_seconds=TIMEOUT_S)
                assert not r.is_error, r.content[0].text
                final = json.loads(r.content[0].text)
    print(json.dumps({"first": first["status"], "status": final["status"], "waits": waits}))


if __name__ == "__main__":
    anyio.run(main, *sys.argv[1:3])
