/**
 * Envoy resets every ext_proc stream it is done with (its default, which Envoy Gateway and Istio keep). nghttp2
 * closes a connection after a burst of 1000 such resets refilled at 33/s, failing every stream in flight on it. On
 * Node >= 22.10 the EPP raises that budget (`--grpc-stream-resets-per-second`); Node 20 cannot, and this test pins
 * both behaviours, so the CI's Node 22 pass proves the fix and its Node 20 pass proves the documented limitation.
 *
 * The client plays Envoy's default: a header-only request, the EPP's answer, then RST_STREAM(CANCEL), 3000 times on
 * one connection as fast as the loop allows.
 */
import http2 from "node:http2";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeHeadersRequest, grpcFrame, PROCESS_PATH } from "../../bench/extproc/lean-client.js";
import { raiseStreamResetBudget, streamResetBudgetSupported } from "../../src/extproc/server.js";
import { type Harness, startHarness } from "../helpers/epp-harness.js";

const STREAMS = 3000;

describe("the stream-reset budget", () => {
  it("finds grpc-js's http2 server options to put it in (a grpc-js upgrade that moves them fails here)", () => {
    const server = new grpc.Server();
    expect(raiseStreamResetBudget(server, 123)).toBe(true);
    expect((server as unknown as { commonServerOptions: object }).commonServerOptions).toMatchObject({
      streamResetRate: 123,
      streamResetBurst: 246,
    });
  });
});

describe("ext_proc streams reset by the client after each answer, on one connection", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => h?.close());

  it(streamResetBudgetSupported()
    ? `keeps the connection through ${STREAMS} resets (Node ${process.versions.node} honours the budget)`
    : `closes the connection after about 1000 resets (Node ${process.versions.node}: nghttp2's fixed budget)`, async () => {
    const client = http2.connect(`http://127.0.0.1:${h.epp.grpcPort}`);
    let goaway: number | undefined;
    client.on("goaway", (code) => {
      goaway = code;
    });
    client.on("error", () => {});
    const frame = grpcFrame(
      encodeHeadersRequest(
        [
          [":method", "GET"],
          [":path", "/v1/models"],
          [":authority", "gw"],
        ],
        { endOfStream: true, protocolConfig: { requestBodyMode: 4, responseBodyMode: 4 } },
      ),
    );
    let answered = 0;
    for (let i = 0; i < STREAMS && goaway === undefined; i++) {
      const ok = await new Promise<boolean>((resolve) => {
        const s = client.request({
          ":method": "POST",
          ":path": PROCESS_PATH,
          "content-type": "application/grpc",
          te: "trailers",
        });
        s.on("data", () => {
          s.close(http2.constants.NGHTTP2_CANCEL);
          resolve(true);
        });
        s.on("error", () => resolve(false));
        s.on("close", () => resolve(false));
        s.write(frame);
      });
      if (ok) answered++;
    }
    client.destroy();
    if (streamResetBudgetSupported()) {
      expect(goaway).toBeUndefined();
      expect(answered).toBe(STREAMS);
    } else {
      expect(goaway).toBe(http2.constants.NGHTTP2_INTERNAL_ERROR);
      expect(answered).toBeLessThan(STREAMS);
    }
  }, 120_000);
});
