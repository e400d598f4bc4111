/**
 * How the dev gateway closes finished ext_proc streams, against the real ext_proc server: "reset" reproduces what
 * Envoy 1.40 does by default (every completed stream gets RST_STREAM, the traffic that trips Node's HTTP/2
 * rapid-reset guard, docs/envoy.md), "graceful" what the shipped bootstrap configures (the EPP ends each call, no
 * reset at all). Counts only, never timings.
 */
import { afterEach, describe, expect, it } from "vitest";
import { createExtProcServer, type ExtProcServer } from "../../src/extproc/server.js";
import { type Gateway, startGateway } from "../../src/gateway/index.js";
import type { ExtProcClose } from "../../src/gateway/options.js";
import type { LifecycleFactory } from "../../src/request/lifecycle.js";
import { type FakePods, send, startFakePods } from "./fakes.js";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function stack(
  mode: ExtProcClose,
  requireHeader?: string,
): Promise<{ gateway: Gateway; server: ExtProcServer; pods: FakePods; done: string[] }> {
  const pods = await startFakePods(["127.0.1.1"]);
  cleanups.push(() => pods.close());
  const done: string[] = [];
  const factory: LifecycleFactory = {
    begin: () => ({
      route: (req) => ({ endpoints: [pods.endpoints[0]!], body: req.body }),
      responseHeaders: () => ({}),
      responseBody: (chunk) => chunk,
      done: (outcome) => done.push(outcome),
    }),
  };
  const server = createExtProcServer({ factory, host: "127.0.0.1", port: 0 });
  const { port } = await server.start();
  cleanups.push(() => server.stop(100));
  const gateway = await startGateway({
    port: 0,
    epp: `127.0.0.1:${port}`,
    eppConnections: 1,
    extProcClose: mode,
    shutdownGraceMs: 1000,
    ...(requireHeader === undefined ? {} : { requireHeader }),
  });
  cleanups.push(() => gateway.close());
  return { gateway, server, pods, done };
}

async function run(gateway: Gateway, n: number): Promise<number[]> {
  const statuses: number[] = [];
  for (let i = 0; i < n; i++) {
    const r = await send(gateway.url, {
      path: "/v1/completions",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "m", prompt: `p${i}` }),
    });
    statuses.push(r.status);
  }
  return statuses;
}

describe("dev gateway: closing finished ext_proc streams like Envoy", () => {
  it("reset (Envoy's default) resets every completed stream, even though the EPP ends each call itself", async () => {
    const { gateway, server } = await stack("reset");
    const statuses = await run(gateway, 30);
    expect(statuses.every((s) => s === 200)).toBe(true);
    expect(gateway.stats().eppCancels).toBe(30);
    await expect.poll(() => server.activeStreams()).toBe(0);
  });

  it("graceful (the shipped bootstrap) half-closes and lets the EPP end every call: no reset at all", async () => {
    const { gateway, server } = await stack("graceful");
    const statuses = await run(gateway, 30);
    expect(statuses.every((s) => s === 200)).toBe(true);
    expect(gateway.stats().eppCancels).toBe(0);
    await expect.poll(() => server.activeStreams()).toBe(0);
  });
});

describe("dev gateway: an earlier filter's local reply goes through the EPP, as in Envoy", () => {
  it("passes the 401 of an auth filter through the real ext_proc server unchanged", async () => {
    const { gateway, pods, server, done } = await stack("graceful", "authorization");
    const denied = await send(gateway.url, {
      path: "/v1/completions",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "m", prompt: "no credentials" }),
    });
    expect(denied.status).toBe(401);
    expect(denied.headers["www-authenticate"]).toMatch(/^Basic /);
    expect(denied.headers["x-switchyard-error-code"]).toBeUndefined();
    expect(denied.body).toMatch(/authentication failed/);
    expect(pods.requests).toHaveLength(0);
    expect(gateway.stats().eppErrors).toBe(0);

    const allowed = await send(gateway.url, {
      path: "/v1/completions",
      headers: { "content-type": "application/json", authorization: "Basic YWxpY2U6d29uZGVybGFuZA==" },
      body: JSON.stringify({ model: "m", prompt: "with credentials" }),
    });
    expect(allowed.status).toBe(200);
    expect(pods.requests).toHaveLength(1);
    await expect.poll(() => server.activeStreams()).toBe(0);
    expect(done).toEqual(["completed", "completed"]);
  });
});
