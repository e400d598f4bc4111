import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { joinMultiValueFlags, parseSimArgs, SIM_FLAGS } from "../../src/cli/sim.js";
import { ConfigError } from "../../src/common/errors.js";
import { KvCache, parseLoraModules, resolveSimOptions, SIM_DEFAULTS } from "../../src/sim/index.js";
import { hashChunk, Rng } from "../../src/sim/random.js";

describe("KvCache", () => {
  it("reuses a cached prefix, shares blocks by reference and frees them into the LRU", () => {
    const kv = new KvCache(8, 16, true);
    const a: number[] = [];
    expect(kv.tryAllocate([1, 2, 3], 3, 4, a)).toBe(0);
    expect(kv.usedBlocks).toBe(4);
    kv.commit([1, 2, 3], a);
    const b: number[] = [];
    expect(kv.tryAllocate([1, 2, 9], 3, 4, b)).toBe(2);
    expect(b.slice(0, 2)).toEqual(a.slice(0, 2));
    expect(kv.usedBlocks).toBe(6);
    kv.free(a);
    expect(kv.usedBlocks).toBe(4); // blocks 0 and 1 are still held by b
    kv.free(b);
    expect(kv.usedBlocks).toBe(0);
    expect(kv.cachedBlocks).toBe(3);
    expect(kv.matchPrefix([1, 2, 3], 3)).toBe(3);
  });

  it("refuses without side effects when blocks do not fit, counting cached-free hits as taken", () => {
    const kv = new KvCache(4, 16, true);
    const a: number[] = [];
    kv.tryAllocate([1, 2], 2, 2, a);
    kv.commit([1, 2], a);
    kv.free(a);
    const out: number[] = [];
    // 2 hits (free, cached) + 3 new = 5 > 4 blocks.
    expect(kv.tryAllocate([1, 2], 2, 5, out)).toBe(-1);
    expect(out).toEqual([]);
    expect(kv.usedBlocks).toBe(0);
    expect(kv.cachedBlocks).toBe(2);
  });

  it("takes never-hashed blocks before evicting cached ones, then evicts oldest first", () => {
    const kv = new KvCache(3, 16, true);
    const a: number[] = [];
    kv.tryAllocate([10], 1, 1, a);
    kv.commit([10], a);
    kv.free(a);
    const b: number[] = [];
    kv.tryAllocate([20], 1, 1, b);
    kv.commit([20], b);
    kv.free(b);
    const c: number[] = [];
    kv.tryAllocate([], 0, 1, c); // the one never-hashed block
    expect(kv.cachedBlocks).toBe(2);
    const d: number[] = [];
    kv.tryAllocate([], 0, 1, d); // must evict: 10 is older than 20
    expect(kv.matchPrefix([10], 1)).toBe(0);
    expect(kv.matchPrefix([20], 1)).toBe(1);
    expect(kv.allocOne()).not.toBe(-1);
    expect(kv.allocOne()).toBe(-1);
  });

  it("never hits when prefix caching is off", () => {
    const kv = new KvCache(4, 16, false);
    const a: number[] = [];
    kv.tryAllocate([1], 1, 1, a);
    kv.commit([1], a);
    kv.free(a);
    expect(kv.matchPrefix([1], 1)).toBe(0);
  });
});

describe("seeded randomness", () => {
  it("repeats for a seed and differs across seeds", () => {
    const draw = (seed: number): number[] => {
      const r = new Rng(seed);
      return [r.nextU32(), r.nextU32(), r.nextU32()];
    };
    expect(draw(5)).toEqual(draw(5));
    expect(draw(5)).not.toEqual(draw(6));
    const r = new Rng(1);
    for (let i = 0; i < 1000; i++) {
      const v = r.next();
      expect(v >= 0 && v < 1).toBe(true);
    }
  });

  it("chains block hashes on the parent", () => {
    expect(hashChunk("abcd", 0, 4, 1)).toBe(hashChunk("xxabcd", 2, 6, 1));
    expect(hashChunk("abcd", 0, 4, 1)).not.toBe(hashChunk("abcd", 0, 4, 2));
    expect(Number.isSafeInteger(hashChunk("abcd", 0, 4, 2 ** 52))).toBe(true);
  });
});

describe("options", () => {
  it("parses llm-d JSON modules, name=path pairs and plain lists", () => {
    expect(parseLoraModules('{"name":"a","path":"/p/a","base_model_name":"m"} {"name":"b"}')).toEqual([
      { name: "a", path: "/p/a", base_model_name: "m" },
      { name: "b" },
    ]);
    expect(parseLoraModules("x, y z")).toEqual([{ name: "x" }, { name: "y" }, { name: "z" }]);
    expect(parseLoraModules("s=/adapters/s")).toEqual([{ name: "s", path: "/adapters/s" }]);
    expect(parseLoraModules('{"name":"br}ace"}')).toEqual([{ name: "br}ace" }]);
    expect(() => parseLoraModules('{"name":"a"')).toThrow(/unterminated/);
    expect(() => parseLoraModules('{"path":"/x"}')).toThrow(/name/);
  });

  it("fills defaults and rejects bad values with the option and flag named", () => {
    const o = resolveSimOptions({ model: "m", seed: 3 });
    expect(o.servedModelNames).toEqual(["m"]);
    expect(o.maxNumSeqs).toBe(SIM_DEFAULTS.maxNumSeqs);
    expect(o.maxCpuLoras).toBe(o.maxLoras);
    expect(Object.isFrozen(o)).toBe(true);
    const bad = (extra: object, pattern: RegExp): void => {
      let caught: unknown;
      try {
        resolveSimOptions({ model: "m", ...extra });
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(ConfigError);
      expect((caught as Error).message).toMatch(pattern);
    };
    bad({ maxNumSeqs: 0 }, /maxNumSeqs \(--max-num-seqs\): must be between 1/);
    bad({ hangRate: 101 }, /--hang-rate/);
    bad({ speed: 0 }, /speed \(--speed\): must be > 0/);
    bad({ timeFactorUnderLoad: 0.5 }, /--time-factor-under-load/);
    bad({ mode: "chaos" }, /--mode/);
    bad({ failureTypes: ["meteor"] }, /unknown type "meteor"/);
    bad({ loraModules: "m" }, /duplicate model name "m"/);
    bad({ model: "" }, /model/);
    bad({ maxLoras: 2, maxCpuLoras: 1 }, /maxCpuLoras/);
  });
});

describe("CLI flags", () => {
  it("lists every flag with its default in --help", () => {
    for (const [name, spec] of Object.entries(SIM_FLAGS)) {
      expect(spec.help.length, name).toBeGreaterThan(0);
    }
    expect(Object.keys(SIM_FLAGS)).toEqual(
      expect.arrayContaining([
        "port",
        "host",
        "model",
        "served-model-name",
        "lora-modules",
        "max-loras",
        "max-cpu-loras",
        "max-model-len",
        "max-num-seqs",
        "max-waiting-queue-length",
        "mode",
        "seed",
        "time-to-first-token",
        "inter-token-latency",
        "prefill-overhead",
        "prefill-time-per-token",
        "time-factor-under-load",
        "kv-cache-size",
        "block-size",
        "enable-kvcache",
        "failure-injection-rate",
        "failure-types",
        "metrics-delay",
        "hang-rate",
        "kv-cache-metric-name",
        "speed",
      ]),
    );
  });

  it("joins llm-d's multi-value flags", () => {
    expect(joinMultiValueFlags(["--lora-modules", '{"name":"a"}', '{"name":"b"}', "--port", "1"])).toEqual([
      "--lora-modules",
      '{"name":"a"} {"name":"b"}',
      "--port",
      "1",
    ]);
  });

  it("maps flags, Go durations and the environment onto options", () => {
    const { options, logLevel } = parseSimArgs(
      [
        "--served-model-name",
        "x",
        "y",
        "--inter-token-latency=20ms",
        "--prefill-time-per-token",
        "0.5ms",
        "--lora-modules",
        "a,b",
        "--enable-prefix-caching=false",
        "--seed",
        "7",
        "--log-level",
        "warn",
      ],
      { SIM_MODEL: "env-model", POD_NAME: "pod-1" },
    );
    expect(logLevel).toBe("warn");
    expect(options).toMatchObject({
      model: "env-model",
      servedModelNames: ["x", "y"],
      interTokenLatencyMs: 20,
      prefillTimePerTokenMs: 0.5,
      loraModules: "a,b",
      enablePrefixCaching: false,
      seed: 7,
      podName: "pod-1",
    });
    expect(() => parseSimArgs([], {})).toThrow(/--model: is required/);
    expect(() => parseSimArgs(["--model", "m", "--mode", "x"], {})).toThrow(/--mode/);
    expect(() => parseSimArgs(["--model", "m", "stray"], {})).toThrow(/unexpected argument/);
  });

  it("reads a YAML config with flag names as keys, flags winning", () => {
    const dir = mkdtempSync(join(tmpdir(), "sim-config-"));
    const file = join(dir, "sim.yaml");
    writeFileSync(
      file,
      [
        "model: from-file",
        "max-num-seqs: 9",
        "inter-token-latency: 15ms",
        "lora-modules:",
        '  - {"name": "a", "path": "/a"}',
        "  - name: b",
        "failure-types: [rate_limit, server_error]",
      ].join("\n"),
    );
    const { options } = parseSimArgs(["--config", file, "--max-num-seqs", "3"], {});
    expect(options).toMatchObject({
      model: "from-file",
      maxNumSeqs: 3,
      interTokenLatencyMs: 15,
      failureTypes: ["rate_limit", "server_error"],
    });
    expect(resolveSimOptions(options).loraModules).toEqual([{ name: "a", path: "/a" }, { name: "b" }]);
    writeFileSync(file, "bogus: 1\n");
    expect(() => parseSimArgs(["--config", file], {})).toThrow(/bogus: unknown key/);
  });
});
