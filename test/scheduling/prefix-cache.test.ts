import { describe, expect, it } from "vitest";
import type { Endpoint } from "../../src/datastore/types.js";
import { loadPickerConfig } from "../../src/scheduling/config.js";
import {
  type PrefixCacheScorer,
  PrefixIndex,
  prefixBlockHashes,
  prefixCacheScorerFactory,
} from "../../src/scheduling/plugins/prefix-cache.js";
import { createScheduler } from "../../src/scheduling/scheduler.js";
import { endpoint, metrics, request, TestClock, testHandle } from "./helpers.js";

const yaml = (body: string): string =>
  `apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n${body}`;

/** Deterministic pseudo-text so blocks differ from each other. */
function text(seed: number, chars: number): string {
  let out = "";
  let x = seed;
  while (out.length < chars) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out += String.fromCharCode(97 + (x % 26));
  }
  return out;
}

describe("prefixBlockHashes", () => {
  it("hashes full 64-character blocks only, chained and model-scoped", () => {
    expect(prefixBlockHashes("x".repeat(63), "m", 64, 64 * 256)).toEqual([]);
    const t = text(1, 64 * 3 + 10);
    const h = prefixBlockHashes(t, "m", 64, 64 * 256);
    expect(h).toHaveLength(3);
    for (const v of h) expect(Number.isSafeInteger(v) && v >= 0).toBe(true);
    expect(prefixBlockHashes(t, "m", 64, 64 * 256)).toEqual(h);
    // Another model: nothing shared (h0 seeds the chain).
    const other = prefixBlockHashes(t, "m2", 64, 64 * 256);
    expect(other.some((v) => h.includes(v))).toBe(false);
    // Chained: the same block content after a different first block hashes differently.
    const block = text(2, 64);
    const x = prefixBlockHashes(`${text(3, 64)}${block}`, "m", 64, 1e9);
    const y = prefixBlockHashes(`${text(4, 64)}${block}`, "m", 64, 1e9);
    expect(x[1]).not.toBe(y[1]);
    // Truncated to maxChars.
    expect(prefixBlockHashes(t, "m", 64, 128)).toEqual(h.slice(0, 2));
  });

  it("changes with a one-character edit inside a block, and only from that block on", () => {
    const t = text(5, 64 * 4);
    const edited = `${t.slice(0, 130)}#${t.slice(131)}`; // inside block 2
    const a = prefixBlockHashes(t, "m", 64, 1e9);
    const b = prefixBlockHashes(edited, "m", 64, 1e9);
    expect(b.slice(0, 2)).toEqual(a.slice(0, 2));
    expect(b[2]).not.toBe(a[2]);
    expect(b[3]).not.toBe(a[3]);
  });
});

describe("PrefixIndex", () => {
  it("counts the leading run an endpoint holds and evicts trailing blocks first", () => {
    const idx = new PrefixIndex();
    idx.insert("a", [1, 2, 3, 4], 100);
    expect(idx.matchLength("a", [1, 2, 3, 4])).toBe(4);
    expect(idx.matchLength("a", [1, 2, 9, 4])).toBe(2);
    expect(idx.matchLength("a", [9, 2, 3])).toBe(0);
    expect(idx.matchLength("b", [1])).toBe(0);
    // Capacity 3: the last block of the request goes first, the prefix survives.
    idx.insert("b", [10, 11, 12, 13], 3);
    expect(idx.matchLength("b", [10, 11, 12, 13])).toBe(3);
    expect(idx.size).toBe(7);
    // Re-inserting a newer request refreshes its leading blocks; older entries are evicted first.
    idx.insert("b", [20, 21], 3);
    expect(idx.matchLength("b", [20, 21])).toBe(2);
    expect(idx.matchLength("b", [10])).toBe(1);
    expect(idx.matchLength("b", [10, 11])).toBe(1);
    expect(idx.size).toBe(7);
    idx.remove("a");
    expect(idx.size).toBe(3);
    expect(idx.endpointCount).toBe(1);
    idx.retainOnly(new Set(["zzz"]));
    expect(idx.size).toBe(0);
  });
});

describe("prefix-cache-scorer", () => {
  const prefixConfig = () =>
    loadPickerConfig({
      text: yaml(`plugins:
  - type: queue-scorer
  - type: prefix-cache-scorer
schedulingProfiles:
  - name: p
    plugins:
      - pluginRef: queue-scorer
      - pluginRef: prefix-cache-scorer
        weight: 3
`),
    });

  it("scores the chosen endpoint 1.0 for the very next request with the same prefix (synchronous insert)", () => {
    const clock = new TestClock();
    const s = createScheduler(prefixConfig(), testHandle(clock, 3));
    const eps = ["10.0.0.1", "10.0.0.2", "10.0.0.3"].map((a) => endpoint(a, metrics({}, clock.t)));
    const shared = text(7, 64 * 10);
    const first = request({ prefixText: `${shared}first question` });
    const r1 = s.schedule(first, eps);
    expect(r1.breakdown.every((b) => b.scores["prefix-cache-scorer"] === 0)).toBe(true);
    s.preRequest(first, r1.endpoints);
    const chosen = r1.endpoints[0]!;

    // No await, no tick in between: the second request already sees the hit.
    const second = request({ prefixText: `${shared}second question, different tail` });
    const r2 = s.schedule(second, eps);
    const byKey = Object.fromEntries(r2.breakdown.map((b) => [b.endpoint, b.scores["prefix-cache-scorer"]]));
    expect(byKey[chosen.key]).toBe(1);
    for (const e of eps) if (e !== chosen) expect(byKey[e.key]).toBe(0);
    expect(r2.endpoints).toEqual([chosen]);
  });

  it("reports each cycle's best prefix match to the scheduler's observer, from inside the scheduler", () => {
    const clock = new TestClock();
    const matches: [number, number][] = [];
    const s = createScheduler(prefixConfig(), testHandle(clock, 3), {
      observer: { prefixMatch: (ratio, bytes) => matches.push([ratio, bytes]) },
    });
    const eps = ["10.0.0.1", "10.0.0.2"].map((a) => endpoint(a, metrics({}, clock.t)));
    // 640 shared characters = 10 blocks of the default 64 (16 tokens × 4 characters, no block size scraped).
    const shared = text(7, 64 * 10);
    const first = request({ prefixText: `${shared}first question` });
    s.preRequest(first, s.schedule(first, eps).endpoints);
    const second = request({ prefixText: `${shared}second question, different tail` });
    s.schedule(second, eps);
    s.schedule(request({ prefixText: "" }), eps); // nothing to hash: not reported
    expect(matches).toEqual([
      [0, 0],
      [1, 640],
    ]);
  });

  it("scores a partial prefix as matched blocks / total blocks", () => {
    const clock = new TestClock();
    const handle = testHandle(clock);
    const scorer = prefixCacheScorerFactory("prefix", { autoTune: false }, handle) as PrefixCacheScorer;
    const a = endpoint("10.0.1.1");
    const b = endpoint("10.0.1.2");
    const base = text(11, 64 * 4);
    scorer.preRequest(request({ prefixText: base }), [a, b]); // inserted into the primary only
    const half = `${base.slice(0, 128)}${text(12, 128)}`;
    expect(Array.from(scorer.score(new Map(), request({ prefixText: half }), [a, b]))).toEqual([0.5, 0]);
    // Different target model: no hit.
    expect(Array.from(scorer.score(new Map(), request({ prefixText: base, targetModel: "x" }), [a]))).toEqual([0]);
  });

  it("auto-tunes the block size from the endpoint's cache block size", () => {
    const clock = new TestClock();
    const handle = testHandle(clock);
    const scorer = prefixCacheScorerFactory("prefix", undefined, handle) as PrefixCacheScorer;
    const e = endpoint("10.0.2.1", metrics({ cacheBlockSize: 32, cacheNumBlocks: 1000 }, clock.t));
    // 32 tokens × 4 chars = 128-character blocks: 300 chars → 2 blocks.
    expect(scorer.hashesFor(request({ prefixText: text(1, 300) }), [e])).toHaveLength(2);
    const fixed = prefixCacheScorerFactory("p2", { autoTune: false, blockSizeTokens: 8 }, handle) as PrefixCacheScorer;
    expect(fixed.hashesFor(request({ prefixText: text(1, 300) }), [e])).toHaveLength(9);
    const capped = prefixCacheScorerFactory(
      "p3",
      { maxPrefixBlocksToMatch: 2, autoTune: false },
      handle,
    ) as PrefixCacheScorer;
    expect(capped.hashesFor(request({ prefixText: text(1, 1000) }), [e])).toHaveLength(2);
  });

  it("forgets endpoints: explicitly, and by the periodic purge against the handle's endpoint list", () => {
    const clock = new TestClock();
    let live: Endpoint[] = [];
    const handle = testHandle(clock, 1, () => live);
    const config = prefixConfig();
    const s = createScheduler(config, handle);
    const scorer = handle.plugin("prefix-cache-scorer") as PrefixCacheScorer;
    const a = endpoint("10.0.3.1");
    const b = endpoint("10.0.3.2");
    live = [a, b];
    const req = request({ prefixText: text(21, 256) });
    s.preRequest(req, [a]);
    s.preRequest(request({ prefixText: text(22, 256) }), [b]);
    expect(scorer.index.endpointCount).toBe(2);
    s.endpointRemoved(a.key);
    expect(scorer.index.has(a.key)).toBe(false);
    expect(scorer.index.has(b.key)).toBe(true);

    live = [a];
    s.preRequest(request({ prefixText: text(23, 256) }), [a]);
    expect(scorer.index.has(b.key)).toBe(true); // purge runs at most every 2 minutes
    clock.t += 120_000;
    s.preRequest(request({ prefixText: text(24, 256) }), [a]);
    expect(scorer.index.has(b.key)).toBe(false);
    expect(scorer.index.has(a.key)).toBe(true);
  });

  it("validates parameters like GIE", () => {
    const handle = testHandle(new TestClock());
    expect(() => prefixCacheScorerFactory("p", { blockSize: 64 }, handle)).toThrow(
      "parameters.blockSize: is deprecated (characters); set blockSizeTokens instead",
    );
    expect(() => prefixCacheScorerFactory("p", { lruCapacityPerServer: -1 }, handle)).toThrow(
      "parameters.lruCapacityPerServer: must be an integer >= 1, got -1",
    );
    expect(() => prefixCacheScorerFactory("p", { blockSizeToken: 16 }, handle)).toThrow(
      /parameters\.blockSizeToken: unknown parameter \(known: .*blockSizeTokens/,
    );
    const v10 = prefixCacheScorerFactory("p", { hashBlockSize: 32 }, handle) as PrefixCacheScorer;
    expect(v10.params.blockChars).toBe(32);
    const both = prefixCacheScorerFactory("p", { blockSize: 64, blockSizeTokens: 4 }, handle) as PrefixCacheScorer;
    expect(both.params.blockChars).toBe(16);
  });
});

describe("prefix-cache-affinity-filter", () => {
  it("keeps endpoints at or above the affinity threshold, else everyone", () => {
    const config = loadPickerConfig({
      text: yaml(`plugins:
  - type: prefix-cache-affinity-filter
    parameters:
      explorationProbability: 0
  - type: prefix-cache-scorer
    parameters:
      autoTune: false
schedulingProfiles:
  - name: p
    plugins:
      - pluginRef: prefix-cache-affinity-filter
      - pluginRef: prefix-cache-scorer
`),
    });
    const s = createScheduler(config, testHandle(new TestClock(), 5));
    const eps = ["10.0.4.1", "10.0.4.2", "10.0.4.3"].map((a) => endpoint(a));
    const t = text(31, 64 * 5);
    s.preRequest(request({ prefixText: t }), [eps[1]!]);
    const hit = s.schedule(request({ prefixText: t }), eps);
    expect(hit.endpoints).toEqual([eps[1]]);
    expect(hit.rejected.map((r) => r.endpoint)).toEqual([eps[0]!.key, eps[2]!.key]);
    const cold = s.schedule(request({ prefixText: text(32, 64 * 5) }), eps);
    expect(cold.rejected).toEqual([]);
  });

  it("fails config validation without a prefix-cache-scorer", () => {
    expect(() =>
      loadPickerConfig({
        text: yaml(`plugins:
  - type: prefix-cache-affinity-filter
`),
      }),
    ).toThrow("plugins[0]: needs a prefix-cache-scorer plugin in the config (it owns the prefix index)");
  });
});
