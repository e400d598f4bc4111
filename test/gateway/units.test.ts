import { describe, expect, it, vi } from "vitest";
import { run } from "../../src/cli/gateway.js";
import { BodyFeed } from "../../src/gateway/body-feed.js";
import {
  InFlight,
  LeastRequestBalancer,
  normalizeEndpoint,
  parseEndpointList,
  RoundRobinBalancer,
} from "../../src/gateway/endpoints.js";
import { applyHeaderMutation, fromHeaderMap, type HeaderList, toHeaderMap } from "../../src/gateway/headers.js";

const hv = (key: string, value: string, extra: Record<string, unknown> = {}) => ({
  header: { key, raw_value: Buffer.from(value) },
  ...extra,
});

describe("endpoints", () => {
  it("normalises ip:port, [v6]:port and host:port, rejects the rest", () => {
    expect(normalizeEndpoint(" 10.0.0.7:8000 ")).toBe("10.0.0.7:8000");
    expect(normalizeEndpoint("[FD00::7]:8000")).toBe("[fd00::7]:8000");
    expect(normalizeEndpoint("pod-a.svc:80")).toBe("pod-a.svc:80");
    for (const bad of ["10.0.0.7", "fd00::7:80", "10.0.0.7:0", "10.0.0.7:70000", ":80", "a b:1", "[fd00::7]8000"])
      expect(normalizeEndpoint(bad)).toBeUndefined();
  });

  it("parses the destination comma list, skipping invalid entries and duplicates", () => {
    expect(parseEndpointList("10.0.0.1:8000,bogus,10.0.0.2:8000,10.0.0.1:8000")).toEqual([
      "10.0.0.1:8000",
      "10.0.0.2:8000",
    ]);
    expect(parseEndpointList("")).toEqual([]);
    expect(parseEndpointList(undefined)).toEqual([]);
  });

  it("round-robin rotates the start and keeps the rest as fallbacks", () => {
    const rr = new RoundRobinBalancer();
    const eps = ["a:1", "b:1", "c:1"];
    expect(rr.order(eps)).toEqual(["a:1", "b:1", "c:1"]);
    expect(rr.order(eps)).toEqual(["b:1", "c:1", "a:1"]);
    expect(rr.order(eps)).toEqual(["c:1", "a:1", "b:1"]);
    expect(rr.order([])).toEqual([]);
  });

  it("least-request picks the less loaded of two random samples", () => {
    const inFlight = new InFlight();
    inFlight.acquire("a:1");
    inFlight.acquire("a:1");
    inFlight.acquire("b:1");
    // random() = 0 samples slots 0 then 1: a (2 in flight) and b (1) → b.
    const lr = new LeastRequestBalancer(inFlight, 2, () => 0);
    expect(lr.order(["a:1", "b:1", "c:1"])[0]).toBe("b:1");
    // A full scan (choices >= n) finds the idle c.
    const scan = new LeastRequestBalancer(inFlight, 3, () => 0);
    const order = scan.order(["a:1", "b:1", "c:1"]);
    expect(order[0]).toBe("c:1");
    expect([...order].sort()).toEqual(["a:1", "b:1", "c:1"]);
    inFlight.release("a:1");
    inFlight.release("a:1");
    expect(inFlight.snapshot()).toEqual({ "b:1": 1 });
    expect(() => new LeastRequestBalancer(inFlight, 0)).toThrow(RangeError);
  });
});

describe("header mutations (Envoy ext_proc rules)", () => {
  it("overwrites by default, appends or adds-if-absent when asked, and removes", () => {
    const list: HeaderList = [":path", "/a", ":method", "POST", "x-a", "1", "x-a", "2", "x-b", "b", "x-gone", "z"];
    const problem = applyHeaderMutation(
      list,
      {
        set_headers: [
          hv("X-A", "new"),
          hv("x-b", "b2", { append: { value: true } }),
          hv("x-b", "nope", { append_action: 1 }),
          hv("x-c", "c", { append_action: 1 }),
          hv("x-d", "d", { append_action: 3 }),
          hv(":path", "/rewritten"),
          hv(":method", "GET"),
          hv("host", "evil"),
          hv("x-envoy-original-path", "/x"),
          hv("x-empty", ""),
          hv("x-kept-empty", "", { keep_empty_value: true }),
        ],
        remove_headers: ["x-gone", ":path"],
      },
      "request",
    );
    expect(problem).toBeUndefined();
    expect(list).toEqual([
      ":path",
      "/rewritten",
      ":method",
      "POST",
      "x-a",
      "new",
      "x-b",
      "b",
      "x-b",
      "b2",
      "x-c",
      "c",
      "x-kept-empty",
      "",
    ]);
  });

  it("rejects what Envoy rejects", () => {
    expect(applyHeaderMutation([], { set_headers: [hv("x-a", "bad\r\nvalue")] }, "request")).toMatch(/invalid value/);
    expect(applyHeaderMutation([], { set_headers: [hv("bad name", "v")] }, "request")).toMatch(/invalid header name/);
    expect(
      applyHeaderMutation(
        [],
        { set_headers: [{ header: { key: "x", value: "a", raw_value: Buffer.from("b") } }] },
        "request",
      ),
    ).toMatch(/both/);
    expect(applyHeaderMutation([":status", "200"], { set_headers: [hv(":status", "abc")] }, "response")).toMatch(
      /:status/,
    );
  });

  it("lets the response path change :status", () => {
    const list: HeaderList = [":status", "200"];
    expect(applyHeaderMutation(list, { set_headers: [hv(":status", "503")] }, "response")).toBeUndefined();
    expect(list).toEqual([":status", "503"]);
  });

  it("round-trips header values byte for byte through raw_value", () => {
    const list: HeaderList = ["x-bytes", "caf\u00e9"];
    const map = toHeaderMap(list);
    expect(map.headers![0]!.raw_value).toEqual(Buffer.from([0x63, 0x61, 0x66, 0xe9]));
    expect(fromHeaderMap(map)).toEqual(list);
  });
});

async function collect(it: AsyncIterable<Buffer>): Promise<string> {
  const parts: Buffer[] = [];
  for await (const c of it) parts.push(c);
  return Buffer.concat(parts).toString();
}

describe("BodyFeed", () => {
  it("replays retained chunks to a new reader, then continues live", async () => {
    const feed = new BodyFeed();
    feed.push(Buffer.from("ab"));
    const first = feed.open();
    expect((await first.next()).value?.toString()).toBe("ab");
    feed.push(Buffer.from("cd"));
    const second = feed.open();
    feed.push(Buffer.from("ef"));
    feed.end();
    expect(await collect(second)).toBe("abcdef");
    // The detached first reader ends instead of hanging.
    expect((await first.next()).done).toBe(true);
  });

  it("fails the reader when the producer fails, and refuses replay after stopRetaining", async () => {
    const feed = new BodyFeed();
    const reader = feed.open();
    feed.push(Buffer.from("x"));
    feed.fail(new Error("producer died"));
    await expect(collect(reader)).rejects.toThrow("producer died");
    const other = new BodyFeed();
    other.stopRetaining();
    expect(other.canReplay).toBe(false);
    expect(() => other.open()).toThrow(/replayed/);
  });

  it("asks the producer to pause when the reader falls behind and to resume once drained", async () => {
    const events: boolean[] = [];
    const feed = new BodyFeed((paused) => events.push(paused));
    const reader = feed.open();
    for (let i = 0; i < 20; i++) feed.push(Buffer.from(String(i % 10)));
    expect(events).toEqual([true]);
    for (let i = 0; i < 20; i++) await reader.next();
    expect(events).toEqual([true, false]);
  });
});

describe("switchyard gateway --help", () => {
  it("lists every flag with its default", async () => {
    const out: string[] = [];
    const spy = vi.spyOn(process.stdout, "write").mockImplementation((chunk) => {
      out.push(String(chunk));
      return true;
    });
    try {
      expect(await run(["--help"])).toBe(0);
    } finally {
      spy.mockRestore();
    }
    const text = out.join("");
    for (const [flag, def] of [
      ["--port", "8080"],
      ["--host", "127.0.0.1"],
      ["--epp", '""'],
      ["--epp-tls", "false"],
      ["--epp-timeout", "10s"],
      ["--failure-mode", "FailClose"],
      ["--lb", '""'],
      ["--endpoints", "[]"],
      ["--upstream-timeout", "5m"],
      ["--log-level", "info"],
    ] as const) {
      const at = text.indexOf(`  ${flag}`);
      expect(at, flag).toBeGreaterThanOrEqual(0);
      const help = text.slice(at, text.indexOf("\n", text.indexOf("\n", at) + 1));
      expect(help, flag).toContain(`(default ${def})`);
    }
  });

  it("rejects bad flag values before starting", async () => {
    await expect(run(["--failure-mode", "Maybe"])).rejects.toThrow(/failure-mode/);
    await expect(run(["--lb", "random"])).rejects.toThrow(/lb/);
    await expect(run(["--lb", "epp"])).rejects.toThrow(/EPP address/);
  });
});

describe("switchyard gateway (process)", () => {
  it("serves until SIGTERM, then exits 0", async () => {
    const { spawn } = await import("node:child_process");
    const { startFakePods, send, within } = await import("./fakes.js");
    const p = await startFakePods(["127.0.1.1"]);
    const child = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        "src/cli.ts",
        "gateway",
        "--port",
        "0",
        "--lb",
        "round-robin",
        "--endpoints",
        p.endpoints[0]!,
      ],
      { cwd: process.cwd(), stdio: ["ignore", "pipe", "pipe"] },
    );
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    try {
      let out = "";
      const url = await within(
        new Promise<string>((resolve, reject) => {
          child.stdout.on("data", (c: Buffer) => {
            out += c.toString();
            const m = /"url":"(http:\/\/[^"]+)"/.exec(out);
            if (m) resolve(m[1]!);
          });
          child.once("exit", (code) => reject(new Error(`exited early with ${code}: ${out}`)));
        }),
        "the gateway to listen",
        20_000,
      );
      const r = await send(url, { method: "GET" });
      expect(r.status).toBe(200);
      expect(r.headers["x-gateway-destination-endpoint-served"]).toBe(p.endpoints[0]);
      child.kill("SIGTERM");
      expect(await within(exited, "the gateway to exit", 20_000)).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
      await p.close();
    }
  });
});
