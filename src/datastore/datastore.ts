/**
 * The in-memory view of one InferencePool: its endpoints, models, objectives and rewrites.
 *
 * Sources hand over complete snapshots (`apply(ResourceSet)`); the datastore reconciles them and precomputes every
 * lookup the request path makes, so per-request calls (`endpoints()`, `model()`, `objective()`, `resolveRewrite()`)
 * are a field read or one Map lookup and never allocate.
 *
 * Endpoint objects are stable: an endpoint survives an apply as long as its pod keeps the same name, IP, port, rank
 * and engine, so scrape results and in-flight counters are never lost to a resource reload (GIE rebuilds its pod
 * entries on every pod event and can drop metrics on relabels).
 */

import { ACTIVE_PORTS_ANNOTATION, ENGINE_TYPE_LABEL } from "../common/constants.js";
import { ConfigError } from "../common/errors.js";
import type { Logger } from "../observability/logger.js";
import {
  type Endpoint,
  endpointKey,
  type ModelSpec,
  type ObjectiveSpec,
  type PodSpec,
  type PoolSpec,
  type ResourceSet,
  type RewriteSpec,
} from "./types.js";

/** Engine assumed when a pod has no engine-type label (GIE default). */
export const DEFAULT_ENGINE = "vllm";
/** Name given to the pool synthesised by `Datastore.standalonePool` when the caller gives none. */
export const STANDALONE_POOL_NAME = "standalone";
const MAX_TARGET_PORTS = 8;

/** What the scraper needs from the datastore. */
export interface EndpointSource {
  endpoints(): readonly Endpoint[];
  onEndpointsChanged(listener: EndpointsListener): () => void;
}

export type EndpointsListener = (added: readonly Endpoint[], removed: readonly Endpoint[]) => void;

export interface DatastoreOptions {
  readonly poolName: string;
  readonly poolNamespace: string;
  readonly logger?: Logger;
}

export type RejectReason =
  /** Another InferenceModel in the pool already claims this modelName and is older (GIE reason, exact). */
  | "ModelNameInUse"
  /** Two objects of the same kind share namespace/name in one snapshot; the first is kept. */
  | "Duplicate"
  /** Two ready pods resolve to the same `ip:port`; the oldest (then first by name) is kept. */
  | "DuplicateAddress"
  /** The manifest failed validation (reported by sources, see ResourceError). */
  | "Invalid";

export interface RejectedObject {
  readonly kind: string;
  /** `namespace/name`, or a file location when the object could not be identified. */
  readonly name: string;
  readonly reason: RejectReason;
  /** Human-readable explanation, naming the winner or the invalid field. */
  readonly message: string;
  readonly origin?: string;
}

export interface ModelConflict {
  readonly modelName: string;
  /** InferenceModel name (metadata.name) that serves the modelName. */
  readonly winner: string;
  /** Names of the InferenceModels rejected with ModelNameInUse, oldest first. */
  readonly losers: readonly string[];
}

export interface ApplyReport {
  readonly accepted: {
    /** 1 when our pool was present, else 0. */
    readonly pools: number;
    readonly models: number;
    readonly objectives: number;
    readonly rewrites: number;
    /** Pods contributing at least one endpoint. */
    readonly pods: number;
    readonly endpoints: number;
  };
  readonly rejected: readonly RejectedObject[];
  readonly modelConflicts: readonly ModelConflict[];
  /** Objects skipped because they belong to another pool or namespace (not errors: another EPP owns them). */
  readonly ignored: number;
}

export interface ResolvedRewrite {
  /** metadata.name of the InferenceModelRewrite that matched. */
  readonly rewriteName: string;
  readonly targets: readonly { readonly modelRewrite: string; readonly weight: number }[];
}

/**
 * Weighted random choice (`random()` in [0,1)), as GIE draws target models and rewrites. A total weight of 0
 * picks uniformly; an empty list yields undefined.
 */
export function pickWeighted<T extends { readonly weight: number }>(
  targets: readonly T[],
  random: () => number = Math.random,
): T | undefined {
  const n = targets.length;
  if (n === 0) return undefined;
  if (n === 1) return targets[0];
  let total = 0;
  for (let i = 0; i < n; i++) {
    const w = targets[i]!.weight;
    if (w > 0) total += w;
  }
  if (total <= 0) return targets[Math.min(n - 1, Math.floor(random() * n))];
  let r = random() * total;
  let last: T | undefined;
  for (let i = 0; i < n; i++) {
    const t = targets[i]!;
    if (!(t.weight > 0)) continue;
    last = t;
    r -= t.weight;
    if (r < 0) return t;
  }
  // Floating-point residue when random() is within an ulp of 1.
  return last;
}

type MutableEndpoint = { -readonly [K in keyof Endpoint]: Endpoint[K] };

function byAgeThenName(a: { creationTimestamp: number; name: string }, b: { creationTimestamp: number; name: string }) {
  return a.creationTimestamp - b.creationTimestamp || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}

function sameLabels(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) if (a[k] !== b[k]) return false;
  return true;
}

function matchesSelector(labels: Readonly<Record<string, string>>, selector: Readonly<Record<string, string>>) {
  for (const k in selector) if (labels[k] !== selector[k]) return false;
  return true;
}

/** `"8000, 8001"` → ports; entries that are not ports are ignored (the annotation is free text on the pod). */
function activePorts(annotations: Readonly<Record<string, string>>): Set<number> | undefined {
  const raw = annotations[ACTIVE_PORTS_ANNOTATION];
  if (raw === undefined) return undefined;
  const ports = new Set<number>();
  for (const part of raw.split(",")) {
    const s = part.trim();
    if (!/^\d{1,5}$/.test(s)) continue;
    const n = Number(s);
    if (n >= 1 && n <= 65_535) ports.add(n);
  }
  return ports;
}

function parseSelector(selector: string | Readonly<Record<string, string>>): Record<string, string> {
  if (typeof selector !== "string") return { ...selector };
  const out: Record<string, string> = {};
  for (const part of selector.split(",")) {
    const s = part.trim();
    if (s === "") continue;
    const eq = s.indexOf("=");
    // `k==v` is the equality-based selector spelling kubectl also accepts.
    const key = eq > 0 ? s.slice(0, eq).trim() : "";
    const value = eq > 0 ? s.slice(s[eq + 1] === "=" ? eq + 2 : eq + 1).trim() : "";
    if (key === "") throw new ConfigError(`expected k=v[,k2=v2], got "${selector}"`, undefined, "--endpoint-selector");
    out[key] = value;
  }
  if (Object.keys(out).length === 0) {
    throw new ConfigError("must select at least one label (k=v)", undefined, "--endpoint-selector");
  }
  return out;
}

export class Datastore implements EndpointSource {
  readonly poolName: string;
  readonly poolNamespace: string;
  readonly #logger: Logger | undefined;

  #pool: PoolSpec | undefined;
  #synced = false;
  /** Keyed by `podName|ip|port|rank|engine`: the identity under which an endpoint object is reused. */
  #byIdentity = new Map<string, MutableEndpoint>();
  #byKey = new Map<string, Endpoint>();
  #endpoints: readonly Endpoint[] = Object.freeze([]);
  #models = new Map<string, ModelSpec>();
  #objectives = new Map<string, ObjectiveSpec>();
  #exactRewrites = new Map<string, ResolvedRewrite>();
  #matchAllRewrite: ResolvedRewrite | undefined;
  #listeners = new Set<EndpointsListener>();
  #syncedListeners = new Set<(synced: boolean) => void>();
  /** Bumped by every commit; an apply computed in slices starts over if it changed meanwhile. */
  #generation = 0;

  constructor(options: DatastoreOptions) {
    if (typeof options?.poolName !== "string" || options.poolName === "") {
      throw new ConfigError("poolName must be a non-empty string", undefined, "--pool-name");
    }
    if (typeof options.poolNamespace !== "string" || options.poolNamespace === "") {
      throw new ConfigError("poolNamespace must be a non-empty string", undefined, "--pool-namespace");
    }
    this.poolName = options.poolName;
    this.poolNamespace = options.poolNamespace;
    this.#logger = options.logger;
  }

  /**
   * The pool GIE's standalone mode (`--endpoint-selector k=v --endpoint-target-ports 8000`) implies. Pass it in
   * every ResourceSet; name the Datastore with the same `name`.
   */
  static standalonePool(
    selector: string | Readonly<Record<string, string>>,
    targetPorts: readonly number[],
    namespace: string,
    name: string = STANDALONE_POOL_NAME,
  ): PoolSpec {
    const labels = parseSelector(selector);
    if (Object.keys(labels).length === 0) {
      throw new ConfigError("must select at least one label (k=v)", undefined, "--endpoint-selector");
    }
    if (targetPorts.length < 1 || targetPorts.length > MAX_TARGET_PORTS) {
      throw new ConfigError(
        `must list 1..${MAX_TARGET_PORTS} ports, got ${targetPorts.length}`,
        undefined,
        "--endpoint-target-ports",
      );
    }
    const seen = new Set<number>();
    for (const p of targetPorts) {
      if (!Number.isInteger(p) || p < 1 || p > 65_535) {
        throw new ConfigError(`port must be an integer 1..65535, got ${p}`, undefined, "--endpoint-target-ports");
      }
      if (seen.has(p)) throw new ConfigError(`duplicate port ${p}`, undefined, "--endpoint-target-ports");
      seen.add(p);
    }
    return {
      name,
      namespace,
      creationTimestamp: 0,
      origin: "--endpoint-selector",
      selector: labels,
      targetPorts: [...targetPorts],
      appProtocol: "http",
      failureMode: "FailClose",
    };
  }

  // ---- request path: no allocation, no I/O ----

  /** The ready endpoints, sorted by pod name then rank. The same array until the endpoint set changes. */
  endpoints(): readonly Endpoint[] {
    return this.#endpoints;
  }

  endpointByKey(key: string): Endpoint | undefined {
    return this.#byKey.get(key);
  }

  /**
   * Whether the pod of a removed endpoint is back under its key (the endpoint object replaced, the pod the same),
   * as opposed to gone or a different pod reusing the address: what decides if its per-pod series live on.
   */
  holdsPodOf(endpoint: Endpoint): boolean {
    const now = this.#byKey.get(endpoint.key);
    return now !== undefined && now.name === endpoint.name && now.namespace === endpoint.namespace;
  }

  pool(): PoolSpec | undefined {
    return this.#pool;
  }

  /** The accepted InferenceModel for a body `model` value. */
  model(modelName: string): ModelSpec | undefined {
    return this.#models.get(modelName);
  }

  /** The InferenceObjective named by the `x-gateway-inference-objective` header. */
  objective(name: string): ObjectiveSpec | undefined {
    return this.#objectives.get(name);
  }

  /** Exact match beats match-all, then the oldest resource, then the first rule (docs/design/api-resources.md §5). */
  resolveRewrite(model: string): ResolvedRewrite | undefined {
    return this.#exactRewrites.get(model) ?? this.#matchAllRewrite;
  }

  /** Whether the pool is known: health reports SERVING only then (GIE PoolHasSynced; false again if it is deleted). */
  synced(): boolean {
    return this.#synced;
  }

  // ---- introspection (debug endpoints, `switchyard top`) ----

  models(): readonly ModelSpec[] {
    return [...this.#models.values()];
  }

  objectives(): readonly ObjectiveSpec[] {
    return [...this.#objectives.values()];
  }

  onEndpointsChanged(listener: EndpointsListener): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /**
   * Subscribes to the pool appearing or going (synced() changing), called once apply() has committed: readiness
   * follows the pool whether or not any endpoint changed with it (a pool may select no pod yet).
   */
  onSyncedChanged(listener: (synced: boolean) => void): () => void {
    this.#syncedListeners.add(listener);
    return () => {
      this.#syncedListeners.delete(listener);
    };
  }

  // ---- reconcile ----

  /** Replaces the datastore's view with `set`. Never throws for well-typed input. */
  apply(set: ResourceSet): ApplyReport {
    const steps = this.#reconcile(set);
    let r = steps.next();
    while (!r.done) r = steps.next();
    return r.value;
  }

  /**
   * `apply()` for large snapshots, never holding the event loop for much more than `sliceMs` at a time: the new view
   * is computed in slices (requests keep being routed with the old one meanwhile), then swapped in at once. If
   * another apply lands in between, the computation starts over against it.
   */
  async applyInSlices(set: ResourceSet, sliceMs: number): Promise<ApplyReport> {
    for (;;) {
      const generation = this.#generation;
      const steps = this.#reconcile(set);
      let sliceStart = performance.now();
      let r = steps.next();
      let stale = false;
      while (!r.done) {
        if (performance.now() - sliceStart > sliceMs) {
          await new Promise<void>((resolve) => setImmediate(resolve));
          sliceStart = performance.now();
          if (this.#generation !== generation) {
            stale = true;
            break;
          }
        }
        r = steps.next();
      }
      if (!stale && r.done) return r.value;
      steps.return(undefined as never);
    }
  }

  /**
   * Computes the next view, yielding now and then (the driver decides whether to pause), and commits it after the
   * last yield, so a view is never half applied.
   */
  *#reconcile(set: ResourceSet): Generator<void, ApplyReport> {
    const rejected: RejectedObject[] = [];
    let ignored = 0;
    let n = 0;
    const ours = (ns: string, poolRef: string) => ns === this.poolNamespace && poolRef === this.poolName;

    // Pool.
    let pool: PoolSpec | undefined;
    for (const p of set.pools) {
      if (p.name !== this.poolName || p.namespace !== this.poolNamespace) {
        ignored++;
        continue;
      }
      if (pool === undefined) pool = p;
      else rejected.push(duplicate("InferencePool", p, pool));
    }

    // Models: one per modelName; oldest wins, then name order (GIE ModelNameInUse).
    const byModelName = new Map<string, ModelSpec[]>();
    const seenModels = new Map<string, ModelSpec>();
    for (const m of set.models) {
      if ((++n & 255) === 0) yield;
      if (!ours(m.namespace, m.poolRef)) {
        ignored++;
        continue;
      }
      const prev = seenModels.get(m.name);
      if (prev !== undefined) {
        rejected.push(duplicate("InferenceModel", m, prev));
        continue;
      }
      seenModels.set(m.name, m);
      const group = byModelName.get(m.modelName);
      if (group === undefined) byModelName.set(m.modelName, [m]);
      else group.push(m);
    }
    const models = new Map<string, ModelSpec>();
    const modelConflicts: ModelConflict[] = [];
    for (const [modelName, group] of byModelName) {
      if ((++n & 255) === 0) yield;
      group.sort(byAgeThenName);
      const winner = group[0]!;
      models.set(modelName, winner);
      if (group.length > 1) {
        const losers = group.slice(1);
        modelConflicts.push({ modelName, winner: winner.name, losers: losers.map((l) => l.name) });
        for (const l of losers) {
          rejected.push({
            kind: "InferenceModel",
            name: `${l.namespace}/${l.name}`,
            reason: "ModelNameInUse",
            message: `modelName "${modelName}" is already served by InferenceModel ${winner.namespace}/${winner.name} (older wins)`,
            ...(l.origin === undefined ? {} : { origin: l.origin }),
          });
        }
      }
    }

    // Objectives, keyed by metadata.name (the header value).
    const objectives = new Map<string, ObjectiveSpec>();
    for (const o of set.objectives) {
      if ((++n & 255) === 0) yield;
      if (!ours(o.namespace, o.poolRef)) {
        ignored++;
        continue;
      }
      const prev = objectives.get(o.name);
      if (prev !== undefined) rejected.push(duplicate("InferenceObjective", o, prev));
      else objectives.set(o.name, o);
    }

    // Rewrites: precompute model → winning rule so the request path is one lookup.
    const rewrites: RewriteSpec[] = [];
    const rewriteByName = new Map<string, RewriteSpec>();
    for (const r of set.rewrites) {
      if ((++n & 255) === 0) yield;
      if (!ours(r.namespace, r.poolRef)) {
        ignored++;
        continue;
      }
      const prev = rewriteByName.get(r.name);
      if (prev !== undefined) {
        rejected.push(duplicate("InferenceModelRewrite", r, prev));
        continue;
      }
      rewriteByName.set(r.name, r);
      rewrites.push(r);
    }
    rewrites.sort(byAgeThenName);
    const exact = new Map<string, ResolvedRewrite>();
    let matchAll: ResolvedRewrite | undefined;
    for (const r of rewrites) {
      if ((++n & 255) === 0) yield;
      for (const rule of r.rules) {
        const resolved: ResolvedRewrite = { rewriteName: r.name, targets: rule.targets };
        if (rule.matches.length === 0) {
          matchAll ??= resolved;
          continue;
        }
        for (const m of rule.matches) if (!exact.has(m)) exact.set(m, resolved);
      }
    }

    // Endpoints.
    const next = yield* this.#nextEndpoints(pool, set.pods, rejected);

    // ---- commit: no yield from here on ----
    this.#generation++;
    const { pods, endpoints: endpointCount } = this.#commitEndpoints(next);
    const wasSynced = this.#synced;
    const poolChanged = this.#pool !== pool;
    this.#pool = pool;
    this.#synced = pool !== undefined;
    if (wasSynced !== this.#synced) {
      for (const listener of this.#syncedListeners) {
        try {
          listener(this.#synced);
        } catch (err) {
          this.#logger?.error({ err }, "synced listener threw");
        }
      }
    }
    this.#models = models;
    this.#objectives = objectives;
    this.#exactRewrites = exact;
    this.#matchAllRewrite = matchAll;

    const report: ApplyReport = {
      accepted: {
        pools: pool === undefined ? 0 : 1,
        models: models.size,
        objectives: objectives.size,
        rewrites: rewrites.length,
        pods,
        endpoints: endpointCount,
      },
      rejected,
      modelConflicts,
      ignored,
    };
    const log = this.#logger;
    if (log !== undefined) {
      if (pool === undefined && (wasSynced || poolChanged)) {
        log.warn({ pool: `${this.poolNamespace}/${this.poolName}` }, "InferencePool not found; no endpoints");
      } else if (poolChanged && pool !== undefined) {
        log.info(
          { pool: `${pool.namespace}/${pool.name}`, selector: pool.selector, targetPorts: pool.targetPorts },
          "InferencePool applied",
        );
      }
      logRejected(log, rejected);
    }
    return report;
  }

  /** The next endpoint set, computed without touching the current one (endpoint objects are reused by identity). */
  *#nextEndpoints(
    pool: PoolSpec | undefined,
    pods: readonly PodSpec[],
    rejected: RejectedObject[],
  ): Generator<void, NextEndpoints> {
    const next = new Map<string, MutableEndpoint>();
    const nextByKey = new Map<string, MutableEndpoint>();
    const added: Endpoint[] = [];
    const relabels: [MutableEndpoint, Readonly<Record<string, string>>][] = [];
    let podCount = 0;
    let n = 0;
    if (pool !== undefined) {
      const matching: PodSpec[] = [];
      for (const p of pods) {
        if ((++n & 255) === 0) yield;
        if (
          p.namespace === pool.namespace &&
          p.ready &&
          !p.deleting &&
          p.podIP !== "" &&
          matchesSelector(p.labels, pool.selector)
        )
          matching.push(p);
      }
      // Oldest first so that, on an address clash, the established pod keeps the address.
      const candidates = yield* sortInSteps(matching, byAgeThenName);
      const seenPods = new Set<string>();
      for (const p of candidates) {
        if ((++n & 127) === 0) yield;
        if (seenPods.has(p.name)) {
          rejected.push({
            kind: "Pod",
            name: `${p.namespace}/${p.name}`,
            reason: "Duplicate",
            message: "pod listed more than once; the first is used",
            ...(p.origin === undefined ? {} : { origin: p.origin }),
          });
          continue;
        }
        seenPods.add(p.name);
        const active = activePorts(p.annotations);
        const engine = p.labels[ENGINE_TYPE_LABEL] || DEFAULT_ENGINE;
        let contributed = false;
        pool.targetPorts.forEach((port, rank) => {
          if (active !== undefined && !active.has(port)) return;
          const key = endpointKey(p.podIP, port);
          const clash = nextByKey.get(key);
          if (clash !== undefined) {
            rejected.push({
              kind: "Pod",
              name: `${p.namespace}/${p.name}`,
              reason: "DuplicateAddress",
              message: `address ${key} is already used by pod ${clash.podName}`,
              ...(p.origin === undefined ? {} : { origin: p.origin }),
            });
            return;
          }
          const identity = `${p.name}|${p.podIP}|${port}|${rank}|${engine}`;
          let ep = this.#byIdentity.get(identity);
          if (ep === undefined) {
            ep = {
              key,
              name: `${p.name}-rank-${rank}`,
              podName: p.name,
              namespace: p.namespace,
              address: p.podIP,
              port,
              rank,
              labels: p.labels,
              engine,
              metrics: undefined,
              inflightRequests: 0,
              inflightTokens: 0,
              routedRequests: 0,
              load: undefined,
              lastScrapeError: undefined,
              metricsValidUntil: undefined,
              // Present from the start, so every endpoint keeps one shape for the filters that read it per request.
              models: undefined,
            };
            added.push(ep);
          } else if (!sameLabels(ep.labels, p.labels)) {
            // Relabels do not change where traffic goes; keep the object (and its metrics), refresh the labels.
            relabels.push([ep, p.labels]);
          }
          next.set(identity, ep);
          nextByKey.set(key, ep);
          contributed = true;
        });
        if (contributed) podCount++;
      }
    }
    const removed: Endpoint[] = [];
    for (const [identity, ep] of this.#byIdentity) {
      if ((++n & 255) === 0) yield;
      if (!next.has(identity)) removed.push(ep);
    }
    const list =
      added.length > 0 || removed.length > 0
        ? Object.freeze(yield* sortInSteps([...next.values()], byPodThenRank))
        : undefined;
    return { next, nextByKey, added, removed, relabels, list, pods: podCount };
  }

  #commitEndpoints(n: NextEndpoints): { pods: number; endpoints: number } {
    for (const [ep, labels] of n.relabels) ep.labels = labels;
    this.#byIdentity = n.next;
    this.#byKey = n.nextByKey;
    if (n.list !== undefined) {
      this.#endpoints = n.list;
      const sample = (eps: readonly Endpoint[]) => eps.slice(0, 20).map((e) => `${e.name}@${e.key}`);
      // At most 20 names each: a reload of 20k pods must not become one multi-megabyte log line.
      this.#logger?.info(
        {
          added: sample(n.added),
          removed: sample(n.removed),
          addedCount: n.added.length,
          removedCount: n.removed.length,
          total: n.list.length,
        },
        "endpoints changed",
      );
      for (const listener of this.#listeners) {
        try {
          listener(n.added, n.removed);
        } catch (err) {
          // A broken listener must not stop the others or the reconcile that called it.
          this.#logger?.error({ err }, "endpoints listener threw");
        }
      }
    }
    return { pods: n.pods, endpoints: n.next.size };
  }
}

interface NextEndpoints {
  readonly next: Map<string, MutableEndpoint>;
  readonly nextByKey: Map<string, MutableEndpoint>;
  readonly added: Endpoint[];
  readonly removed: Endpoint[];
  readonly relabels: [MutableEndpoint, Readonly<Record<string, string>>][];
  readonly list: readonly Endpoint[] | undefined;
  readonly pods: number;
}

function byPodThenRank(a: Endpoint, b: Endpoint): number {
  return a.podName < b.podName ? -1 : a.podName > b.podName ? 1 : a.rank - b.rank;
}

/** A stable merge sort that yields between merges, so sorting 20k pods never holds the event loop in one go. */
function* sortInSteps<T>(items: readonly T[], cmp: (a: T, b: T) => number): Generator<void, T[]> {
  if (items.length <= 512) return [...items].sort(cmp);
  let a = [...items];
  let b = new Array<T>(a.length);
  let work = 0;
  for (let width = 1; width < a.length; width *= 2) {
    for (let lo = 0; lo < a.length; lo += 2 * width) {
      const mid = Math.min(lo + width, a.length);
      const hi = Math.min(lo + 2 * width, a.length);
      let i = lo;
      let j = mid;
      let k = lo;
      while (i < mid && j < hi) b[k++] = cmp(a[j]!, a[i]!) < 0 ? a[j++]! : a[i++]!;
      while (i < mid) b[k++] = a[i++]!;
      while (j < hi) b[k++] = a[j++]!;
      work += hi - lo;
      if (work >= 2048) {
        work = 0;
        yield;
      }
    }
    [a, b] = [b, a];
  }
  return a;
}

/**
 * Logs rejected objects without flooding: the first few one line each, then one line counting the rest by reason
 * (10k pods sharing an address are one line, not 10k).
 */
export function logRejected(logger: Logger, rejected: readonly RejectedObject[], individually = 5): void {
  for (const r of rejected.slice(0, individually))
    logger.warn({ kind: r.kind, name: r.name, reason: r.reason, origin: r.origin }, r.message);
  if (rejected.length <= individually) return;
  const byReason: Record<string, number> = {};
  for (const r of rejected.slice(individually)) byReason[r.reason] = (byReason[r.reason] ?? 0) + 1;
  logger.warn(
    { more: rejected.length - individually, byReason },
    `${rejected.length - individually} more objects rejected (the report lists each)`,
  );
}

function duplicate(kind: string, dup: { namespace: string; name: string; origin?: string }, kept: { origin?: string }) {
  return {
    kind,
    name: `${dup.namespace}/${dup.name}`,
    reason: "Duplicate" as const,
    message: `${kind} ${dup.namespace}/${dup.name} is defined more than once; keeping the one from ${kept.origin ?? "the first source"}`,
    ...(dup.origin === undefined ? {} : { origin: dup.origin }),
  };
}
