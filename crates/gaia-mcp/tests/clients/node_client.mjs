// Drives Gaia's MCP server with the official TypeScript SDK (@modelcontextprotocol/sdk).
//
//     node node_client.mjs stdio GAIA_BIN DB_URL STORY
//     node node_client.mjs http URL TOKEN STORY OPERATOR_TOKEN
//
// Connects, lists the tools and calls every one of them (the server runs with a short
// approval wait, so the approval tools answer `pending` or deny). STORY must exist with a
// ready task. `approval_decide` is refused to the agent (an error result; the request stays
// pending) and then decides as an operator (`gaia mcp --role operator`, or OPERATOR_TOKEN
// over HTTP). Over HTTP every request carries the server's origin in `Origin`, as the MCP
// specification asks. Prints `ok` and exits 0 when every check holds.

import assert from "node:assert/strict";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const TOOLS = [
  "approval_decide", "approval_request", "approval_wait", "backlog_followup", "backlog_ready", "claim_acquire",
  "claim_refresh", "claim_release", "event_append", "events_recent", "permission_prompt",
  "status",
];
const READ_ONLY = new Set(["status", "events_recent", "approval_wait"]);

function transport([mode, a, b, , operatorToken], operator = false) {
  if (mode === "stdio") {
    const who = operator ? ["--agent", "ts-operator", "--role", "operator"] : ["--agent", "ts-agent"];
    return new StdioClientTransport({
      command: a,
      args: ["--db", b, "mcp", ...who, "--approval-wait", "2s", "--progress-every", "1s"],
      stderr: "inherit",
    });
  }
  const url = new URL(a);
  const token = operator ? operatorToken : b;
  return new StreamableHTTPClientTransport(url, {
    requestInit: { headers: { Authorization: `Bearer ${token}`, Origin: url.origin } },
  });
}

function data(result) {
  assert.equal(result.isError, false, result.content?.[0]?.text);
  return JSON.parse(result.content[0].text);
}

const STORY = process.argv[5];
const client = new Client({ name: "gaia-test-ts", version: "1.0.0" });
await client.connect(transport(process.argv.slice(2)));
assert.equal(client.getServerVersion().name, "gaia");
const { tools } = await client.listTools();
assert.deepEqual(tools.map((t) => t.name).sort(), TOOLS);
for (const t of tools) {
  assert.equal(Boolean(t.annotations?.readOnlyHint), READ_ONLY.has(t.name), t.name);
}
const call = (name, args, opts) => client.callTool({ name, arguments: args }, undefined, opts);

assert.ok(data(await call("status", {})).ready_tasks >= 1);
assert.ok(data(await call("backlog_ready", { story: STORY })).tasks.length >= 1);
assert.equal(data(await call("backlog_ready", { story: STORY, take: true })).taken, true);
const f = data(await call("backlog_followup", {
  story: STORY, path: `doc/${STORY}.ts.1.extra.md`, task: "1", title: "Follow up", body: "From TS.",
}));
assert.ok(["added", "unchanged"].includes(f.outcome));
assert.equal(data(await call("claim_acquire", { story: "ts-story", ttl: "5m" })).outcome, "acquired");
assert.equal(data(await call("claim_refresh", { story: "ts-story" })).outcome, "refreshed");
assert.equal(data(await call("claim_release", { story: "ts-story" })).outcome, "released");
const ev = data(await call("event_append", { type: "chat.message", subject: "ts", data: { text: "hi" } }));
const recent = data(await call("events_recent", { since: ev.event.seq - 1 }));
assert.equal(recent.events[0].seq, ev.event.seq);

let progress = 0;
const req = data(await call(
  "approval_request",
  { command: "make deploy", reason: "from node" },
  { onprogress: () => { progress += 1; }, timeout: 60_000, resetTimeoutOnProgress: true },
));
assert.equal(req.status, "pending");
assert.ok(progress > 0, "no progress while waiting");
assert.equal(data(await call("approval_wait", { id: req.id, timeout_s: 0 })).status, "pending");
const refused = await call("approval_decide", { id: req.id, decision: "approve" });
assert.equal(refused.isError, true);
assert.match(refused.content[0].text, /operator/);
assert.equal(data(await call("approval_wait", { id: req.id, timeout_s: 0 })).status, "pending");
{
  const operator = new Client({ name: "gaia-test-ts-operator", version: "1.0.0" });
  await operator.connect(transport(process.argv.slice(2), true));
  const decide = (args) => operator.callTool({ name: "approval_decide", arguments: args });
  assert.equal(data(await decide({ id: req.id, decision: "approve", reason: "ok" })).status, "approved");
  const again = await decide({ id: req.id, decision: "deny" });
  assert.equal(again.isError, true);
  assert.match(again.content[0].text, /refused/);
  await operator.close();
}
const decided = data(await call("approval_wait", { id: req.id, timeout_s: 0 }));
assert.equal(decided.status, "approved");
assert.equal(decided.decided_via, "mcp");
const prompt = await call("permission_prompt", {
  tool_name: "Bash", input: { command: "rm -rf /" }, tool_use_id: "t1",
});
assert.equal(JSON.parse(prompt.content[0].text).behavior, "deny");
const bad = await call("claim_acquire", { story: "x", ttl: "forever" });
assert.equal(bad.isError, true);
await client.close();
console.log("ok");
