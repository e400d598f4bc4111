/**
 * Hop-by-hop request headers in the dev gateway, as real Envoy 1.40 treats them (docs/security.md): headers that
 * `Connection` nominates reach neither ext_proc nor the pod; Proxy-Authorization is forwarded (Envoy does);
 * a response's nominated headers are left alone (Envoy does not strip them either).
 */
import { afterEach, describe, expect, it } from "vitest";
import { type Gateway, startGateway } from "../../src/gateway/index.js";
import { type FakeEpp, type FakePods, send, startFakeEpp, startFakePods } from "./fakes.js";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

describe("dev gateway hop-by-hop headers", () => {
  it("drops Connection-nominated request headers before ext_proc and the pod, keeps the rest like Envoy", async () => {
    const p: FakePods = await startFakePods(["127.0.1.1"]);
    cleanups.push(() => p.close());
    const e: FakeEpp = await startFakeEpp({ decide: () => ({ destination: p.endpoints[0]! }) });
    cleanups.push(() => e.close());
    const g: Gateway = await startGateway({ port: 0, shutdownGraceMs: 1000, epp: e.address });
    cleanups.push(() => g.close());

    const r = await send(g.url, {
      path: "/v1/completions",
      body: JSON.stringify({ model: "m", prompt: "x" }),
      headers: {
        "content-type": "application/json",
        connection: "keep-alive, X-Secret-Hop, x-other-hop",
        "x-secret-hop": "for the gateway only",
        "x-other-hop": "also",
        "proxy-authorization": "Basic Zm9vOmJhcg==",
        "x-normal": "yes",
      },
    });
    expect(r.status).toBe(200);
    const upstream = p.requests[0]!.headers;
    expect(upstream["x-secret-hop"]).toBeUndefined();
    expect(upstream["x-other-hop"]).toBeUndefined();
    expect(upstream["x-normal"]).toBe("yes");
    expect(upstream["proxy-authorization"]).toBe("Basic Zm9vOmJhcg==");
    const first = e.streams[0]!.messages[0] as {
      request_headers: { headers: { headers: { key: string; raw_value: Buffer }[] } };
    };
    const seen = first.request_headers.headers.headers.map((h) => h.key);
    expect(seen).not.toContain("x-secret-hop");
    expect(seen).not.toContain("x-other-hop");
    expect(seen).not.toContain("connection");
    expect(seen).toContain("x-normal");
  });
});
