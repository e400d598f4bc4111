import { describe, expect, it } from "vitest";
import { SwitchyardError } from "../../src/common/errors.js";
import { detectApi, parseRequest, rewriteModel } from "../../src/request/openai.js";

const b = (s: string | object): Buffer => Buffer.from(typeof s === "string" ? s : JSON.stringify(s));

function parseError(body: Buffer, path: string): SwitchyardError {
  try {
    parseRequest(body, path);
  } catch (err) {
    expect(err).toBeInstanceOf(SwitchyardError);
    return err as SwitchyardError;
  }
  throw new Error("parseRequest did not throw");
}

describe("detectApi", () => {
  it.each([
    ["/v1/conversations", "conversations"],
    ["/v1/responses", "responses"],
    ["/v1/chat/completions", "chat/completions"],
    ["/v1/completions", "completions"],
    ["/v1/embeddings", "embeddings"],
    ["/openai/deployments/x/chat/completions", "chat/completions"],
    ["/v1/chat/completions?api-version=2024-02-01", "chat/completions"],
    ["/v1/embeddings/", "embeddings"],
    ["/v1/completions?next=/v1/embeddings", "completions"],
    ["/v1/models", "completions"],
    ["/v1/responses/resp_123", "completions"],
    ["", "completions"],
    ["/", "completions"],
  ])("%s → %s", (path, api) => {
    expect(detectApi(path)).toBe(api);
  });
});

describe("parseRequest: accepted shapes", () => {
  it("completions: string prompt, max_tokens precedence, stream options, cache_salt", () => {
    const p = parseRequest(
      b({
        model: "m",
        prompt: "hello world!",
        max_tokens: 50,
        max_completion_tokens: 9,
        stream: true,
        stream_options: { include_usage: true },
        cache_salt: "s1",
      }),
      "/v1/completions",
    );
    expect(p).toMatchObject({
      api: "completions",
      model: "m",
      stream: true,
      includeUsage: true,
      maxTokens: 50,
      promptChars: 12,
      inputTokens: 3,
      prefixText: "hello world!",
      cacheSalt: "s1",
    });
  });

  it("completions: string[] prompt is joined with a space for hashing", () => {
    const p = parseRequest(b({ model: "m", prompt: ["ab", "cde"] }), "/v1/completions");
    expect(p.prefixText).toBe("ab cde");
    expect(p.promptChars).toBe(5);
    expect(p.inputTokens).toBe(2);
    expect(p.stream).toBe(false);
    expect(p.includeUsage).toBe(false);
    expect(p.maxTokens).toBeUndefined();
    expect(p.cacheSalt).toBeUndefined();
  });

  it("chat: prefix text is the raw bytes of messages; text parts count, images do not", () => {
    const messages =
      '[ {"role":"system","content":"be brief"},\n  {"role":"user","content":[{"type":"text","text":"hi \\u00e9"},' +
      '{"type":"image_url","image_url":{"url":"data:xyz"}}]} ]';
    const body = Buffer.from(`{"model":"llama","messages":${messages},"max_completion_tokens":7}`);
    const p = parseRequest(body, "/v1/chat/completions");
    expect(p.api).toBe("chat/completions");
    expect(p.prefixText).toBe(messages);
    expect(p.promptChars).toBe("be brief".length + "hi é".length);
    expect(p.maxTokens).toBe(7);
  });

  it("responses: hashes [{instructions},{tools},{input}] from raw slices; counts instructions and input text", () => {
    const body = Buffer.from(
      '{"model":"m","instructions":"sys","tools":[{"type":"function","name":"f"}],' +
        '"input":[{"role":"user","content":[{"type":"input_text","text":"abcd"}]}],"max_output_tokens":3}',
    );
    const p = parseRequest(body, "/v1/responses");
    expect(p.api).toBe("responses");
    expect(p.prefixText).toBe(
      '[{"instructions":"sys"},{"tools":[{"type":"function","name":"f"}]},' +
        '{"input":[{"role":"user","content":[{"type":"input_text","text":"abcd"}]}]}]',
    );
    expect(p.promptChars).toBe(7);
    expect(p.maxTokens).toBe(3);
    const plain = parseRequest(b({ model: "m", input: "hello" }), "/v1/responses");
    expect(plain.prefixText).toBe('[{"instructions":null},{"tools":null},{"input":"hello"}]');
    expect(plain.promptChars).toBe(5);
  });

  it("conversations and embeddings hash their raw items / input", () => {
    const c = parseRequest(
      Buffer.from('{"model":"m","items":[ {"type":"message","content":"hey"} ]}'),
      "/v1/conversations",
    );
    expect(c.prefixText).toBe('[ {"type":"message","content":"hey"} ]');
    expect(c.promptChars).toBe(3);
    const e = parseRequest(Buffer.from('{"input":["ab","c"],"model":"m"}'), "/v1/embeddings");
    expect(e.prefixText).toBe('["ab","c"]');
    expect(e.promptChars).toBe(3);
    const tokens = parseRequest(b({ model: "m", input: [[1, 2, 3], [4]] }), "/v1/embeddings");
    expect(tokens.inputTokens).toBe(4);
  });

  it("accepts an empty-string model, as GIE does", () => {
    expect(parseRequest(b({ model: "", prompt: "x" }), "/v1/completions").model).toBe("");
  });

  it("parses a 220 KB chat body with the model after the messages", () => {
    const big = "lorem ipsum dolor sit amet ".repeat(8200);
    const body = b({ messages: [{ role: "user", content: big }], stream: true, model: "llama-3" });
    expect(body.length).toBeGreaterThan(220_000);
    const p = parseRequest(body, "/v1/chat/completions");
    expect(p.model).toBe("llama-3");
    expect(p.promptChars).toBe(big.length);
    expect(p.inputTokens).toBe(Math.ceil(big.length / 4));
    expect(p.prefixText).toBe(JSON.stringify([{ role: "user", content: big }]));
    expect(body.toString("utf8", p.modelRange.start, p.modelRange.end)).toBe('"llama-3"');
    const out = rewriteModel(body, "llama-3-lora", p.modelRange);
    expect(out.toString()).toBe(body.toString().replace('"model":"llama-3"', '"model":"llama-3-lora"'));
  });
});

describe("parseRequest: GIE's exact errors", () => {
  it.each([
    ["/v1/conversations", { model: "m", items: [] }, "invalid conversations request: must have items field"],
    ["/v1/conversations", { model: "m" }, "invalid conversations request: must have items field"],
    ["/v1/responses", { model: "m" }, "invalid responses request: must have input field"],
    ["/v1/responses", { model: "m", input: null }, "invalid responses request: must have input field"],
    ["/v1/chat/completions", { model: "m" }, "invalid chat completions request: must have valid messages field"],
    [
      "/v1/chat/completions",
      { model: "m", messages: [] },
      "invalid chat completions request: must have valid messages field",
    ],
    [
      "/v1/chat/completions",
      { model: "m", messages: "hi" },
      "invalid chat completions request: must have valid messages field",
    ],
    [
      "/v1/chat/completions",
      { model: "m", messages: ["hi"] },
      "invalid chat completions request: must have valid messages field",
    ],
    ["/v1/completions", { model: "m" }, "invalid completions request: must have prompt field"],
    ["/v1/completions", { model: "m", prompt: "" }, "invalid completions request: must have prompt field"],
    ["/v1/completions", { model: "m", prompt: [] }, "invalid completions request: must have prompt field"],
    ["/v1/completions", { model: "m", prompt: [1, 2] }, "invalid completions request: must have prompt field"],
    ["/v1/embeddings", { model: "m" }, "invalid embeddings request: must have input field"],
    ["/unknown", { model: "m", messages: [{}] }, "invalid completions request: must have prompt field"],
  ])("%s %j → %s", (path, body, message) => {
    const e = parseError(b(body), path);
    expect(e.code).toBe("SY_INVALID_REQUEST");
    expect(e.status).toBe(400);
    expect(e.message).toBe(message);
    expect(e.bodyText).toBe(`inference error: BadRequest - ${message}`);
  });

  it("checks the shape before the model, in GIE's order", () => {
    const e = parseError(b({ foo: 1 }), "/v1/chat/completions");
    expect(e.code).toBe("SY_INVALID_REQUEST");
  });

  it.each([
    [{ prompt: "x" }],
    [{ model: 7, prompt: "x" }],
    [{ model: null, prompt: "x" }],
    [{ model: ["m"], prompt: "x" }],
  ])("non-string model %j → model not found in request body", (body) => {
    const e = parseError(b(body), "/v1/completions");
    expect(e.code).toBe("SY_MODEL_MISSING");
    expect(e.status).toBe(400);
    expect(e.bodyText).toBe("inference error: BadRequest - model not found in request body");
  });

  it.each(["", "nul", "{", '{"model":"m",}', "not json", '{"model":"m"} trailing'])("invalid JSON %j → 400", (text) => {
    const e = parseError(Buffer.from(text), "/v1/completions");
    expect(e.code).toBe("SY_BAD_JSON");
    expect(e.status).toBe(400);
    expect(e.message.startsWith("error unmarshaling request bodyMap: ")).toBe(true);
    expect(e.message.length).toBeGreaterThan("error unmarshaling request bodyMap: ".length);
    expect(e.bodyText.startsWith("inference error: BadRequest - error unmarshaling request bodyMap: ")).toBe(true);
  });

  it.each([
    ["[1]", "array"],
    ['"s"', "string"],
    ["42", "number"],
    ["true", "bool"],
  ])("a JSON %s body is rejected like Go's map decoder does (%s)", (text, kind) => {
    const e = parseError(Buffer.from(text), "/v1/completions");
    expect(e.code).toBe("SY_BAD_JSON");
    expect(e.message).toBe(
      `error unmarshaling request bodyMap: json: cannot unmarshal ${kind} into Go value of type map[string]interface {}`,
    );
  });

  it("a null body decodes to an empty map and fails validation", () => {
    expect(parseError(Buffer.from("null"), "/v1/embeddings").message).toBe(
      "invalid embeddings request: must have input field",
    );
  });
});

describe("rewriteModel", () => {
  it("replaces only the top-level model value; every other byte survives", () => {
    const before =
      '{\n  "messages": [{"role":"user","content":"\\u00e9\\\\\\"<b>&","model":"nested"}],\n' +
      '  "big": 12345678901234567890, "huge": 1e400, "obj": {"model": "deep"},\n' +
      '  "model" :  "llama",\t"temperature": 0.10000000000000000001\n}';
    const out = rewriteModel(Buffer.from(before), "llama-lora-7");
    expect(out.toString()).toBe(before.replace('"model" :  "llama"', '"model" :  "llama-lora-7"'));
  });

  it("JSON-escapes the new value", () => {
    const before = Buffer.from('{"model":"a","prompt":"x"}');
    const target = 'we"ird\\ñ\n😀';
    const out = rewriteModel(before, target);
    expect(out.toString()).toBe(`{"model":${JSON.stringify(target)},"prompt":"x"}`);
    expect(JSON.parse(out.toString()).model).toBe(target);
  });

  it("returns the same Buffer when the model is unchanged, however it is spelled", () => {
    const plain = Buffer.from('{"model":"llama","prompt":"x"}');
    expect(rewriteModel(plain, "llama")).toBe(plain);
    const escaped = Buffer.from('{"mod\\u0065l":"ll\\u0061ma","prompt":"x"}');
    expect(rewriteModel(escaped, "llama")).toBe(escaped);
  });

  it("rewrites the last of duplicate model keys (the one servers read)", () => {
    const out = rewriteModel(Buffer.from('{"model":"a","model":"b"}'), "c");
    expect(out.toString()).toBe('{"model":"a","model":"c"}');
    expect(JSON.parse(out.toString()).model).toBe("c");
  });

  it("accepts the range from parseRequest and agrees with a fresh scan", () => {
    const body = Buffer.from('{"prompt":"p","model":"m"}');
    const p = parseRequest(body, "/v1/completions");
    expect(rewriteModel(body, "t", p.modelRange).equals(rewriteModel(body, "t"))).toBe(true);
  });

  it.each(['{"prompt":"x"}', '{"model":5}', "[]", "not json", ""])(
    "%j without a string model → SY_MODEL_MISSING",
    (text) => {
      expect(() => rewriteModel(Buffer.from(text), "t")).toThrow(
        expect.objectContaining({ code: "SY_MODEL_MISSING", message: "model not found in request body" }),
      );
    },
  );
});
