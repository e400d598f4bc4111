/**
 * The endpoints peer routers call on a model server before or instead of routing by metrics: vLLM's /tokenize,
 * /detokenize and render endpoints (vllm-router's cache_aware), SGLang's info and load endpoints (sglang-router,
 * vllm-router's power_of_two). Shapes are checked against a real vLLM 0.32 capture
 * (test/fixtures/vllm-0.32-tokenizer/exchanges.json); token counts and ids against the simulator's own engine.
 */
import { readFileSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { closeAll, type Json, json, post, readSse, startSim } from "./helpers.js";

afterEach(closeAll);

interface Exchange {
  readonly path: string;
  readonly request: Json;
  readonly status: number;
  readonly response: Json;
}
const REAL: readonly Exchange[] = (
  JSON.parse(readFileSync(new URL("../fixtures/vllm-0.32-tokenizer/exchanges.json", import.meta.url), "utf8")) as {
    exchanges: Exchange[];
  }
).exchanges;
const real = (path: string, pick: (e: Exchange) => boolean = () => true): Exchange => {
  const e = REAL.find((x) => x.path === path && x.status === 200 && pick(x));
  if (e === undefined) throw new Error(`no capture for ${path}`);
  return e;
};
const keysOf = (o: Json): string[] => Object.keys(o).sort();

const MESSAGES = [
  { role: "system", content: "You are a terse assistant who answers in one line." },
  { role: "user", content: "Name three prime numbers and say why each one is prime." },
];

describe("vLLM tokenizer endpoints", () => {
  it("counts the tokens a completion is billed for, with ids that share a prefix exactly as far as the text", async () => {
    const sim = await startSim({ model: "base", maxModelLen: 4096 });
    const prompt = "The quick brown fox jumps over the lazy dog, again and again and again.";
    const tok = await json(await post(sim, "/tokenize", { model: "base", prompt }));
    expect(keysOf(tok)).toEqual(keysOf(real("/tokenize").response));
    expect(tok.max_model_len).toBe(4096);
    expect(tok.token_strs).toBeNull();
    const done = await json(await post(sim, "/v1/completions", { model: "base", prompt, max_tokens: 1 }));
    expect(tok.count).toBe(done.usage.prompt_tokens);
    expect(tok.tokens).toHaveLength(tok.count);

    // 40 shared characters = 10 shared tokens; the next token differs.
    const other = await json(await post(sim, "/tokenize", { prompt: `${prompt.slice(0, 40)}a different ending` }));
    expect(other.tokens.slice(0, 10)).toEqual(tok.tokens.slice(0, 10));
    expect(other.tokens[10]).not.toBe(tok.tokens[10]);
    for (const id of [...tok.tokens, ...other.tokens]) {
      expect(Number.isInteger(id)).toBe(true);
      expect(id).toBeGreaterThanOrEqual(256);
      expect(id).toBeLessThan(2 ** 31);
    }
  });

  it("renders chat messages the way /v1/chat/completions bills them, with or without the generation prompt", async () => {
    const sim = await startSim();
    const tok = await json(await post(sim, "/tokenize", { model: "base", messages: MESSAGES }));
    const done = await json(
      await post(sim, "/v1/chat/completions", { model: "base", messages: MESSAGES, max_tokens: 1 }),
    );
    expect(tok.count).toBe(done.usage.prompt_tokens);
    const bare = await json(
      await post(sim, "/tokenize", { model: "base", messages: MESSAGES, add_generation_prompt: false }),
    );
    expect(bare.count).toBeLessThan(tok.count);
    const strs = await json(await post(sim, "/tokenize", { prompt: "hello there", return_token_strs: true }));
    expect(strs.token_strs.join("")).toBe("hello there");
  });

  it("detokenizes the ids it produced back to the text", async () => {
    const sim = await startSim();
    const prompt = "Routers send back the ids they were given.";
    const tok = await json(await post(sim, "/tokenize", { prompt }));
    const de = await json(await post(sim, "/detokenize", { model: "base", tokens: tok.tokens }));
    expect(keysOf(de)).toEqual(keysOf(real("/detokenize").response));
    expect(de.prompt).toBe(prompt);
    expect((await post(sim, "/detokenize", { tokens: [-1] })).status).toBe(400);
  });

  it("answers /v1/chat/completions/render with vLLM 0.32's GenerateRequest, ids equal to /tokenize's", async () => {
    const sim = await startSim();
    const captured = real("/v1/chat/completions/render", (e) => e.request.stream === true);
    const body = { ...captured.request, model: "base", messages: MESSAGES };
    const res = await post(sim, "/v1/chat/completions/render", body);
    expect(res.status).toBe(200);
    const out = await json(res);
    expect(keysOf(out)).toEqual(keysOf(captured.response));
    expect(keysOf(out.sampling_params)).toEqual(keysOf(captured.response.sampling_params));
    expect(out.sampling_params).toMatchObject({ ignore_eos: true, max_tokens: 5, output_kind: 1 });
    expect(out.stream_options).toEqual(captured.response.stream_options);
    expect(out.cache_salt).toBe("abc");
    expect(out.model).toBe("base");
    const tok = await json(await post(sim, "/tokenize", { messages: MESSAGES }));
    expect(out.token_ids).toEqual(tok.tokens);

    const plain = await json(
      await post(sim, "/v1/chat/completions/render", { model: "base", messages: MESSAGES, max_tokens: 3 }),
    );
    const capturedPlain = real("/v1/chat/completions/render", (e) => e.request.stream === false);
    expect(keysOf(plain.sampling_params)).toEqual(keysOf(capturedPlain.response.sampling_params));
    expect(plain.sampling_params.output_kind).toBe(2);
    expect(plain.stream_options).toBeNull();
  });

  it("answers /v1/completions/render with a list, one request per prompt", async () => {
    const sim = await startSim();
    const out = await json(await post(sim, "/v1/completions/render", { model: "base", prompt: "hello there" }));
    expect(Array.isArray(out)).toBe(true);
    expect(keysOf(out[0])).toEqual(keysOf(real("/v1/completions/render").response[0]));
    expect(out[0].token_ids).toEqual((await json(await post(sim, "/tokenize", { prompt: "hello there" }))).tokens);
  });

  it("refuses unknown models, bad bodies and wrong methods like vLLM", async () => {
    const sim = await startSim({ loraModules: ["ad"] });
    const nf = await post(sim, "/tokenize", { model: "nope", prompt: "x" });
    expect(nf.status).toBe(404);
    const err = await json(nf);
    expect(keysOf(err.error)).toEqual(keysOf(REAL.find((e) => e.status === 404)!.response.error));
    expect(err.error.param).toBe("model");
    expect((await post(sim, "/tokenize", { model: "ad", prompt: "x" })).status).toBe(200);
    expect((await post(sim, "/v1/chat/completions/render", { model: "nope", messages: MESSAGES })).status).toBe(404);
    expect((await post(sim, "/v1/chat/completions/render", { model: "base", messages: [] })).status).toBe(400);
    expect((await post(sim, "/tokenize", { model: "base" })).status).toBe(400);
    expect((await fetch(`${sim.url}/tokenize`)).status).toBe(405);
  });
});

describe("SGLang server endpoints", () => {
  it("describes the model and server from the simulator's options", async () => {
    const sim = await startSim({ model: "base", blockSize: 32, kvCacheSize: 100, maxNumSeqs: 6, maxModelLen: 2048 });
    for (const path of ["/get_model_info", "/model_info"]) {
      const info = await json(await fetch(`${sim.url}${path}`));
      expect(info).toMatchObject({ model_path: "base", tokenizer_path: "base", is_generation: true });
    }
    for (const path of ["/get_server_info", "/server_info"]) {
      const info = await json(await fetch(`${sim.url}${path}`));
      expect(info).toMatchObject({
        model_path: "base",
        served_model_name: "base",
        page_size: 32,
        max_total_num_tokens: 3200,
        max_running_requests: 6,
        context_length: 2048,
        dp_size: 1,
      });
    }
  });

  it("reports its load on /get_load while a request runs, and none after", async () => {
    const sim = await startSim({ interTokenLatencyMs: 20 });
    const idle = await json(await fetch(`${sim.url}/get_load`));
    expect(idle).toMatchObject({ load: 0, num_running_reqs: 0, num_waiting_reqs: 0 });
    const ac = new AbortController();
    const res = await post(
      sim,
      "/v1/completions",
      { model: "base", prompt: "count slowly", max_tokens: 10_000, stream: true },
      ac.signal,
    );
    const reader = res.body!.getReader();
    await reader.read(); // the first token: the request is in the batch
    const busy = await json(await fetch(`${sim.url}/get_load`));
    expect(busy).toMatchObject({ load: 1, num_reqs: 1, num_running_reqs: 1 });
    expect(busy.num_tokens).toBeGreaterThan(0);
    ac.abort();
    await reader.cancel().catch(() => {});
  });
});

describe("endpoint hit counts", () => {
  it("counts every path a client called, on GET /sim/endpoint-hits and on the handle", async () => {
    const sim = await startSim();
    await post(sim, "/tokenize", { prompt: "a" });
    await post(sim, "/tokenize", { prompt: "b" });
    await post(sim, "/v1/chat/completions/render", { model: "base", messages: MESSAGES });
    await fetch(`${sim.url}/get_load`);
    const hits = await json(await fetch(`${sim.url}/sim/endpoint-hits`));
    expect(hits).toMatchObject({ "/tokenize": 2, "/v1/chat/completions/render": 1, "/get_load": 1 });
    expect(sim.endpointHits()["/sim/endpoint-hits"]).toBe(1);
  });
});

describe("--stream-batch-tokens", () => {
  it("sends the same events, one per token, however many leave per write", async () => {
    const body = { model: "base", prompt: "same seed", max_tokens: 23, stream: true, seed: 7 };
    const one = await startSim({ interTokenLatencyMs: 1 });
    const eight = await startSim({ interTokenLatencyMs: 1, streamBatchTokens: 8 });
    const a = await readSse(await post(one, "/v1/completions", body));
    const b = await readSse(await post(eight, "/v1/completions", body));
    const strip = (events: string[]) => events.map((e) => e.replace(/"id":"[^"]*","object":"[^"]*","created":\d+/, ""));
    expect(strip(b)).toEqual(strip(a));
    expect(b).toHaveLength(24); // 23 tokens + [DONE]
  });
});
