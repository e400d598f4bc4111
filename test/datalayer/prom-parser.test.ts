import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parseFamilies, parseSampleValue, WantedSet } from "../../src/datalayer/prom-parser.js";

const fixture = (name: string) => readFileSync(new URL(`../fixtures/metrics/${name}`, import.meta.url), "utf8");

describe("parseFamilies", () => {
  it("reads only wanted families from a vLLM data-parallel exposition, one sample per engine", () => {
    const out = parseFamilies(
      fixture("vllm-dp.txt"),
      new Set(["vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"]),
    );
    expect([...out.keys()].sort()).toEqual(["vllm:kv_cache_usage_perc", "vllm:num_requests_waiting"]);
    expect(out.get("vllm:num_requests_waiting")).toEqual([
      { labels: { engine: "0", model_name: "meta-llama/Llama-3.1-8B-Instruct" }, value: 2 },
      { labels: { engine: "1", model_name: "meta-llama/Llama-3.1-8B-Instruct" }, value: 5 },
    ]);
    // The `_created` decoy line shares the prefix but is a different name.
    expect(out.get("vllm:kv_cache_usage_perc")?.map((s) => s.value)).toEqual([0.25, 0.625]);
  });

  it("never lets a wanted name match a longer name (x vs x_total, x_bucket, x_created)", () => {
    const text = ["x_total 1", 'x_bucket{le="1"} 2', "x_created 3", "xy 4", "x 5", 'x{a="b"} 6', "x\t7"].join("\n");
    const out = parseFamilies(text, ["x"]);
    expect(out.get("x")?.map((s) => s.value)).toEqual([5, 6, 7]);
    expect(
      parseFamilies(text, ["x_total"])
        .get("x_total")
        ?.map((s) => s.value),
    ).toEqual([1]);
    // Counter families: skipping `_created` means asking for the `_total` name only.
    const counters = parseFamilies(fixture("vllm-dp.txt"), ["vllm:num_preemptions_total"]);
    expect(counters.get("vllm:num_preemptions_total")).toHaveLength(2);
  });

  it("scans label values quote-aware: commas, braces, spaces, escapes", () => {
    const text =
      'm{a="x,y}z",b="with \\"quotes\\"",c="back\\\\slash",d="line\\nbreak",e="  spaced  ",f="odd\\tesc"} 1\n';
    const [sample] = parseFamilies(text, ["m"]).get("m") ?? [];
    expect(sample?.labels).toEqual({
      a: "x,y}z",
      b: 'with "quotes"',
      c: "back\\slash",
      d: "line\nbreak",
      e: "  spaced  ",
      f: "odd\\tesc",
    });
  });

  it("accepts trailing commas, blanks around tokens, colons in names, empty label sets and timestamps", () => {
    const text = ['a:b:c{x="1",} 1', '  a:b:c { x = "2" , y="3" , } 2 1700000000000', "a:b:c{} 3\r", "a:b:c 4 -5"].join(
      "\n",
    );
    const samples = parseFamilies(text, ["a:b:c"]).get("a:b:c") ?? [];
    expect(samples.map((s) => s.value)).toEqual([1, 2, 3, 4]);
    expect(samples[1]).toEqual({ labels: { x: "2", y: "3" }, value: 2, timestampMs: 1_700_000_000_000 });
    expect(samples[3]?.timestampMs).toBe(-5);
  });

  it("parses Go/Python float spellings and rejects non-numbers", () => {
    const text = ["v 3.0", "v 1.7e+09", "v NaN", "v +Inf", "v -Inf", "v -0.5", "v .5", "v 1e3"].join("\n");
    const values = parseFamilies(text, ["v"])
      .get("v")
      ?.map((s) => s.value);
    expect(values).toEqual([3, 1.7e9, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -0.5, 0.5, 1000]);
    for (const bad of ["", "abc", "0x10", "1_000", "1.2.3", "--1", "Inf1"]) {
      expect(parseSampleValue(bad), bad).toBeUndefined();
    }
  });

  it("skips garbage lines and keeps parsing", () => {
    const text = [
      "# TYPE g gauge",
      'g{a="1"} 1',
      "g{a=1} 2", // unquoted value
      'g{a="1" 3', // unterminated
      'g{a="1"}4', // no blank after "}" is fine (Go's parser agrees)
      "g", // no value
      "g{} ", // no value
      "g notanumber",
      "g 5 notatimestamp",
      "g 6 7 8",
      'g{1a="x"} 9', // bad label name
      'g{a="unterminated} 10',
      'g{a="x"\\} 11',
      "g-h 12",
      "\u0000\u0001 garbage",
      "g 13",
      "# EOF",
    ].join("\n");
    expect(
      parseFamilies(text, ["g"])
        .get("g")
        ?.map((s) => s.value),
    ).toEqual([1, 4, 13]);
  });

  it("treats a label named __proto__ as data", () => {
    const [sample] = parseFamilies('p{__proto__="x",constructor="y"} 1', ["p"]).get("p") ?? [];
    expect(Object.entries(sample?.labels ?? {})).toEqual([
      ["__proto__", "x"],
      ["constructor", "y"],
    ]);
    expect(Object.getPrototypeOf(sample?.labels)).toBeNull();
    expect(Object.getPrototypeOf({})).toBe(Object.prototype);
  });

  it("reads SGLang, trtllm-serve and Triton expositions", () => {
    expect(parseFamilies(fixture("sglang.txt"), ["sglang:token_usage"]).get("sglang:token_usage")?.[0]?.value).toBe(
      0.12,
    );
    expect(
      parseFamilies(fixture("trtllm-serve.txt"), ["trtllm_kv_cache_max_blocks"]).get("trtllm_kv_cache_max_blocks")?.[0]
        ?.value,
    ).toBe(4096);
    const triton = parseFamilies(fixture("triton-trtllm.txt"), ["nv_trt_llm_request_metrics"]);
    expect(triton.get("nv_trt_llm_request_metrics")?.map((s) => s.labels["request_type"])).toEqual([
      "context",
      "scheduled",
      "max",
      "active",
      "waiting",
    ]);
  });

  it("handles CRLF line endings and an empty wanted set", () => {
    const text = fixture("vllm-legacy.txt");
    expect(text.includes("\r\n")).toBe(true);
    const out = parseFamilies(text, ["vllm:gpu_cache_usage_perc", "vllm:num_requests_waiting"]);
    expect(out.get("vllm:gpu_cache_usage_perc")?.[0]?.value).toBe(0.4375);
    expect(out.get("vllm:num_requests_waiting")?.[0]?.timestampMs).toBe(1_730_984_219_641);
    expect(parseFamilies(text, new WantedSet([])).size).toBe(0);
  });

  it("never throws or hangs on random bytes, truncations and mutations (bounded fuzz)", () => {
    // Deterministic PRNG so a failure is reproducible.
    let seed = 0x2545f491;
    const rand = () => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) / 0x1_0000_0000;
    };
    const wanted = new WantedSet(["vllm:num_requests_waiting", "vllm:lora_requests_info", "g", "x"]);
    const alphabet = 'gx{}=",\\ \t\n\r#:_.e+-0123456789NaInf';
    const base = fixture("vllm-lora.txt") + fixture("vllm-dp.txt");
    let parsedSamples = 0;
    for (let round = 0; round < 3000; round++) {
      let text: string;
      const mode = round % 3;
      if (mode === 0) {
        // Random bytes, including invalid UTF-16 surrogates and NULs.
        const n = Math.floor(rand() * 200);
        text = Array.from({ length: n }, () => String.fromCharCode(Math.floor(rand() * 0x10000))).join("");
      } else if (mode === 1) {
        // Grammar-ish soup: many near-miss lines.
        const n = Math.floor(rand() * 200);
        text = Array.from({ length: n }, () => alphabet[Math.floor(rand() * alphabet.length)]).join("");
      } else {
        // A real exposition truncated at a random point, with a few random characters flipped.
        const chars = base.slice(0, Math.floor(rand() * base.length)).split("");
        for (let k = 0; k < 5 && chars.length > 0; k++) {
          chars[Math.floor(rand() * chars.length)] = alphabet[Math.floor(rand() * alphabet.length)]!;
        }
        text = chars.join("");
      }
      const out = parseFamilies(text, wanted);
      for (const [name, samples] of out) {
        expect(wanted.names.has(name)).toBe(true);
        for (const s of samples) expect(typeof s.value).toBe("number");
        parsedSamples += samples.length;
      }
    }
    // The truncation mode keeps most real lines intact; a parser that silently dropped everything would fail here.
    expect(parsedSamples).toBeGreaterThan(100);
  });
});
