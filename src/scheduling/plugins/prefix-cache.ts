/**
 * Approximate prefix-cache affinity (docs/design/scheduling.md §5): GIE v1.5 semantics with two deliberate
 * improvements:
 *
 * 1. Synchronous insert. GIE adds a request's block hashes to the chosen endpoint asynchronously after the pick,
 *    so concurrent requests sharing a new prefix all miss until the insert lands. Here PreRequest inserts before
 *    the request is forwarded, on the same tick: the very next request already sees the hit.
 * 2. Per-endpoint longest consecutive prefix. GIE walks the hashes until no pod holds one and gives +1 to every
 *    pod in each visited set, so a pod holding block 3 but not block 1 still scores. A model server only reuses
 *    a cached prefix from the first block on, so the score here is the length of the run of leading blocks the
 *    endpoint holds. Blocks are inserted last-to-first, which makes the leading blocks the most recently used
 *    and therefore the last evicted — the same order vLLM evicts in.
 *
 * Blocks are `blockSizeTokens × 4` characters (default 64), full blocks only, the text truncated to
 * `maxPrefixBlocksToMatch` blocks. Hashes are chained: h0 = H(targetModel), h_i = H(block_i, h_{i−1}).
 *
 * H is not xxhash64 (not available without a native dependency, and 64-bit BigInt arithmetic is too slow for the
 * hot path). It runs two independent 32-bit lanes over the UTF-16 code units — an FNV-1a lane and a
 * multiply-xorshift (murmur-style) lane — each finished with the murmur3 fmix32 avalanche, and combines them into
 * a 53-bit integer key (32 bits of lane A, 21 of lane B), a JS number that Map/Set hash without allocation. The
 * index is private to this replica and never compared with another implementation, so compatibility with GIE's
 * hash values is irrelevant; only speed and a negligible collision rate (≈ n²/2⁵⁴) matter.
 */
import type { Endpoint } from "../../datastore/types.js";
import { ParamReader, PluginParamError } from "../params.js";
import type { PluginFactory, PluginHandle } from "../registry.js";
import type {
  CycleState,
  EndpointStateHolder,
  Filter,
  Plugin,
  PreRequest,
  SchedulingRequest,
  Scorer,
  ScorerCategory,
  TypedName,
} from "../types.js";
import { sized } from "./scorers.js";

/** Characters per token when no tokenizer is available (GIE averageCharactersPerToken). */
const CHARS_PER_TOKEN = 4;
/** GIE purges departed endpoints from the index every 2 minutes. */
const PURGE_INTERVAL_MS = 120_000;
const LANE_B_BITS = 21;
const LANE_B_SCALE = 2 ** LANE_B_BITS;

export interface PrefixCacheParams {
  /** Take the block size from the endpoint's `cache_config_info` block_size and the LRU capacity from num_gpu_blocks. Default true. */
  readonly autoTune: boolean;
  /** Characters per block (= blockSizeTokens × 4, or the v1.0 `hashBlockSize`). Default 64. */
  readonly blockChars: number;
  /** Blocks hashed per request at most. Default 256. */
  readonly maxPrefixBlocksToMatch: number;
  /** When > 0, also stop after this many (estimated) tokens. Default 0 (no extra limit). */
  readonly maxPrefixTokensToMatch: number;
  /** Per-endpoint LRU capacity in blocks when not auto-tuned. Default 31250. */
  readonly lruCapacityPerServer: number;
}

export const DEFAULT_PREFIX_CACHE_PARAMS: PrefixCacheParams = {
  autoTune: true,
  blockChars: 16 * CHARS_PER_TOKEN,
  maxPrefixBlocksToMatch: 256,
  maxPrefixTokensToMatch: 0,
  lruCapacityPerServer: 31_250,
};

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * Appends the chained block hashes of `text` to `out` (cleared first) and returns it. Only full blocks are
 * hashed; text shorter than one block yields no hashes.
 */
export function prefixBlockHashes(
  text: string,
  targetModel: string,
  blockChars: number,
  maxChars: number,
  out: number[] = [],
): number[] {
  out.length = 0;
  let a = 0x811c9dc5;
  let b = 0x9747b28c;
  for (let i = 0; i < targetModel.length; i++) {
    const c = targetModel.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
    b ^= b >>> 15;
  }
  a = fmix32(a);
  b = fmix32(b ^ 0x5bd1e995);
  const limit = Math.min(text.length, maxChars);
  const blocks = Math.floor(limit / blockChars);
  for (let block = 0, pos = 0; block < blocks; block++) {
    const end = pos + blockChars;
    for (; pos < end; pos++) {
      const c = text.charCodeAt(pos);
      a = Math.imul(a ^ c, 0x01000193);
      b = Math.imul(b ^ c, 0x5bd1e995);
      b ^= b >>> 15;
    }
    a = fmix32(a);
    b = fmix32(b ^ 0x5bd1e995);
    out.push(a * LANE_B_SCALE + (b >>> (32 - LANE_B_BITS)));
  }
  return out;
}

/** Per-endpoint LRU sets of block hashes. A JS Set iterates in insertion order, so re-adding moves to the MRU end. */
export class PrefixIndex {
  readonly #lrus = new Map<string, Set<number>>();
  #entries = 0;

  /** Adds `hashes` to the endpoint, leading blocks most recent, then evicts down to `capacity`. */
  insert(endpointKey: string, hashes: readonly number[], capacity: number): void {
    let lru = this.#lrus.get(endpointKey);
    if (lru === undefined) {
      lru = new Set();
      this.#lrus.set(endpointKey, lru);
    }
    const before = lru.size;
    for (let i = hashes.length - 1; i >= 0; i--) {
      const h = hashes[i]!;
      lru.delete(h);
      lru.add(h);
    }
    if (lru.size > capacity) {
      const it = lru.values();
      for (let excess = lru.size - capacity; excess > 0; excess--) lru.delete(it.next().value as number);
    }
    this.#entries += lru.size - before;
  }

  /** Number of leading hashes the endpoint holds. */
  matchLength(endpointKey: string, hashes: readonly number[]): number {
    const lru = this.#lrus.get(endpointKey);
    if (lru === undefined) return 0;
    let n = 0;
    while (n < hashes.length && lru.has(hashes[n]!)) n++;
    return n;
  }

  remove(endpointKey: string): void {
    const lru = this.#lrus.get(endpointKey);
    if (lru === undefined) return;
    this.#entries -= lru.size;
    this.#lrus.delete(endpointKey);
  }

  /** Drops every endpoint not in `live`. */
  retainOnly(live: ReadonlySet<string>): void {
    for (const key of [...this.#lrus.keys()]) if (!live.has(key)) this.remove(key);
  }

  /** Total block entries over all endpoints (for an index-size gauge). */
  get size(): number {
    return this.#entries;
  }

  get endpointCount(): number {
    return this.#lrus.size;
  }

  has(endpointKey: string): boolean {
    return this.#lrus.has(endpointKey);
  }
}

/** What one scheduling cycle learnt about prefix matches, kept in its CycleState (reused between cycles). */
interface PrefixMatch {
  /** The candidate list the fractions are for; the CycleState entry names the request (it is cleared after each cycle). */
  endpoints: readonly Endpoint[] | undefined;
  readonly fractions: number[];
}

/** GIE prefix-cache-scorer with its approx-prefix-cache-producer folded in: scorer, index owner and PreRequest. */
export class PrefixCacheScorer implements Scorer, PreRequest, EndpointStateHolder {
  readonly typedName: TypedName;
  readonly category: ScorerCategory = "Affinity";
  readonly params: PrefixCacheParams;
  readonly index = new PrefixIndex();
  readonly #handle: PluginHandle;
  /** Hashes are computed once per request and shared by score() and preRequest(); weak, so nothing leaks. */
  readonly #hashes = new WeakMap<SchedulingRequest, { readonly hashes: number[]; readonly blockChars: number }>();
  // Holds no request: a retained request would keep its body (up to --max-body-bytes) alive until the next one.
  readonly #match: PrefixMatch = { endpoints: undefined, fractions: [] };
  /** CycleState key under which a cycle's match fractions are shared with other plugins (GIE's CycleState use). */
  readonly stateKey: string;
  #lastPurge: number;

  constructor(name: string, handle: PluginHandle, params: Partial<PrefixCacheParams> = {}) {
    this.typedName = { type: "prefix-cache-scorer", name };
    this.stateKey = `prefix-cache-scorer/${name}/match`;
    this.#handle = handle;
    this.params = { ...DEFAULT_PREFIX_CACHE_PARAMS, ...params };
    this.#lastPurge = handle.now();
  }

  /** The request's chained block hashes (cached per request object). */
  hashesFor(request: SchedulingRequest, endpoints: readonly Endpoint[]): readonly number[] {
    return this.#hashed(request, endpoints).hashes;
  }

  /** Estimated prompt tokens per hashed block for this request (after auto-tuning). */
  blockTokens(request: SchedulingRequest, endpoints: readonly Endpoint[]): number {
    return this.#hashed(request, endpoints).blockChars / CHARS_PER_TOKEN;
  }

  #hashed(request: SchedulingRequest, endpoints: readonly Endpoint[]) {
    const cached = this.#hashes.get(request);
    if (cached !== undefined) return cached;
    const p = this.params;
    let blockChars = p.blockChars;
    if (p.autoTune) {
      // GIE: the block size of the first endpoint that reports one (vLLM cache_config_info block_size).
      for (let i = 0; i < endpoints.length; i++) {
        const bs = endpoints[i]!.metrics?.cacheBlockSize ?? 0;
        if (bs > 0) {
          blockChars = bs * CHARS_PER_TOKEN;
          break;
        }
      }
    }
    let maxChars = p.maxPrefixBlocksToMatch * blockChars;
    if (p.maxPrefixTokensToMatch > 0) maxChars = Math.min(maxChars, p.maxPrefixTokensToMatch * CHARS_PER_TOKEN);
    const hashed = {
      hashes: prefixBlockHashes(request.prefixText, request.targetModel, blockChars, maxChars),
      blockChars,
    };
    this.#hashes.set(request, hashed);
    return hashed;
  }

  /** Fraction of the request's blocks each endpoint holds as a leading run, in [0,1]. */
  score(state: CycleState, request: SchedulingRequest, endpoints: readonly Endpoint[]): ArrayLike<number> {
    return this.matchFractions(state, request, endpoints);
  }

  /**
   * The per-endpoint match fractions of this cycle, computed once per cycle (the CycleState records for which
   * request, and is cleared when the cycle ends, so nothing outlives it): the latency scorer reads the same estimate of how much of the prompt each endpoint has cached (docs/design/scheduling.md
   * §11.4). Valid until the next cycle.
   */
  matchFractions(state: CycleState, request: SchedulingRequest, endpoints: readonly Endpoint[]): ArrayLike<number> {
    const m = this.#match;
    if (state.get(this.stateKey) === request && m.endpoints === endpoints) return m.fractions;
    const hashes = this.hashesFor(request, endpoints);
    const out = sized(m.fractions, endpoints.length);
    const total = hashes.length;
    for (let i = 0; i < endpoints.length; i++)
      out[i] = total === 0 ? 0 : this.index.matchLength(endpoints[i]!.key, hashes) / total;
    m.endpoints = endpoints;
    state.set(this.stateKey, request);
    return out;
  }

  /** Synchronous insert into the primary endpoint's LRU, before the request is forwarded. */
  preRequest(request: SchedulingRequest, chosen: readonly Endpoint[]): void {
    const primary = chosen[0];
    if (primary === undefined) return;
    const hashes = this.hashesFor(request, chosen);
    if (hashes.length > 0) {
      const blocks = primary.metrics?.cacheNumBlocks ?? 0;
      const capacity = this.params.autoTune && blocks > 0 ? blocks : this.params.lruCapacityPerServer;
      this.index.insert(primary.key, hashes, capacity);
    }
    this.#maybePurge();
  }

  endpointRemoved(endpointKey: string): void {
    this.index.remove(endpointKey);
  }

  /**
   * Amortised GIE-style purge of departed endpoints (every 2 min) against the handle's endpoint list, done here
   * rather than on a timer so the plugin owns no timers. Skipped when the handle knows no endpoints (not wired, or
   * an empty pool: stale entries are harmless until the endpoint returns or the next purge).
   */
  #maybePurge(): void {
    const now = this.#handle.now();
    if (now - this.#lastPurge < PURGE_INTERVAL_MS) return;
    this.#lastPurge = now;
    const live = this.#handle.endpoints();
    if (live.length === 0) return;
    const keys = new Set<string>();
    for (const e of live) keys.add(e.key);
    this.index.retainOnly(keys);
  }
}

export function readPrefixCacheParams(params: unknown): PrefixCacheParams {
  const p = new ParamReader(params);
  const autoTune = p.boolean("autoTune", DEFAULT_PREFIX_CACHE_PARAMS.autoTune);
  const hasTokens = p.has("blockSizeTokens");
  const blockSizeTokens = p.integer("blockSizeTokens", 16, { min: 1 });
  // GIE: the legacy character-based `blockSize` is rejected unless blockSizeTokens (which wins) is also set.
  const legacyBlockSize = p.integer("blockSize", 0, { min: 1 });
  if (legacyBlockSize > 0 && !hasTokens)
    throw new PluginParamError("blockSize", "is deprecated (characters); set blockSizeTokens instead");
  // v1.0 form: hashBlockSize in characters.
  const hashBlockSize = p.integer("hashBlockSize", 0, { min: 1 });
  const out: PrefixCacheParams = {
    autoTune,
    blockChars: hasTokens || hashBlockSize === 0 ? blockSizeTokens * CHARS_PER_TOKEN : hashBlockSize,
    maxPrefixBlocksToMatch: p.integer("maxPrefixBlocksToMatch", DEFAULT_PREFIX_CACHE_PARAMS.maxPrefixBlocksToMatch, {
      min: 1,
    }),
    maxPrefixTokensToMatch: p.integer("maxPrefixTokensToMatch", 0, { min: 0 }),
    lruCapacityPerServer: p.integer("lruCapacityPerServer", DEFAULT_PREFIX_CACHE_PARAMS.lruCapacityPerServer, {
      min: 1,
    }),
  };
  p.done();
  return out;
}

export const prefixCacheScorerFactory: PluginFactory = (name, params, handle) =>
  new PrefixCacheScorer(name, handle, readPrefixCacheParams(params)) satisfies Scorer &
    PreRequest &
    EndpointStateHolder;

export const DEFAULT_AFFINITY_THRESHOLD = 0.8;
export const DEFAULT_EXPLORATION_PROBABILITY = 0.01;

/**
 * GIE prefix-cache-affinity-filter: keep endpoints whose prefix score ≥ affinityThreshold; none → keep all; with
 * probability explorationProbability skip the gate so cold endpoints still get warmed. Reads the index of the
 * first configured prefix-cache-scorer (resolved lazily, so config order does not matter). GIE's TTFT-penalty
 * escape needs latency predictions switchyard does not have, so `maxTTFTPenaltyMs` is not accepted.
 */
export class PrefixCacheAffinityFilter implements Filter {
  readonly typedName: TypedName;
  readonly affinityThreshold: number;
  readonly explorationProbability: number;
  readonly #handle: PluginHandle;
  #scorer: PrefixCacheScorer | undefined;

  constructor(
    name: string,
    handle: PluginHandle,
    affinityThreshold = DEFAULT_AFFINITY_THRESHOLD,
    explorationProbability = DEFAULT_EXPLORATION_PROBABILITY,
  ) {
    this.typedName = { type: "prefix-cache-affinity-filter", name };
    this.#handle = handle;
    this.affinityThreshold = affinityThreshold;
    this.explorationProbability = explorationProbability;
  }

  /** Called by the framework once every plugin exists; the filter is useless without an index to read. */
  resolveDependencies(): void {
    if (this.#resolve() === undefined)
      throw new Error("needs a prefix-cache-scorer plugin in the config (it owns the prefix index)");
  }

  filter(_state: CycleState, request: SchedulingRequest, endpoints: readonly Endpoint[]): readonly Endpoint[] {
    const scorer = this.#scorer ?? this.#resolve();
    if (scorer === undefined) return endpoints;
    if (this.explorationProbability > 0 && this.#handle.random() < this.explorationProbability) return endpoints;
    const hashes = scorer.hashesFor(request, endpoints);
    if (hashes.length === 0) return endpoints;
    const need = this.affinityThreshold * hashes.length;
    let kept: Endpoint[] | undefined;
    for (let i = 0; i < endpoints.length; i++) {
      const e = endpoints[i]!;
      if (scorer.index.matchLength(e.key, hashes) < need) continue;
      if (kept === undefined) kept = [];
      kept.push(e);
    }
    return kept ?? endpoints;
  }

  #resolve(): PrefixCacheScorer | undefined {
    const plugins: readonly Plugin[] = this.#handle.plugins();
    for (const p of plugins) {
      if (p instanceof PrefixCacheScorer) {
        this.#scorer = p;
        return p;
      }
    }
    return undefined;
  }
}

export const prefixCacheAffinityFilterFactory: PluginFactory = (name, params, handle) => {
  const p = new ParamReader(params);
  const threshold = p.number("affinityThreshold", DEFAULT_AFFINITY_THRESHOLD, { min: 0, max: 1 });
  const exploration = p.number("explorationProbability", DEFAULT_EXPLORATION_PROBABILITY, { min: 0, max: 1 });
  p.done();
  return new PrefixCacheAffinityFilter(name, handle, threshold, exploration) satisfies Filter;
};
