/**
 * `switchyard top` and its pieces (snapshot fetch, live view, table) against real loopback HTTP servers.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { run } from "../../src/cli/top.js";
import { ConfigError } from "../../src/common/errors.js";
import type { DebugSnapshot } from "../../src/observability/debug.js";
import { fetchSnapshot, runLiveView, SnapshotError, snapshotUrl } from "../../src/observability/live.js";
import { renderEndpointTable } from "../../src/observability/table.js";

const SNAPSHOT: DebugSnapshot = {
  version: 1,
  time: "2026-01-01T00:00:00.000Z",
  pool: { name: "pool-a", namespace: "prod", selector: { app: "vllm" }, targetPorts: [8000] },
  synced: true,
  saturation: 0.25,
  saturated: false,
  endpoints: [
    {
      name: "pod-1-rank-0",
      key: "10.0.0.1:8000",
      pod: "pod-1",
      engine: "vllm",
      fresh: true,
      ageMs: 40,
      metrics: {
        queue: 3,
        running: 7,
        kvCacheUsage: 0.42,
        activeAdapters: ["sql-lora"],
        waitingAdapters: ["tweet-lora"],
        maxLoras: 2,
        blockSize: 16,
        numBlocks: 1024,
      },
      inflight: 5,
      inflightTokens: 900,
      routed: 1234,
      lastScrapeError: null,
    },
    {
      name: "pod-2-rank-0",
      key: "10.0.0.2:8000",
      pod: "pod-2",
      engine: "vllm",
      fresh: false,
      ageMs: 12_500,
      metrics: null,
      inflight: 0,
      inflightTokens: 0,
      routed: 0,
      lastScrapeError: "GET http://10.0.0.2:8000/metrics: cannot connect (ECONNREFUSED)",
    },
  ],
  decisions: [
    {
      time: Date.parse("2026-01-01T00:00:01.500Z"),
      requestId: "req-1",
      model: "chat",
      targetModel: "base",
      criticality: "Standard",
      priority: 0,
      outcome: "routed",
      endpoints: ["10.0.0.1:8000"],
      schedulingMicros: 35,
    },
    {
      time: Date.parse("2026-01-01T00:00:02.000Z"),
      requestId: "req-2",
      model: "batch",
      targetModel: "batch",
      criticality: "Sheddable",
      priority: -1,
      outcome: "rejected",
      error: { code: "SY_SHED", status: 429, message: "system saturated, sheddable request dropped" },
    },
  ],
};

class Sink {
  text = "";
  constructor(readonly isTTY = false) {}
  write(s: string): boolean {
    this.text += s;
    return true;
  }
}

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }
});

/** A debug endpoint whose answers come from `answer(n)` for the n-th request (0-based). */
async function serve(answer: (n: number) => { status: number; body: string }): Promise<string> {
  let n = 0;
  const server = createServer((req, res) => {
    const a = req.url === "/debug/endpoints" ? answer(n++) : { status: 404, body: "not found" };
    res.writeHead(a.status, { "content-type": "application/json" }).end(a.body);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A port nothing listens on: bound once, then closed. */
async function deadUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r()));
  return `http://127.0.0.1:${port}`;
}

const ok = () => ({ status: 200, body: JSON.stringify(SNAPSHOT) });

describe("renderEndpointTable", () => {
  it("shows every column the operator needs, marks stale endpoints and lists scrape errors", () => {
    const text = renderEndpointTable(SNAPSHOT);
    const lines = text.split("\n");
    expect(lines[0]).toContain("pool prod/pool-a");
    expect(lines[0]).toContain("endpoints 2 (1 fresh)");
    expect(lines[0]).toContain("saturation 0.25");
    expect(lines[1]!.split(/\s+/)).toEqual([
      "ENDPOINT",
      "POD",
      "QUEUE",
      "RUNNING",
      "KV",
      "ADAPTERS",
      "INFLIGHT",
      "ROUTED",
      "AGE",
    ]);
    expect(lines[2]!.split(/\s+/)).toEqual([
      "10.0.0.1:8000",
      "pod-1",
      "3",
      "7",
      "42%",
      "sql-lora,tweet-lora(waiting)",
      "5",
      "1234",
      "40ms",
    ]);
    expect(lines[3]!.split(/\s+/)).toEqual(["10.0.0.2:8000", "pod-2", "?", "?", "?", "-", "0", "0", "12.5s", "STALE"]);
    expect(text).toContain("! 10.0.0.2:8000: GET http://10.0.0.2:8000/metrics: cannot connect (ECONNREFUSED)");
    expect(text).not.toContain("\u001b[");
    expect(text).not.toContain("recent decisions");
  });

  it("lists recent decisions on request and colours only when asked", () => {
    const text = renderEndpointTable({ ...SNAPSHOT, saturated: true }, { color: true, decisions: 5 });
    expect(text).toContain("\u001b[31msaturation 0.25 SATURATED\u001b[0m");
    expect(text).toMatch(/00:00:01\.500\s+req-1\s+chat->base\s+Standard\s+-> 10\.0\.0\.1:8000 \(35us\)/);
    expect(text).toMatch(/req-2\s+batch\s+Sheddable\s+x 429 SY_SHED: system saturated/);
    expect(renderEndpointTable(SNAPSHOT, { decisions: 1 })).not.toContain("req-2");
  });

  it("says so when the pool has no endpoints yet", () => {
    expect(renderEndpointTable({ ...SNAPSHOT, pool: null, endpoints: [], synced: false })).toContain(
      "(no endpoints yet)",
    );
  });
});

describe("snapshot fetching", () => {
  it("normalises the URL forms an operator types", () => {
    expect(snapshotUrl("127.0.0.1:9090")).toBe("http://127.0.0.1:9090/debug/endpoints");
    expect(snapshotUrl("http://epp:9090/")).toBe("http://epp:9090/debug/endpoints");
    expect(snapshotUrl("https://epp/debug/endpoints?x=1")).toBe("https://epp/debug/endpoints");
    expect(() => snapshotUrl("ftp://epp")).toThrow(SnapshotError);
    expect(() => snapshotUrl("")).toThrow(/empty URL/);
  });

  it("explains each failure: unreachable, wrong port, not a snapshot", async () => {
    await expect(fetchSnapshot(`${await deadUrl()}/debug/endpoints`)).rejects.toThrow(/cannot reach .*ECONNREFUSED/);
    const wrong = await serve(() => ({ status: 200, body: "<html>" }));
    await expect(fetchSnapshot(`${wrong}/debug/endpoints`)).rejects.toThrow(/not JSON/);
    const other = await serve(() => ({ status: 200, body: JSON.stringify({ version: 9, endpoints: [] }) }));
    await expect(fetchSnapshot(`${other}/debug/endpoints`)).rejects.toThrow(/version 9, expected 1/);
    await expect(fetchSnapshot(`${other}/nope`)).rejects.toThrow(/HTTP 404/);
  });
});

describe("live view", () => {
  it("keeps retrying an unreachable EPP, shows the error, then the table once it answers", async () => {
    const url = await serve((n) => (n < 2 ? { status: 503, body: "starting" } : ok()));
    const out = new Sink(false);
    const result = await runLiveView({ url, out, intervalMs: 5, maxPolls: 3 });
    expect(result).toEqual({ polls: 3, failures: 2 });
    const parts = out.text.split("\n\n").filter((p) => p.trim() !== "");
    expect(parts[0]).toMatch(/HTTP 503 .*retrying every 5 ms/);
    expect(parts[2]).toContain("pool prod/pool-a");
    // Not a TTY: plain appended tables, no cursor control.
    expect(out.text).not.toContain("\u001b[");
  });

  it("redraws in place on a TTY and restores the cursor", async () => {
    const url = await serve(ok);
    const out = new Sink(true);
    await runLiveView({ url, out, intervalMs: 5, maxPolls: 2, color: false });
    expect(out.text.startsWith("\u001b[?25l")).toBe(true);
    expect(out.text.endsWith("\u001b[?25h")).toBe(true);
    expect(out.text.split("\u001b[H\u001b[0J")).toHaveLength(3);
  });
});

describe("switchyard top", () => {
  it("--once prints one table and exits 0", async () => {
    const url = await serve(ok);
    const out = new Sink();
    const err = new Sink();
    expect(await run(["--url", url, "--once", "--color=never"], { out, err })).toBe(0);
    expect(out.text).toContain("10.0.0.1:8000");
    expect(out.text).toContain("recent decisions");
    expect(err.text).toBe("");
  });

  it("--once exits 1 with a clear message when the EPP is unreachable", async () => {
    const url = await deadUrl();
    const out = new Sink();
    const err = new Sink();
    expect(await run(["--url", url, "--once"], { out, err })).toBe(1);
    expect(err.text).toMatch(
      /^switchyard top: cannot reach http:\/\/127\.0\.0\.1:\d+\/debug\/endpoints: .*ECONNREFUSED/,
    );
    expect(out.text).toBe("");
  });

  it("runs until stopped (Ctrl-C) and then returns 0", async () => {
    const url = await serve(ok);
    const out = new Sink();
    const controller = new AbortController();
    const done = run(["--url", url, "--interval", "10ms"], { out, err: new Sink(), signal: controller.signal });
    const deadline = Date.now() + 10_000;
    while ((out.text.match(/pool prod\/pool-a/g) ?? []).length < 2) {
      if (Date.now() > deadline) throw new Error("top drew fewer than 2 tables in 10 s");
      await new Promise((r) => setTimeout(r, 5));
    }
    controller.abort();
    expect(await done).toBe(0);
  });

  it("sends a bearer token from --token-file or SWITCHYARD_TOKEN to an EPP that checks scrapers", async () => {
    // Answers like --metrics-endpoint-auth: 401 without the right bearer token.
    const seen: (string | undefined)[] = [];
    const server = createServer((req, res) => {
      seen.push(req.headers.authorization);
      const a = req.headers.authorization === "Bearer s3cret" ? ok() : { status: 401, body: "Unauthorized" };
      res.writeHead(a.status, { "content-type": "application/json" }).end(a.body);
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const { mkdtemp, writeFile, rm } = await import("node:fs/promises");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const dir = await mkdtemp(join(tmpdir(), "sy-top-"));
    const saved = process.env.SWITCHYARD_TOKEN;
    try {
      delete process.env.SWITCHYARD_TOKEN;
      const without = { out: new Sink(), err: new Sink() };
      expect(await run(["--url", url, "--once"], without)).toBe(1);
      expect(without.err.text).toContain("HTTP 401");
      expect(without.err.text).toContain("--token-file");

      const file = join(dir, "token");
      await writeFile(file, "s3cret\n");
      const withFile = { out: new Sink(), err: new Sink() };
      expect(await run(["--url", url, "--once", "--token-file", file], withFile)).toBe(0);
      expect(withFile.out.text).toContain("10.0.0.1:8000");

      process.env.SWITCHYARD_TOKEN = "s3cret";
      const withEnv = { out: new Sink(), err: new Sink() };
      expect(await run(["--url", url, "--once"], withEnv)).toBe(0);
      expect(seen).toEqual([undefined, "Bearer s3cret", "Bearer s3cret"]);

      // A missing or empty token file is refused up front, naming the flag.
      await expect(run(["--url", url, "--once", "--token-file", join(dir, "nope")], withEnv)).rejects.toThrow(
        /--token-file/,
      );
      await writeFile(file, "  \n");
      await expect(run(["--url", url, "--once", "--token-file", file], withEnv)).rejects.toThrow(ConfigError);
    } finally {
      if (saved === undefined) delete process.env.SWITCHYARD_TOKEN;
      else process.env.SWITCHYARD_TOKEN = saved;
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("rejects bad flags with the flag named", async () => {
    const io = { out: new Sink(), err: new Sink() };
    await expect(run(["--url", "ftp://x", "--once"], io)).rejects.toThrow(ConfigError);
    await expect(run(["--url", "ftp://x", "--once"], io)).rejects.toThrow(/--url/);
    await expect(run(["--interval", "0"], io)).rejects.toThrow(/--interval/);
    await expect(run(["--color", "sometimes"], io)).rejects.toThrow(/--color/);
    const help = new Sink();
    expect(await run(["--help"], { out: help, err: new Sink() })).toBe(0);
    expect(help.text).toContain("--once");
    expect(help.text).toContain("(default 1s)");
  });
});
