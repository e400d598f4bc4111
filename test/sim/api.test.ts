import { afterEach, describe, expect, it } from "vitest";
import { type Simulator, startSimulator } from "../../src/sim/index.js";
import { closeAll, json, post, readSse, scrape, startSim, value, waitForQueue } from "./helpers.js";

afterEach(closeAll);

describe("OpenAI API shapes", () => {
  it("answers a non-streaming completion with usage and pod headers", async () => {
    const sim = await startSim({ podName: "pod-a", podNamespace: "ns-1", interTokenLatencyMs: 1 });
    const res = await post(sim, "/v1/completions", { model: "base", prompt: "x".repeat(40), max_tokens: 7 });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/json");
    expect(res.headers.get("x-inference-pod")).toBe("pod-a");
    expect(res.headers.get("x-inference-namespace")).toBe("ns-1");
    expect(res.headers.get("x-inference-port")).toBe(String(sim.port));
    const body = await json(res);
    expect(body.object).toBe("text_completion");
    expect(body.id).toMatch(/^cmpl-/);
    expect(body.model).toBe("base");
    expect(body.choices).toHaveLength(1);
    expect(body.choices[0].finish_reason).toBe("length");
    expect(body.choices[0].text.split(" ")).toHaveLength(7);
    expect(body.usage).toEqual({
      prompt_tokens: 10,
      completion_tokens: 7,
      total_tokens: 17,
      prompt_tokens_details: { cached_tokens: 0 },
    });
  });

  it("omits pod headers when no pod name is configured", async () => {
    const sim = await startSim({ interTokenLatencyMs: 1 });
    const res = await post(sim, "/v1/completions", { model: "base", prompt: "hello", max_tokens: 1 });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-inference-pod")).toBeNull();
    await res.text();
  });

  it("answers a non-streaming chat completion", async () => {
    const sim = await startSim({ servedModelNames: ["base", "alias"], interTokenLatencyMs: 1 });
    const res = await post(sim, "/v1/chat/completions", {
      model: "alias",
      messages: [
        { role: "system", content: "be brief" },
        { role: "user", content: [{ type: "text", text: "what is a router?" }] },
      ],
      max_completion_tokens: 4,
    });
    expect(res.status).toBe(200);
    const body = await json(res);
    expect(body.object).toBe("chat.completion");
    expect(body.id).toMatch(/^chatcmpl-/);
    expect(body.model).toBe("alias");
    expect(body.choices[0].message.role).toBe("assistant");
    expect(body.choices[0].message.content.split(" ")).toHaveLength(4);
    expect(body.usage.completion_tokens).toBe(4);
    expect(body.usage.prompt_tokens).toBeGreaterThan(0);
    expect(body.usage.total_tokens).toBe(body.usage.prompt_tokens + 4);
    expect(body.usage.prompt_tokens_details).toEqual({ cached_tokens: 0 });
  });

  it("streams chat chunks, a usage chunk with empty choices, then [DONE]", async () => {
    const sim = await startSim({ interTokenLatencyMs: 1 });
    const res = await post(sim, "/v1/chat/completions", {
      model: "base",
      messages: [{ role: "user", content: "stream please" }],
      max_tokens: 5,
      stream: true,
      stream_options: { include_usage: true },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const events = await readSse(res);
    expect(events.at(-1)).toBe("[DONE]");
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
    for (const c of chunks) {
      expect(c.object).toBe("chat.completion.chunk");
      expect(c.model).toBe("base");
      expect(c.id).toBe(chunks[0].id);
    }
    const usageChunk = chunks.at(-1);
    expect(usageChunk.choices).toEqual([]);
    expect(usageChunk.usage).toMatchObject({ completion_tokens: 5, total_tokens: usageChunk.usage.prompt_tokens + 5 });
    const content = chunks.slice(0, -1);
    expect(content[0].choices[0].delta).toEqual({ role: "assistant", content: "" });
    const tokens = content.slice(1);
    expect(tokens).toHaveLength(5);
    for (const c of content) expect(c.usage).toBeNull();
    expect(tokens.slice(0, -1).every((c) => c.choices[0].finish_reason === null)).toBe(true);
    expect(tokens.at(-1).choices[0].finish_reason).toBe("length");
    expect(tokens.every((c) => typeof c.choices[0].delta.content === "string")).toBe(true);
  });

  it("streams text_completion chunks with no usage at all unless asked", async () => {
    const sim = await startSim({ interTokenLatencyMs: 1 });
    const res = await post(sim, "/v1/completions", { model: "base", prompt: "once upon", max_tokens: 3, stream: true });
    const events = await readSse(res);
    expect(events).toHaveLength(4);
    expect(events.at(-1)).toBe("[DONE]");
    for (const e of events.slice(0, -1)) {
      const c = JSON.parse(e);
      expect(c.object).toBe("text_completion");
      expect("usage" in c).toBe(false);
      expect(typeof c.choices[0].text).toBe("string");
    }
  });

  it("puts usage on every chunk with continuous_usage_stats", async () => {
    const sim = await startSim({ interTokenLatencyMs: 1 });
    const res = await post(sim, "/v1/completions", {
      model: "base",
      prompt: "count",
      max_tokens: 3,
      stream: true,
      stream_options: { continuous_usage_stats: true },
    });
    const chunks = (await readSse(res)).slice(0, -1).map((e) => JSON.parse(e));
    expect(chunks.map((c) => c.usage.completion_tokens)).toEqual([1, 2, 3]);
  });

  it("lists the base model and LoRA adapters on /v1/models", async () => {
    const sim = await startSim({
      servedModelNames: ["base"],
      loraModules: '{"name":"sql","path":"/adapters/sql","base_model_name":"base"} {"name":"chat"}',
    });
    const body = await json(await fetch(`${sim.url}/v1/models`));
    expect(body.object).toBe("list");
    expect(body.data.map((m: { id: string }) => m.id)).toEqual(["base", "sql", "chat"]);
    expect(body.data[1]).toMatchObject({ object: "model", root: "/adapters/sql", parent: "base" });
    expect(body.data[0]).toMatchObject({ parent: null, max_model_len: 1024 });
  });

  it("serves /health", async () => {
    const sim = await startSim();
    const res = await fetch(`${sim.url}/health`);
    expect(res.status).toBe(200);
    await res.text();
  });
});

describe("errors", () => {
  it("answers an unknown model with an OpenAI-style 404", async () => {
    const sim = await startSim();
    const res = await post(sim, "/v1/chat/completions", { model: "nope", messages: [{ role: "user", content: "x" }] });
    expect(res.status).toBe(404);
    const body = await json(res);
    expect(body.error).toMatchObject({ type: "NotFoundError", code: 404, param: "model" });
    expect(body.error.message).toContain("nope");
  });

  it("answers bad JSON and invalid bodies with 400", async () => {
    const sim = await startSim();
    const bad = await post(sim, "/v1/completions", "{not json");
    expect(bad.status).toBe(400);
    expect((await json(bad)).error.type).toBe("BadRequestError");
    const noMessages = await post(sim, "/v1/chat/completions", { model: "base", messages: [] });
    expect(noMessages.status).toBe(400);
    expect((await json(noMessages)).error.param).toBe("messages");
    const badMax = await post(sim, "/v1/completions", { model: "base", prompt: "x", max_tokens: 0 });
    expect(badMax.status).toBe(400);
    expect((await json(badMax)).error.param).toBe("max_tokens");
    const tooLong = await post(sim, "/v1/completions", { model: "base", prompt: "x".repeat(4 * 1024) });
    expect(tooLong.status).toBe(400);
    expect((await json(tooLong)).error.message).toContain("maximum context length is 1024");
  });

  it("answers wrong methods with 405 and unknown paths with 404", async () => {
    const sim = await startSim();
    const get = await fetch(`${sim.url}/v1/completions`);
    expect(get.status).toBe(405);
    expect(get.headers.get("allow")).toBe("POST");
    await get.text();
    const missing = await fetch(`${sim.url}/v2/whatever`);
    expect(missing.status).toBe(404);
    await missing.text();
  });

  it("refuses a request larger than the KV cache instead of queueing it forever", async () => {
    const sim = await startSim({ kvCacheSize: 2, blockSize: 16 });
    const res = await post(sim, "/v1/completions", { model: "base", prompt: "x".repeat(200), max_tokens: 10 });
    expect(res.status).toBe(400);
    expect((await json(res)).error.message).toContain("KV cache blocks");
  });
});

describe("determinism and modes", () => {
  const ask = async (sim: Simulator, prompt: string, extra: Record<string, unknown> = {}): Promise<string> => {
    const res = await post(sim, "/v1/completions", { model: "base", prompt, max_tokens: 12, ...extra });
    return (await json(res)).choices[0].text;
  };

  it("produces the same text for the same seed and request order, different text for another seed", async () => {
    const a = await startSim({ seed: 42, interTokenLatencyMs: 0 });
    const b = await startSim({ seed: 42, interTokenLatencyMs: 0 });
    const c = await startSim({ seed: 43, interTokenLatencyMs: 0 });
    const fromA = [await ask(a, "one"), await ask(a, "two")];
    const fromB = [await ask(b, "one"), await ask(b, "two")];
    const fromC = [await ask(c, "one"), await ask(c, "two")];
    expect(fromA).toEqual(fromB);
    expect(fromA[0]).not.toBe(fromA[1]);
    expect(fromC).not.toEqual(fromA);
  });

  it("makes a request with its own seed independent of arrival order", async () => {
    const a = await startSim({ seed: 1, interTokenLatencyMs: 0 });
    const b = await startSim({ seed: 2, interTokenLatencyMs: 0 });
    await ask(b, "warm-up");
    expect(await ask(a, "same", { seed: 9 })).toBe(await ask(b, "same", { seed: 9 }));
  });

  it("echoes the last user message in echo mode", async () => {
    const sim = await startSim({ mode: "echo", interTokenLatencyMs: 0 });
    const res = await post(sim, "/v1/chat/completions", {
      model: "base",
      messages: [
        { role: "user", content: "first question" },
        { role: "assistant", content: "an answer" },
        { role: "user", content: "the last words here" },
      ],
    });
    const body = await json(res);
    expect(body.choices[0].message.content).toBe("the last words here");
    expect(body.choices[0].finish_reason).toBe("stop");
    expect(body.usage.completion_tokens).toBe(4);
  });
});

describe("fault injection", () => {
  it("fails every request at rate 100 with the chosen type", async () => {
    const sim = await startSim({ failureInjectionRate: 100, failureTypes: ["rate_limit"] });
    for (let i = 0; i < 3; i++) {
      const res = await post(sim, "/v1/completions", { model: "base", prompt: "x" });
      expect(res.status).toBe(429);
      expect((await json(res)).error.type).toBe("RateLimitError");
    }
  });

  it("draws only error statuses when every type is allowed", async () => {
    const sim = await startSim({ failureInjectionRate: 100 });
    for (let i = 0; i < 10; i++) {
      const res = await post(sim, "/v1/completions", { model: "base", prompt: "x" });
      expect([400, 401, 404, 429, 503]).toContain(res.status);
      expect((await json(res)).error.code).toBe(res.status);
    }
  });

  it("never answers at hang rate 100, and holds no engine resources", async () => {
    const sim = await startSim({ hangRate: 100 });
    let answered = false;
    const outcome = await post(sim, "/v1/completions", { model: "base", prompt: "x" }, AbortSignal.timeout(300)).then(
      () => {
        answered = true;
        return "answered";
      },
      (err: Error) => err.name,
    );
    expect(answered).toBe(false);
    expect(outcome).toBe("TimeoutError");
    const metrics = await scrape(sim);
    expect(value(metrics, "vllm:num_requests_running")).toBe(0);
    expect(value(metrics, "vllm:num_requests_waiting")).toBe(0);
  });

  it("closes cleanly while a hung request is open", async () => {
    const sim = await startSim({ hangRate: 100 });
    const pending = post(sim, "/v1/completions", { model: "base", prompt: "x" }).then(
      () => "answered",
      () => "failed",
    );
    await new Promise((r) => setTimeout(r, 50));
    await sim.close();
    expect(await pending).toBe("failed");
  });

  it("delays /metrics by --metrics-delay without blocking completions", async () => {
    const sim = await startSim({ metricsDelayMs: 10_000, interTokenLatencyMs: 0 });
    const slow = fetch(`${sim.url}/metrics`, { signal: AbortSignal.timeout(200) }).then(
      () => "answered",
      (err: Error) => err.name,
    );
    const res = await post(sim, "/v1/completions", { model: "base", prompt: "x", max_tokens: 2 });
    expect(res.status).toBe(200);
    await res.text();
    expect(await slow).toBe("TimeoutError");
  });
});

describe("many simulators in one process", () => {
  it("runs pods on one port across different loopback addresses", async () => {
    let sims: Simulator[] = [];
    for (let attempt = 0; attempt < 10 && sims.length === 0; attempt++) {
      const port = 20_000 + Math.floor(Math.random() * 40_000);
      const first = 2 + Math.floor(Math.random() * 240);
      const started: Simulator[] = [];
      try {
        for (let i = 0; i < 3; i++) {
          const host = `127.0.1.${first + i}`;
          started.push(await startSimulator({ model: "base", host, port, podName: `pod-${i}` }));
        }
        sims = started;
      } catch (err) {
        await Promise.all(started.map((s) => s.close()));
        if ((err as NodeJS.ErrnoException).code !== "EADDRINUSE") throw err;
      }
    }
    try {
      expect(sims).toHaveLength(3);
      expect(new Set(sims.map((s) => s.port)).size).toBe(1);
      const pods = await Promise.all(
        sims.map(async (s) => {
          const res = await post(s, "/v1/completions", { model: "base", prompt: "x", max_tokens: 1 });
          await res.text();
          return res.headers.get("x-inference-pod");
        }),
      );
      expect(pods).toEqual(["pod-0", "pod-1", "pod-2"]);
      await waitForQueue(sims[0]!, 0, 0);
    } finally {
      await Promise.all(sims.map((s) => s.close()));
    }
  });
});
