import { describe, expect, it } from "vitest";
import type { OpenAiApi } from "../../src/request/openai.js";
import { SseLineSplitter } from "../../src/request/sse.js";
import { classifyStatus, extractUsage, ResponseAccountant } from "../../src/request/usage.js";
import { ModelNameWriteBack } from "../../src/request/writeback.js";
import { createRandom } from "../../src/scheduling/index.js";
import {
  CHAT_JSON,
  CHAT_STREAM,
  CHAT_USAGE,
  RESPONSES_STREAM,
  RESPONSES_USAGE,
  splitAt,
  writtenBack,
} from "./fixtures.js";

interface Run {
  readonly acc: ResponseAccountant;
  readonly out: Buffer;
  readonly outputs: Buffer[];
}

function run(
  parts: readonly Buffer[],
  opts: { streaming?: boolean; api?: OpenAiApi; target?: string; maxLineBytes?: number } = {},
): Run {
  const acc = new ResponseAccountant({
    streaming: opts.streaming ?? true,
    api: opts.api ?? "chat/completions",
    clientModel: "base-model",
    targetModel: opts.target ?? "base-model",
    ...(opts.maxLineBytes === undefined ? {} : { maxLineBytes: opts.maxLineBytes }),
  });
  const outputs = parts.map((p, i) => acc.feed(p, i === parts.length - 1));
  return { acc, out: Buffer.concat(outputs), outputs };
}

describe("ResponseAccountant: chat/completions SSE", () => {
  const stream = Buffer.from(CHAT_STREAM);

  it("finds usage, content events and TTFT in one chunk", () => {
    const { acc, out } = run([stream]);
    expect(acc.usage()).toEqual(CHAT_USAGE);
    expect(acc.outputTokensSeen).toBe(2);
    expect(acc.firstContentAt).toBeTypeOf("number");
    expect(acc.bytes).toBe(stream.length);
    expect(acc.ended).toBe(true);
    expect(out.equals(stream)).toBe(true);
  });

  it("finds usage when the stream is split at every possible byte offset", () => {
    for (let i = 0; i <= stream.length; i++) {
      const { acc } = run(splitAt(stream, [i]));
      expect(acc.usage(), `split at ${i}`).toEqual(CHAT_USAGE);
      expect(acc.outputTokensSeen, `split at ${i}`).toBe(2);
    }
  });

  it("finds usage when fed one byte at a time and under 300 random multi-way splits", () => {
    const bytes = Array.from({ length: stream.length - 1 }, (_, i) => i + 1);
    expect(run(splitAt(stream, bytes)).acc.usage()).toEqual(CHAT_USAGE);
    const rnd = createRandom(7);
    for (let n = 0; n < 300; n++) {
      const cuts = [
        ...new Set(Array.from({ length: 1 + Math.floor(rnd() * 8) }, () => Math.floor(rnd() * stream.length))),
      ];
      cuts.sort((a, b) => a - b);
      const { acc } = run(splitAt(stream, cuts));
      expect(acc.usage(), `cuts ${cuts.join(",")}`).toEqual(CHAT_USAGE);
      expect(acc.outputTokensSeen).toBe(2);
    }
  });

  it("passes chunks through untouched and zero-copy when no write-back is needed", () => {
    const parts = splitAt(stream, [10, 200, 201, 450]);
    const { outputs } = run(parts);
    outputs.forEach((o, i) => {
      expect(o).toBe(parts[i]);
    });
  });

  it("writes the model name back across every chunk split", () => {
    const expected = writtenBack(CHAT_STREAM);
    expect(expected).not.toBe(CHAT_STREAM);
    for (let i = 0; i <= stream.length; i++) {
      const { acc, out } = run(splitAt(stream, [i]), { target: "tgt-lora" });
      expect(out.toString(), `split at ${i}`).toBe(expected);
      expect(acc.usage()).toEqual(CHAT_USAGE);
    }
    const bytes = Array.from({ length: stream.length - 1 }, (_, i) => i + 1);
    expect(run(splitAt(stream, bytes), { target: "tgt-lora" }).out.toString()).toBe(expected);
  });

  it("accepts CRLF line endings and `data:` without a space", () => {
    const crlf = Buffer.from(CHAT_STREAM.replaceAll("\n", "\r\n").replaceAll("data: ", "data:"));
    for (let i = 0; i <= crlf.length; i += 3) {
      const { acc } = run(splitAt(crlf, [i]));
      expect(acc.usage()).toEqual(CHAT_USAGE);
      expect(acc.outputTokensSeen).toBe(2);
    }
  });

  it("keeps the last usage (continuous_usage_stats) and ignores usage:null", () => {
    const text =
      'data: {"choices":[{"delta":{"content":"a"}}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}\n\n' +
      'data: {"choices":[{"delta":{"content":"b"}}],"usage": null}\n\n' +
      'data: {"choices":[{"delta":{"content":"c"}}],"usage":{"prompt_tokens":3,"completion_tokens":3,"total_tokens":6}}\n\n' +
      "data: [DONE]\n\n";
    const { acc } = run([Buffer.from(text)]);
    expect(acc.usage()).toEqual({ promptTokens: 3, completionTokens: 3, totalTokens: 6, cachedTokens: 0 });
    expect(acc.outputTokensSeen).toBe(3);
  });

  it("reports no usage without include_usage, but still counts content events", () => {
    const text =
      'data: {"object":"text_completion","choices":[{"text":"x"}]}\n\n' +
      'data: {"object":"text_completion","choices":[{"text":""}]}\n\n' +
      'data: {"object":"text_completion","choices":[{"text":"y"}]}\n\ndata: [DONE]\n\n';
    const { acc } = run([Buffer.from(text)], { api: "completions" });
    expect(acc.usage()).toBeUndefined();
    expect(acc.outputTokensSeen).toBe(2);
  });

  it("role-only and empty chunks are not content: no TTFT until a token arrives", () => {
    const acc = new ResponseAccountant({
      streaming: true,
      api: "chat/completions",
      clientModel: "m",
      targetModel: "m",
    });
    acc.feed(Buffer.from('data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n'), false);
    expect(acc.firstContentAt).toBeUndefined();
    acc.feed(Buffer.from('data: {"choices":[{"delta":{"content":"x"}}]}\n\n'), false);
    expect(acc.firstContentAt).toBeTypeOf("number");
  });

  it("drops an over-long line from parsing but still passes every byte on", () => {
    const long = `data: {"choices":[{"delta":{"content":"${"x".repeat(500)}"}}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}\n\n`;
    const text = long + 'data: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":9,"total_tokens":18}}\n\n';
    const buf = Buffer.from(text);
    for (const cut of [0, 100, long.length - 1, long.length + 5]) {
      const { acc, out } = run(splitAt(buf, [cut]), { maxLineBytes: 200 });
      expect(out.equals(buf)).toBe(true);
      expect(acc.usage()).toEqual({ promptTokens: 9, completionTokens: 9, totalTokens: 18, cachedTokens: 0 });
      expect(acc.outputTokensSeen).toBe(0);
    }
  });

  it("parses a final line that has no terminator at end of stream", () => {
    const { acc } = run([Buffer.from('data: {"usage":{"prompt_tokens":1,"completion_tokens":2}}')]);
    expect(acc.usage()).toEqual({ promptTokens: 1, completionTokens: 2, totalTokens: 3, cachedTokens: 0 });
  });

  it("reads usage when a `stream: true` request is answered with plain JSON", () => {
    const body = Buffer.from(CHAT_JSON);
    for (const cut of [0, 17, body.length - 3]) {
      const { acc, out } = run(splitAt(body, [cut]));
      expect(out.equals(body)).toBe(true);
      expect(acc.usage()).toEqual({ promptTokens: 5, completionTokens: 3, totalTokens: 8, cachedTokens: 2 });
    }
  });

  it("survives malformed events", () => {
    const text = 'data: {"usage":{"prompt_tokens":\n\ndata: not json "usage":{\n\n: comment\nretry: 10\n\n';
    const { acc, out } = run([Buffer.from(text)]);
    expect(acc.usage()).toBeUndefined();
    expect(out.toString()).toBe(text);
  });
});

describe("ResponseAccountant: Responses API SSE", () => {
  const stream = Buffer.from(RESPONSES_STREAM);

  it("reads usage from response.completed at every split point; only delta events are content", () => {
    for (let i = 0; i <= stream.length; i++) {
      const { acc } = run(splitAt(stream, [i]), { api: "responses" });
      expect(acc.usage(), `split at ${i}`).toEqual(RESPONSES_USAGE);
      expect(acc.outputTokensSeen, `split at ${i}`).toBe(2);
      expect(acc.firstContentAt).toBeTypeOf("number");
    }
  });

  it("writes back the model inside the response objects", () => {
    for (let i = 0; i <= stream.length; i += 5) {
      const { out } = run(splitAt(stream, [i]), { api: "responses", target: "tgt-lora" });
      expect(out.toString()).toBe(writtenBack(RESPONSES_STREAM));
    }
  });
});

describe("ResponseAccountant: non-streaming JSON", () => {
  const body = Buffer.from(CHAT_JSON);

  it("reads usage from a body split at every offset, passing chunks through zero-copy", () => {
    for (let i = 0; i <= body.length; i++) {
      const parts = splitAt(body, [i]);
      const { acc, outputs } = run(parts, { streaming: false });
      expect(acc.usage(), `split at ${i}`).toEqual({
        promptTokens: 5,
        completionTokens: 3,
        totalTokens: 8,
        cachedTokens: 2,
      });
      outputs.forEach((o, k) => {
        expect(o).toBe(parts[k]);
      });
      expect(acc.firstContentAt).toBeTypeOf("number");
    }
  });

  it('writes back `"model": "<target>"` but not escaped text in content, at every split', () => {
    const expected = writtenBack(CHAT_JSON);
    expect(expected).toContain('"model": "base-model"');
    expect(expected).toContain('\\"model\\": \\"tgt-lora\\"');
    for (let i = 0; i <= body.length; i++) {
      const { out } = run(splitAt(body, [i]), { streaming: false, target: "tgt-lora" });
      expect(out.toString(), `split at ${i}`).toBe(expected);
    }
  });

  it.each([
    ["prompt_tokens_details", '{"prompt_tokens":10,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":6}}'],
    [
      "prompt_token_details (GIE)",
      '{"prompt_tokens":10,"completion_tokens":1,"prompt_token_details":{"cached_tokens":6}}',
    ],
    ["input_tokens_details", '{"input_tokens":10,"output_tokens":1,"input_tokens_details":{"cached_tokens":6}}'],
  ])("cached tokens from %s", (_name, usage) => {
    const { acc } = run([Buffer.from(`{"object":"x","usage":${usage}}`)], { streaming: false });
    expect(acc.usage()).toEqual({ promptTokens: 10, completionTokens: 1, totalTokens: 11, cachedTokens: 6 });
  });

  it("responses and conversations objects use input/output tokens", () => {
    const body = '{"object":"response","usage":{"input_tokens":4,"output_tokens":6,"total_tokens":10}}';
    expect(run([Buffer.from(body)], { streaming: false, api: "responses" }).acc.usage()).toEqual({
      promptTokens: 4,
      completionTokens: 6,
      totalTokens: 10,
      cachedTokens: 0,
    });
  });

  it("error pages, bodies without usage and over-cap bodies report no usage", () => {
    expect(run([Buffer.from("<html>bad gateway</html>")], { streaming: false }).acc.usage()).toBeUndefined();
    expect(run([Buffer.from('{"object":"error","message":"x"}')], { streaming: false }).acc.usage()).toBeUndefined();
    const acc = new ResponseAccountant({
      streaming: false,
      api: "chat/completions",
      clientModel: "m",
      targetModel: "m",
      maxBufferedBytes: 10,
    });
    const out = acc.feed(body, true);
    expect(out).toBe(body);
    expect(acc.usage()).toBeUndefined();
    expect(acc.bytes).toBe(body.length);
  });

  it("an empty body sets no TTFT", () => {
    const { acc } = run([Buffer.alloc(0)], { streaming: false });
    expect(acc.firstContentAt).toBeUndefined();
    expect(acc.usage()).toBeUndefined();
  });

  it("rejects an invalid maxBufferedBytes", () => {
    expect(
      () =>
        new ResponseAccountant({
          streaming: false,
          api: "completions",
          clientModel: "m",
          targetModel: "m",
          maxBufferedBytes: -1,
        }),
    ).toThrow(TypeError);
  });
});

describe("extractUsage", () => {
  it("ignores non-numeric and negative fields and computes a missing total", () => {
    expect(extractUsage({ usage: { prompt_tokens: "3", completion_tokens: -1 } })).toEqual({
      promptTokens: 0,
      completionTokens: 0,
      totalTokens: 0,
      cachedTokens: 0,
    });
    expect(extractUsage({ usage: null })).toBeUndefined();
    expect(extractUsage({ response: { usage: null } })).toBeUndefined();
    expect(extractUsage("usage")).toBeUndefined();
  });
});

describe("ModelNameWriteBack", () => {
  it("matches Python's ASCII-escaped spelling of a non-ASCII target", () => {
    const wb = new ModelNameWriteBack("modèle-lora", "base");
    const out = wb.process(Buffer.from('{"model": "mod\\u00e8le-lora","x":"modèle-lora"}'), true);
    expect(out.toString()).toBe('{"model": "base","x":"modèle-lora"}');
  });

  it("holds back only a tail that could still match, and flushes it at end of stream", () => {
    const wb = new ModelNameWriteBack("tgt", "client");
    const a = Buffer.from('{"id":1,"mod');
    const first = wb.process(a, false);
    expect(first.toString()).toBe('{"id":1,');
    expect(wb.heldBytes).toBe(4);
    const plain = Buffer.from("no quote at the end");
    expect(wb.process(Buffer.from('el":"tgt"}'), false).toString()).toBe('"model":"client"}');
    expect(wb.process(plain, false)).toBe(plain);
    expect(wb.process(Buffer.from('"mo'), false).length).toBe(0);
    expect(wb.process(Buffer.alloc(0), true).toString()).toBe('"mo');
  });

  it("does not rewrite a different model that shares the target as a prefix", () => {
    const wb = new ModelNameWriteBack("tgt", "client");
    expect(wb.process(Buffer.from('{"model":"tgt-2"}'), true).toString()).toBe('{"model":"tgt-2"}');
  });
});

describe("SseLineSplitter", () => {
  it("reassembles lines across chunks and strips CR", () => {
    const s = new SseLineSplitter();
    const lines: string[] = [];
    const on = (l: Buffer) => lines.push(l.toString());
    s.push(Buffer.from("ab"), on);
    s.push(Buffer.from("c\r\nde"), on);
    s.push(Buffer.from("\n\nf"), on);
    expect(lines).toEqual(["abc", "de", ""]);
    expect(s.pendingBytes).toBe(1);
    s.end(on);
    expect(lines).toEqual(["abc", "de", "", "f"]);
  });

  it("rejects a bad maxLineBytes", () => {
    expect(() => new SseLineSplitter({ maxLineBytes: 0 })).toThrow(TypeError);
  });
});

describe("classifyStatus", () => {
  it.each([
    [0, "ok"],
    [200, "ok"],
    [304, "ok"],
    [400, "client_error"],
    [404, "client_error"],
    [429, "rate_limited"],
    [500, "server_error"],
    [503, "server_error"],
  ] as const)("%i → %s", (status, cls) => {
    expect(classifyStatus(status)).toBe(cls);
  });
});
