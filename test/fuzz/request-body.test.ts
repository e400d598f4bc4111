/** Request bodies: random and mutated JSON never escapes the parser as anything but a SwitchyardError. */
import { describe, expect, it } from "vitest";
import { SwitchyardError } from "../../src/common/errors.js";
import { parseRequest } from "../../src/request/openai.js";
import { cases, forCases, type Gen } from "./helpers.js";

const PATHS = ["/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/embeddings", "/v2/other", ""];

function body(g: Gen): string {
  const valid = {
    model: g.pick(["m", "", 42, null, ["m"], { a: 1 }, "x".repeat(g.int(0, 5000))]),
    messages: g.pick([
      [{ role: "user", content: g.text(50) }],
      [],
      "hi",
      null,
      [{ role: 1, content: [{ type: "text", text: "x" }] }],
    ]),
    prompt: g.pick(["p", ["a", "b"], [1, 2, 3], null, undefined]),
    max_tokens: g.pick([16, -1, 1e20, "16", null, undefined, 0.5]),
    stream: g.pick([true, false, "yes", undefined]),
    input: g.pick([undefined, "text", [{ role: "user", content: "x" }]]),
  };
  const json = JSON.stringify(valid);
  switch (g.int(0, 4)) {
    case 0:
      return json;
    case 1:
      return g.mutate(json);
    case 2:
      return "[".repeat(g.int(1, 20000)) + "]".repeat(g.int(0, 20000));
    case 3:
      return g.text(500);
    default:
      return `{"model":"m","messages":[${Array(g.int(0, 300)).fill('{"role":"user","content":"x"}').join(",")}]}`;
  }
}

describe("fuzz: request bodies", () => {
  it("parses or rejects with a SwitchyardError, never anything else", async () => {
    await forCases("request body", cases(2000), (g) => {
      try {
        const parsed = parseRequest(Buffer.from(body(g)), g.pick(PATHS));
        expect(typeof parsed.model).toBe("string");
        expect(Number.isFinite(parsed.inputTokens)).toBe(true);
      } catch (err) {
        expect(err, String(err)).toBeInstanceOf(SwitchyardError);
      }
    });
  });
});
