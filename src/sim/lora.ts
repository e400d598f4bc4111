/**
 * LoRA adapter residency, modelled on vLLM's two-level cache: at most `maxLoras` adapters sit in GPU slots (a batch
 * can only mix adapters that are resident), and up to `maxCpuLoras` recently used adapters stay in host memory.
 * Loading into a slot costs `loadMs` from disk, a tenth of that from host memory; a slot can be taken over only
 * from an adapter with no running request (least recently used first). The loader is synchronous bookkeeping:
 * the engine delays the first token of a request by the load time instead of sleeping.
 */

interface Slot {
  /** When the adapter's weights are usable (ms, engine clock). */
  readyAt: number;
  /** Running sequences using the adapter; a slot with active > 0 cannot be evicted. */
  active: number;
  lastUsed: number;
}

/** Host-memory hits load this many times faster than cold loads. */
const CPU_LOAD_SPEEDUP = 10;

export class LoraSlots {
  readonly maxLoras: number;
  readonly maxCpuLoras: number;
  #loadMs: number;
  #gpu = new Map<string, Slot>();
  /** LRU of adapters in host memory, oldest first. */
  #cpu = new Map<string, true>();
  #loads = 0;
  #evictions = 0;

  constructor(maxLoras: number, maxCpuLoras: number, loadMs: number) {
    this.maxLoras = maxLoras;
    this.maxCpuLoras = Math.max(maxCpuLoras, maxLoras);
    this.#loadMs = loadMs;
  }

  /** Cold loads performed so far (GPU slot fills). */
  get loads(): number {
    return this.#loads;
  }

  get evictions(): number {
    return this.#evictions;
  }

  /** Adapters currently holding a GPU slot, loaded or loading. */
  resident(): string[] {
    return [...this.#gpu.keys()];
  }

  /** Whether a request for `name` could start now: resident, a free slot, or an idle slot to take over. */
  canAcquire(name: string): boolean {
    if (this.#gpu.has(name) || this.#gpu.size < this.maxLoras) return true;
    for (const slot of this.#gpu.values()) if (slot.active === 0) return true;
    return false;
  }

  /**
   * Pins `name` for one running sequence and returns when its weights are ready (≥ now). Call only after
   * `canAcquire(name)` returned true.
   */
  acquire(name: string, now: number): number {
    let slot = this.#gpu.get(name);
    if (slot === undefined) {
      if (this.#gpu.size >= this.maxLoras) this.#evictIdle();
      const warm = this.#cpu.has(name);
      slot = { readyAt: now + (warm ? this.#loadMs / CPU_LOAD_SPEEDUP : this.#loadMs), active: 0, lastUsed: now };
      this.#gpu.set(name, slot);
      this.#loads++;
      this.#touchCpu(name);
    }
    slot.active++;
    slot.lastUsed = now;
    return Math.max(now, slot.readyAt);
  }

  release(name: string, now: number): void {
    const slot = this.#gpu.get(name);
    if (slot === undefined || slot.active === 0) return;
    slot.active--;
    slot.lastUsed = now;
  }

  #evictIdle(): void {
    let victim: string | undefined;
    let oldest = Number.POSITIVE_INFINITY;
    for (const [name, slot] of this.#gpu) {
      if (slot.active === 0 && slot.lastUsed < oldest) {
        oldest = slot.lastUsed;
        victim = name;
      }
    }
    if (victim === undefined) throw new Error("lora: no idle slot to evict (caller must check canAcquire)");
    this.#gpu.delete(victim);
    this.#evictions++;
  }

  #touchCpu(name: string): void {
    this.#cpu.delete(name);
    this.#cpu.set(name, true);
    if (this.#cpu.size > this.maxCpuLoras) {
      const oldest = this.#cpu.keys().next();
      if (!oldest.done) this.#cpu.delete(oldest.value);
    }
  }
}
