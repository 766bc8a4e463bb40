#!/usr/bin/env node
// One MCP session with the official TypeScript SDK client: list the tools, call one,
// print what happened as one JSON line. Driven by tests/clients (the compatibility matrix).
//
//   node ts_client.mjs --sdk-dir DIR --transport http|sse|stdio --url URL --tool NAME --arguments JSON
//   (stdio: --url is ignored; the command to spawn follows `--`, e.g. mcp-remote)
//
// The SDK is resolved from DIR (the lab's pinned npm install, mcp_tailnet_lab.node_clients),
// never from a registry at run time.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

const dash = process.argv.indexOf("--");
const command = dash === -1 ? [] : process.argv.slice(dash + 1);
const { values: opts } = parseArgs({
  args: process.argv.slice(2, dash === -1 ? undefined : dash),
  options: {
    "sdk-dir": { type: "string" },
    transport: { type: "string" },
    url: { type: "string" },
    tool: { type: "string" },
    arguments: { type: "string", default: "{}" },
    timeout: { type: "string", default: "60" },
  },
});

const require = createRequire(join(opts["sdk-dir"], "package.json"));
const load = async (spec) => import(pathToFileURL(require.resolve(spec)).href);
const { Client } = await load("@modelcontextprotocol/sdk/client/index.js");
const sdkVersion = JSON.parse(
  readFileSync(join(opts["sdk-dir"], "node_modules", "@modelcontextprotocol", "sdk", "package.json"), "utf8"),
).version;

/** Delegates to the real transport and remembers the protocol version the server answered. */
class Recording {
  constructor(inner) {
    this.inner = inner;
    this.negotiated = null;
  }
  get sessionId() { return this.inner.sessionId; }
  async start() {
    this.inner.onmessage = (m, extra) => {
      if (m && m.result && typeof m.result.protocolVersion === "string") this.negotiated = m.result.protocolVersion;
      this.onmessage?.(m, extra);
    };
    this.inner.onerror = (e) => this.onerror?.(e);
    this.inner.onclose = () => this.onclose?.();
    return this.inner.start();
  }
  send(message, options) { return this.inner.send(message, options); }
  close() { return this.inner.close(); }
  setProtocolVersion(v) { this.inner.setProtocolVersion?.(v); }
}

async function transportFor(kind) {
  if (kind === "http") {
    const { StreamableHTTPClientTransport } = await load("@modelcontextprotocol/sdk/client/streamableHttp.js");
    return new StreamableHTTPClientTransport(new URL(opts.url));
  }
  if (kind === "sse") {
    const { SSEClientTransport } = await load("@modelcontextprotocol/sdk/client/sse.js");
    return new SSEClientTransport(new URL(opts.url));
  }
  if (kind === "stdio") {
    const { StdioClientTransport } = await load("@modelcontextprotocol/sdk/client/stdio.js");
    return new StdioClientTransport({ command: command[0], args: command.slice(1), env: process.env, stderr: "inherit" });
  }
  throw new Error(`--transport must be http, sse or stdio, not ${kind}`);
}

const out = { client: `@modelcontextprotocol/sdk ${sdkVersion}`, transport: opts.transport };
const timer = setTimeout(() => {
  console.log(JSON.stringify({ ...out, error: `timed out after ${opts.timeout} s` }));
  process.exit(3);
}, Number(opts.timeout) * 1000);
const transport = new Recording(await transportFor(opts.transport));
const client = new Client({ name: "mcp-tailnet-matrix", version: "1.0.0" });
let code = 0;
try {
  await client.connect(transport);
  out.protocolVersion = transport.negotiated;
  out.serverInfo = client.getServerVersion() ?? null;
  out.tools = (await client.listTools()).tools.map((t) => t.name).sort();
  const result = await client.callTool({ name: opts.tool, arguments: JSON.parse(opts.arguments) });
  out.call = { isError: result.isError ?? false, content: result.content, structuredContent: result.structuredContent ?? null };
} catch (err) {
  out.protocolVersion = transport.negotiated;
  out.error = String(err && err.message ? err.message : err);
  code = 1;
}
try { await client.close(); } catch { /* the report above is what matters */ }
clearTimeout(timer);
console.log(JSON.stringify(out));
process.exit(code);
