/**
 * Paged KV cache with automatic prefix caching, modelled on vLLM v1's block pool:
 * - memory is `totalBlocks` blocks of `blockSize` tokens; a sequence holds ceil(context tokens / blockSize) blocks;
 * - a full prompt block is identified by a chained hash (block i's hash covers blocks 0..i), so two prompts share
 *   cached blocks exactly as far as their texts agree block by block;
 * - freed blocks keep their hash and stay reusable in an LRU until memory pressure evicts them, so usage counts
 *   only blocks referenced by live sequences (vLLM reports cached-but-free blocks as free too).
 * Allocation prefers never-hashed free blocks and evicts the least recently freed cached block only when needed.
 */

const NO_HASH = -1;

export class KvCache {
  readonly totalBlocks: number;
  readonly blockSize: number;
  readonly prefixCaching: boolean;
  #refs: Int32Array;
  #hashOf: Float64Array;
  #byHash = new Map<number, number>();
  #freeUncached: number[] = [];
  /** Free blocks that still carry a hash, oldest first (Map iteration order is insertion order). */
  #freeCached = new Map<number, true>();

  constructor(totalBlocks: number, blockSize: number, prefixCaching: boolean) {
    this.totalBlocks = totalBlocks;
    this.blockSize = blockSize;
    this.prefixCaching = prefixCaching;
    this.#refs = new Int32Array(totalBlocks);
    this.#hashOf = new Float64Array(totalBlocks).fill(NO_HASH);
    // Pop from the end hands out block 0 first; only for readable debugging.
    for (let b = totalBlocks - 1; b >= 0; b--) this.#freeUncached.push(b);
  }

  get freeBlocks(): number {
    return this.#freeUncached.length + this.#freeCached.size;
  }

  get usedBlocks(): number {
    return this.totalBlocks - this.freeBlocks;
  }

  /** Fraction of blocks referenced by live sequences, 0..1 (vllm:kv_cache_usage_perc). */
  get usage(): number {
    return this.usedBlocks / this.totalBlocks;
  }

  /** Number of cached blocks currently indexed by hash (free or in use). */
  get cachedBlocks(): number {
    return this.#byHash.size;
  }

  /** Length in blocks of the cached prefix of `hashes`, looking at no more than `limit` blocks. */
  matchPrefix(hashes: readonly number[], limit: number): number {
    if (!this.prefixCaching) return 0;
    const n = Math.min(limit, hashes.length);
    let i = 0;
    while (i < n && this.#byHash.has(hashes[i]!)) i++;
    return i;
  }

  /**
   * Allocates `needed` blocks for a sequence whose first `hitLimit` prompt blocks may come from the cache.
   * Pushes the block ids onto `out` (cached prefix first) and returns how many were cache hits, or -1 without
   * changing anything when the blocks do not fit.
   */
  tryAllocate(hashes: readonly number[], hitLimit: number, needed: number, out: number[]): number {
    const hits = Math.min(this.matchPrefix(hashes, hitLimit), needed);
    let hitsFree = 0;
    for (let i = 0; i < hits; i++) if (this.#refs[this.#byHash.get(hashes[i]!)!] === 0) hitsFree++;
    if (this.freeBlocks - hitsFree < needed - hits) return -1;
    for (let i = 0; i < hits; i++) {
      const block = this.#byHash.get(hashes[i]!)!;
      if (this.#refs[block] === 0) this.#freeCached.delete(block);
      this.#refs[block]!++;
      out.push(block);
    }
    for (let i = hits; i < needed; i++) out.push(this.#take());
    return hits;
  }

  /** One more block for a growing sequence, or -1 when memory is exhausted (the caller preempts). */
  allocOne(): number {
    return this.freeBlocks === 0 ? -1 : this.#take();
  }

  /**
   * Publishes the full prompt blocks of a sequence once its prefill is done: only computed blocks may be hit, so a
   * twin request arriving mid-prefill does not get a free ride (vLLM caches blocks as they are computed).
   */
  commit(hashes: readonly number[], blocks: readonly number[]): void {
    if (!this.prefixCaching) return;
    const n = Math.min(hashes.length, blocks.length);
    for (let i = 0; i < n; i++) {
      const block = blocks[i]!;
      const hash = hashes[i]!;
      if (this.#hashOf[block] !== NO_HASH || this.#byHash.has(hash)) continue;
      this.#hashOf[block] = hash;
      this.#byHash.set(hash, block);
    }
  }

  /** Drops one reference to each block; unreferenced hashed blocks join the LRU tail, others the free stack. */
  free(blocks: readonly number[]): void {
    // Freed in reverse so the tail of a prompt is evicted before its head, which other prompts are likelier to share.
    for (let i = blocks.length - 1; i >= 0; i--) {
      const block = blocks[i]!;
      const left = --this.#refs[block]!;
      if (left > 0) continue;
      if (this.#hashOf[block] === NO_HASH) this.#freeUncached.push(block);
      else this.#freeCached.set(block, true);
    }
  }

  #take(): number {
    const uncached = this.#freeUncached.pop();
    if (uncached !== undefined) {
      this.#refs[uncached] = 1;
      return uncached;
    }
    const oldest = this.#freeCached.keys().next();
    if (oldest.done) throw new Error("kv cache: no free block (caller must check freeBlocks)");
    const block = oldest.value;
    this.#freeCached.delete(block);
    this.#byHash.delete(this.#hashOf[block]!);
    this.#hashOf[block] = NO_HASH;
    this.#refs[block] = 1;
    return block;
  }
}
