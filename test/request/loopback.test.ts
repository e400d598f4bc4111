/**
 * Response accounting against a real loopback model-server stand-in: the server writes bodies in small,
 * awkwardly-cut pieces, the kernel and node:http deliver them however they like, and the accountant must
 * produce the same usage and bytes whatever chunking actually arrives.
 */
import { once } from "node:events";
import { createServer, get, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { OpenAiApi } from "../../src/request/openai.js";
import { ResponseAccountant } from "../../src/request/usage.js";
import { CHAT_JSON, CHAT_STREAM, CHAT_USAGE, RESPONSES_STREAM, RESPONSES_USAGE, writtenBack } from "./fixtures.js";

const BODIES: Record<string, { body: string; type: string }> = {
  "/v1/chat/completions": { body: CHAT_STREAM, type: "text/event-stream; charset=utf-8" },
  "/v1/responses": { body: RESPONSES_STREAM, type: "text/event-stream" },
  "/v1/chat/completions/json": { body: CHAT_JSON, type: "application/json" },
};

let server: Server;
let port = 0;

beforeAll(async () => {
  server = createServer(async (req, res) => {
    const entry = BODIES[req.url ?? ""];
    if (!entry) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-type": entry.type });
    const bytes = Buffer.from(entry.body);
    // Cuts every 37 bytes land inside `data:` lines and inside `"model":"…"`; each write is flushed before
    // the next so the client tends to see separate chunks (not guaranteed, and not relied on).
    for (let i = 0; i < bytes.length; i += 37) {
      await new Promise<void>((resolve) => res.write(bytes.subarray(i, i + 37), () => resolve()));
      await new Promise((resolve) => setImmediate(resolve));
    }
    res.end();
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

async function fetchThrough(path: string, api: OpenAiApi, targetModel: string) {
  const res: IncomingMessage = await new Promise((resolve, reject) => {
    get({ host: "127.0.0.1", port, path, agent: false }, resolve).on("error", reject);
  });
  expect(res.statusCode).toBe(200);
  const acc = new ResponseAccountant({
    streaming: (res.headers["content-type"] ?? "").includes("text/event-stream"),
    api,
    clientModel: "base-model",
    targetModel,
  });
  const inputs: Buffer[] = [];
  const outputs: Buffer[] = [];
  res.on("data", (chunk: Buffer) => {
    inputs.push(chunk);
    outputs.push(acc.feed(chunk, false));
  });
  await once(res, "end");
  outputs.push(acc.feed(Buffer.alloc(0), true));
  return { acc, inputs, outputs, out: Buffer.concat(outputs).toString() };
}

describe("ResponseAccountant over a real HTTP stream", () => {
  it("chat SSE: usage, content events and write-back whatever the chunking", async () => {
    const { acc, out, inputs } = await fetchThrough("/v1/chat/completions", "chat/completions", "tgt-lora");
    expect(inputs.length).toBeGreaterThan(0);
    expect(acc.usage()).toEqual(CHAT_USAGE);
    expect(acc.outputTokensSeen).toBe(2);
    expect(acc.bytes).toBe(Buffer.byteLength(CHAT_STREAM));
    expect(out).toBe(writtenBack(CHAT_STREAM));
  });

  it("Responses SSE: usage from response.completed", async () => {
    const { acc, out } = await fetchThrough("/v1/responses", "responses", "tgt-lora");
    expect(acc.usage()).toEqual(RESPONSES_USAGE);
    expect(acc.outputTokensSeen).toBe(2);
    expect(out).toBe(writtenBack(RESPONSES_STREAM));
  });

  it("JSON body without write-back: every chunk is passed on as the same object", async () => {
    const { acc, inputs, outputs, out } = await fetchThrough(
      "/v1/chat/completions/json",
      "chat/completions",
      "base-model",
    );
    expect(out).toBe(CHAT_JSON);
    inputs.forEach((chunk, i) => {
      expect(outputs[i]).toBe(chunk);
    });
    expect(acc.usage()).toEqual({ promptTokens: 5, completionTokens: 3, totalTokens: 8, cachedTokens: 2 });
    expect(acc.firstContentAt).toBeTypeOf("number");
  });
});
