// A long approval through the TypeScript SDK: the call's timeout is shorter than the time a
// person takes to decide, but it resets on each progress notification, so the client still
// receives the decision.
//
//     node node_progress.mjs GAIA_BIN DB_URL TIMEOUT_MS [WAIT PROGRESS_EVERY]
//
// The server waits WAIT (default 8s) and reports progress every PROGRESS_EVERY (default 1s);
// whoever runs this decides the request meanwhile. Prints the request's final status and how
// many progress notifications arrived.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const [gaia, db, timeout, wait = "8s", every = "1s"] = process.argv.slice(2);
const client = new Client({ name: "gaia-test-progress", version: "1.0.0" });
await client.connect(new StdioClientTransport({
  command: gaia,
  args: ["--db", db, "mcp", "--agent", "ts-agent", "--approval-wait", wait, "--progress-every", every],
  stderr: "inherit",
}));
let progress = 0;
const result = await client.callTool(
  { name: "approval_request", arguments: { command: "make release", reason: "long decision" } },
  undefined,
  { timeout: Number(timeout), resetTimeoutOnProgress: true, onprogress: () => { progress += 1; } },
);
const body = JSON.parse(result.content[0].text);
await client.close();
console.log(JSON.stringify({ status: body.status, progress }));
