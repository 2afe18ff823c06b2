// The official TypeScript SDK client against `codeexec mcp`, as Claude Desktop,
// VS Code or Cursor would drive it. Run by tests/integration/test_mcp_outside_clients.py:
//
//   node sdk_client.mjs FLOW stdio COMMAND ARG...      (the server as a child process)
//   node sdk_client.mjs FLOW http URL [TOKEN]          (a running `codeexec mcp --http`)
//
// FLOW is `seed` (the whole tool flow), `long` (a 90 s execution through 60 s request
// timeouts), `cancel` (calls right after cancels), `ping` (one execution; prints its session) or `own` (state kept apart from
// another client's; CODEEXEC_TEST_TAG). The session names come from
// CODEEXEC_TEST_NAMES (comma-separated: default, named). Each step prints one line; any
// failed check, or a structured result the SDK's output-schema validation rejects, exits 1.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [flow, kind, target, ...rest] = process.argv.slice(2);
const [defaultName, named] = (process.env.CODEEXEC_TEST_NAMES || "dflt,named").split(",");

function check(condition, message) {
  if (!condition) {
    console.error(`FAILED: ${message}`);
    process.exit(1);
  }
}

function text(result) {
  const block = result.content.find((c) => c.type === "text");
  return block ? block.text : "";
}

function transport() {
  if (kind === "stdio") {
    return new StdioClientTransport({ command: target, args: rest, env: process.env, stderr: "inherit" });
  }
  const headers = rest[0] ? { Authorization: `Bearer ${rest[0]}` } : {};
  return new StreamableHTTPClientTransport(new URL(target), { requestInit: { headers } });
}

const client = new Client({ name: "codeexec-ts-test", version: "1.0.0" });
const began = Date.now();
const wire = transport();
await client.connect(wire);
console.log(`initialize: ${Date.now() - began} ms, server ${JSON.stringify(client.getServerVersion())}`);
console.log(`capabilities: ${JSON.stringify(client.getServerCapabilities())}`);
const tools = (await client.listTools()).tools; // also caches the output-schema validators
console.log(`tools: ${tools.map((t) => t.name).join(", ")}`);

async function call(name, args, options = {}) {
  const result = await client.callTool({ name, arguments: args }, undefined, options);
  const summary = text(result).split("\n")[0].slice(0, 120);
  console.log(`${name} ${JSON.stringify(args).slice(0, 80)} -> ${result.isError ? "isError: " : ""}${summary}`);
  return result;
}

async function untilBuilt(args) {
  for (;;) {
    const result = await call("execute_code", args);
    if (!(result.isError && text(result).includes("still building"))) return result;
  }
}

if (flow === "ping") {
  const ran = await untilBuilt({ code: "import os\nos.environ.get('HOSTNAME', '')" });
  check(!ran.isError, text(ran));
  console.log(`session: ${ran.structuredContent.session}`);
} else if (flow === "own") {
  // Run beside another client of the same HTTP server: neither sees the other's state.
  const tag = process.env.CODEEXEC_TEST_TAG;
  const set = await untilBuilt({ code: `import time\nmine = '${tag}'\ntime.sleep(2)` });
  check(!set.isError, text(set));
  const got = await call("execute_code", { code: "mine" });
  check(got.structuredContent.value === `'${tag}'`, text(got));
  const listed = await call("list_sessions", {});
  const names = listed.structuredContent.sessions.map((s) => s.name);
  check(names.length === 1 && names[0] === got.structuredContent.session, JSON.stringify(names));
  console.log(`session: ${names[0]}`);
} else if (flow === "cancel") {
  // Cancel a long execute_code, then call again at once: the code was interrupted,
  // the state survives, and the next call runs (it used to get SessionBusy).
  const set = await untilBuilt({ code: "kept = 7" });
  check(!set.isError, text(set));
  for (let i = 0; i < 10; i++) {
    const abort = new AbortController();
    const long = client.callTool({ name: "execute_code", arguments: { code: "import time\ntime.sleep(60)" } }, undefined, { signal: abort.signal });
    await new Promise((resolve) => setTimeout(resolve, 300));
    abort.abort("enough");
    await long.then(() => check(false, "the cancelled call answered"), () => {});
    const next = await client.callTool({ name: "execute_code", arguments: { code: "kept" } });
    check(!next.isError && next.structuredContent.value === "7", `try ${i}: ${text(next)}`);
  }
  console.log("10 cancels, each followed at once by a call that ran");
} else if (flow === "long") {
  let notices = 0;
  let last = 0;
  const began = Date.now();
  const ran = await call(
    "execute_code",
    {
      code: "import time\nfor i in range(9):\n    print('step', i, flush=True)\n    time.sleep(10)\n'done'",
      timeout: 120,
    },
    {
      timeout: 60_000,
      resetTimeoutOnProgress: true,
      onprogress: (p) => {
        check(p.progress > last, `progress goes up: ${p.progress} after ${last}`);
        last = p.progress;
        notices += 1;
        console.log(`progress ${p.progress}: ${p.message}`);
      },
    },
  );
  check(!ran.isError && ran.structuredContent.value === "'done'", text(ran));
  console.log(`long run: ${((Date.now() - began) / 1000).toFixed(0)} s, ${notices} progress notifications`);
} else {
  const expected = Number(process.env.EXPECTED_TOOLS || 0);
  check(tools.length === expected, `${expected} tools, got ${tools.length}`);
  for (const tool of tools) {
    check(tool.title && tool.annotations, `${tool.name} has a title and annotations`);
  }
  // The seed flow: start with dependencies, execute twice sharing state, stop.
  const started = await call("start_code_executer", { dependencies: ["six"], name: named });
  check(!started.isError && text(started).includes(named), text(started));
  const first = await untilBuilt({ code: "import six\nx = 21" });
  check(first.structuredContent.status === "ok" && first.structuredContent.session === named, text(first));
  const second = await call("execute_code", { code: "print('hi'); x * 2" });
  check(second.structuredContent.value === "42" && second.structuredContent.stdout === "hi\n", text(second));
  check(JSON.parse(second.content.at(-1).text).value === "42", "the last text block is the structured JSON");
  // Named sessions: the default one runs beside it with its own state.
  const other = await untilBuilt({ code: "'x' in globals()", name: defaultName });
  check(other.structuredContent.value === "False", text(other));
  // An error in the user's code is a result; a failed tool is a tool error with its message.
  const raised = await call("execute_code", { code: "1/0", name: named });
  check(!raised.isError && raised.structuredContent.error.ename === "ZeroDivisionError", text(raised));
  const missing = await call("read_file", { path: "no/such/file.txt" });
  check(missing.isError && text(missing).includes("no/such/file.txt"), text(missing));
  const invalid = await call("execute_code", { code: "1", timeout: -1 });
  check(invalid.isError && text(invalid).includes("timeout") && !text(invalid).includes("http"), text(invalid));
  // An image result.
  const png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
  const shown = await call("execute_code", {
    code: `import base64\nclass P:\n    def _repr_png_(self):\n        return base64.b64decode('${png}')\nP()`,
  });
  const images = shown.content.filter((c) => c.type === "image");
  check(images.length === 1 && images[0].mimeType === "image/png" && images[0].data === png, text(shown));
  // Files.
  const wrote = await call("write_file", { path: "notes.txt", content: "héllo" });
  check(!wrote.isError, text(wrote));
  const read = await call("read_file", { path: "notes.txt" });
  check(text(read) === "héllo", text(read));
  const files = await call("list_files", {});
  check(files.structuredContent.files.some((f) => f.path === "./notes.txt"), text(files));
  // Shell commands: output-schema checked by this client.
  const shell = await call("run_command", { command: "echo $((6 * 7)); exit 3" });
  check(shell.structuredContent.exit_code === 3 && shell.structuredContent.stdout === "42\n", text(shell));
  const argv = await call("run_command", { command: ["echo", "$HOME"] });
  check(argv.structuredContent.stdout === "$HOME\n", text(argv));
  // List: both sessions.
  const listed = await call("list_sessions", {});
  const names = listed.structuredContent.sessions.map((s) => s.name);
  check(names.includes(named) && names.includes(defaultName), JSON.stringify(names));
  // A job: started, polled until done (the pattern for runs longer than a call may wait).
  const job = await call("start_job", { code: "import time\ntime.sleep(2)\n'late'", name: named });
  check(job.structuredContent.state === "running", text(job));
  let polled = job;
  while (polled.structuredContent.state === "running") {
    polled = await call("get_job", { job: job.structuredContent.job, wait: 10 });
  }
  check(polled.structuredContent.result.value === "'late'", text(polled));
  const stopped = await call("stop_code_executer", { name: named });
  check(!stopped.isError, text(stopped));
  const gone = await call("execute_code", { code: "x", name: named });
  check(gone.isError && text(gone).includes("start_code_executer"), text(gone));
}
const closing = Date.now();
const pid = wire.pid; // stdio: the server process
if (kind === "http") await wire.terminateSession(); // DELETE: the server removes our sessions
await client.close();
console.log(`closed in ${Date.now() - closing} ms`);
if (pid) {
  const alive = () => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  const deadline = Date.now() + 10_000;
  while (alive() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  check(!alive(), `the server (pid ${pid}) still runs after the client closed`);
  console.log(`server exited ${Date.now() - closing} ms after the client closed`);
}
