/**
 * Bounds on what one ext_proc client can hold open: streams per connection and idle streams (docs/security.md).
 * A real EPP over loopback, the fake-Envoy client, streams that send request headers and then nothing.
 */
import http2 from "node:http2";
import * as grpc from "@grpc/grpc-js";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createExtProcServer } from "../../src/extproc/server.js";
import { CHAT_HEADERS, chatBody, type Harness, startHarness } from "../helpers/epp-harness.js";
import { connect, type FakeEnvoyStream } from "../helpers/extproc-client.js";
import { total } from "../observability/helpers.js";

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const limitedTotal = async (reason: string) => {
  const text = await (await fetch(`http://127.0.0.1:${h!.epp.metricsPort}/metrics`)).text();
  return total(text, "switchyard_extproc_streams_limited_total", { reason });
};

/** A stream that announces a request with a body, then goes quiet (the body never comes). */
function quietStream(s: FakeEnvoyStream): FakeEnvoyStream {
  return s.sendRequestHeaders(CHAT_HEADERS, { endOfStream: false });
}

describe("ext_proc stream limits", () => {
  it("ends a stream that sends nothing for --grpc-stream-idle-timeout with DEADLINE_EXCEEDED, and counts it", async () => {
    h = await startHarness({ flags: ["--grpc-stream-idle-timeout", "1s"] });
    const streams = Array.from({ length: 20 }, () => quietStream(h!.client.open()));
    const statuses = await Promise.all(streams.map((s) => s.status(60_000)));
    for (const st of statuses) expect(st.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(statuses[0]!.details).toContain("--grpc-stream-idle-timeout");
    expect(await limitedTotal("idle_timeout")).toBe(20);
    await vi.waitFor(async () => {
      const text = await (await fetch(`http://127.0.0.1:${h!.epp.metricsPort}/metrics`)).text();
      expect(total(text, "switchyard_extproc_streams_in_flight")).toBe(0);
    });
  });

  it("keeps a stream that keeps talking, however long it lives", async () => {
    h = await startHarness({ flags: ["--grpc-stream-idle-timeout", "2s"] });
    const s = quietStream(h.client.open());
    // Messages every 200 ms for 3 s: longer than the idle timeout, never idle for it.
    for (let i = 0; i < 15; i++) {
      await new Promise((r) => setTimeout(r, 200));
      s.sendRequestBody('{"model":"m",', false);
    }
    expect(await limitedTotal("idle_timeout")).toBe(0);
    s.sendRequestBody('"messages":[{"role":"user","content":"hi"}]}', true);
    // Answered (routed), not ended.
    expect(await s.next(30_000)).toBeDefined();
    expect(await limitedTotal("idle_timeout")).toBe(0);
  });

  // What a client does with the advertised limit is the client's business: Envoy opens another connection, while
  // grpc-js on Node 20 queues the stream and on Node 22 fails it. What the EPP owes is the SETTINGS value, and
  // serving other connections meanwhile.
  it("advertises --grpc-max-streams-per-connection in its HTTP/2 SETTINGS, and other connections keep working", async () => {
    h = await startHarness({ flags: ["--grpc-max-streams-per-connection", "3"] });
    const session = http2.connect(`http://127.0.0.1:${h.epp.grpcPort}`);
    try {
      const settings = await new Promise<http2.Settings>((resolve, reject) => {
        session.once("remoteSettings", resolve);
        session.once("error", reject);
      });
      expect(settings.maxConcurrentStreams).toBe(3);
    } finally {
      session.destroy();
    }
    const greedy = connect(`127.0.0.1:${h.epp.grpcPort}`);
    try {
      const open = Array.from({ length: 3 }, () => quietStream(greedy.open()));
      const inFlight = async () =>
        total(
          await (await fetch(`http://127.0.0.1:${h!.epp.metricsPort}/metrics`)).text(),
          "switchyard_extproc_streams_in_flight",
        );
      await vi.waitFor(async () => expect(await inFlight()).toBe(3), { timeout: 20_000 });
      const other = await h.client.roundTrip({ headers: CHAT_HEADERS, body: chatBody("m") });
      expect(other.status).toBe("routed");
      for (const s of open) s.cancel();
    } finally {
      greedy.close();
    }
  });

  it("refuses, with RESOURCE_EXHAUSTED and a count, streams over the limit from a client that ignores it", async () => {
    h = await startHarness();
    const reasons: string[] = [];
    const server = createExtProcServer({
      factory: h.epp.lifecycles,
      host: "127.0.0.1",
      port: 0,
      maxStreamsPerConnection: 3,
      // Advertise more than is enforced: what a client that ignores SETTINGS would do to the server.
      grpcOptions: { "grpc.max_concurrent_streams": 100 },
      onStreamLimited: (reason) => reasons.push(reason),
    });
    const { port } = await server.start();
    const client = connect(`127.0.0.1:${port}`);
    try {
      const open = Array.from({ length: 3 }, () => quietStream(client.open()));
      await vi.waitFor(() => expect(server.activeStreams()).toBe(3), { timeout: 20_000 });
      const refused = await quietStream(client.open()).status(30_000);
      expect(refused.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      expect(refused.details).toContain("--grpc-max-streams-per-connection");
      expect(reasons).toEqual(["per_connection_limit"]);
      for (const s of open) s.cancel();
      await vi.waitFor(() => expect(server.activeStreams()).toBe(0), { timeout: 20_000 });
      // The slots are free again.
      const again = quietStream(client.open());
      await vi.waitFor(() => expect(server.activeStreams()).toBe(1), { timeout: 20_000 });
      again.cancel();
    } finally {
      client.close();
      await server.stop(100);
    }
  });
});
