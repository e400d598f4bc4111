/**
 * Kubernetes source: watches the InferencePool, its Pods and the x-k8s.io CRDs through client-node informers and
 * pushes complete snapshots into the datastore.
 *
 * Why snapshots: the datastore reconciles a whole ResourceSet, so this source never computes deltas. Informer
 * events only mark the view dirty; a short debounce coalesces bursts (a rollout changes dozens of pods at once)
 * into one `apply()`.
 *
 * Why our own restart loop: client-node's ListWatch re-lists on 410 and reconnects after a clean stream end, but
 * on any other error (500, connection reset, DNS) it emits `error` and stops for good. We restart it with capped,
 * jittered exponential backoff so a flapping API server is retried, never hammered. While a watch is down the
 * last-known-good view stays in the datastore: endpoints do not vanish because the control plane hiccupped.
 */
import { existsSync } from "node:fs";
import {
  HttpMethod,
  KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  ListWatch,
  RequestContext,
  Watch,
} from "@kubernetes/client-node";
import { fetch } from "undici";
import { POOL_GROUP, POOL_VERSION, X_GROUP, X_VERSION } from "../common/constants.js";
import { ConfigError } from "../common/errors.js";
import { type ApplyReport, Datastore } from "../datastore/datastore.js";
import type { ModelSpec, ObjectiveSpec, PodSpec, PoolSpec, ResourceSet, RewriteSpec } from "../datastore/types.js";
import { type Logger, silentLogger } from "../observability/logger.js";
import { type NormalizedObject, normalizeObject, ResourceError } from "./normalize.js";

/** Default debounce between an informer event and the snapshot push. */
export const DEFAULT_DEBOUNCE_MS = 20;
/** Default restart backoff after a failed list/watch: first delay and cap. */
export const DEFAULT_BACKOFF_INITIAL_MS = 250;
export const DEFAULT_BACKOFF_MAX_MS = 30_000;
/** A list call that has not answered after this long is abandoned and retried. */
const LIST_TIMEOUT_MS = 60_000;
/** A watch that stayed up this long before failing starts the backoff from the beginning again. */
const BACKOFF_RESET_AFTER_MS = 30_000;
/** Condition type and reasons written on InferenceModels (GIE, exact). */
export const CONDITION_ACCEPTED = "Accepted";
export const REASON_ACCEPTED = "Accepted";
export const REASON_MODEL_NAME_IN_USE = "ModelNameInUse";

const SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/**
 * Loads client configuration: an explicit kubeconfig file, else the in-cluster service account, else the default
 * chain ($KUBECONFIG, ~/.kube/config). Note client-node 2.x refuses `http://` servers unless the cluster entry sets
 * `insecure-skip-tls-verify: true`.
 */
export function loadKubeConfig(path?: string): KubeConfig {
  const kc = new KubeConfig();
  if (path !== undefined && path !== "") {
    if (!existsSync(path)) throw new ConfigError(`kubeconfig file not found: ${path}`, undefined, "--kubeconfig");
    try {
      kc.loadFromFile(path);
    } catch (err) {
      throw new ConfigError(`cannot load kubeconfig: ${(err as Error).message}`, path);
    }
  } else if (process.env.KUBERNETES_SERVICE_HOST && existsSync(SERVICE_ACCOUNT_TOKEN)) {
    kc.loadFromCluster();
  } else {
    kc.loadFromDefault();
  }
  if (kc.getCurrentCluster() === null) throw new ConfigError("kubeconfig has no current cluster", path);
  return kc;
}

/** An API server answer other than 2xx; `statusCode` is what ListWatch inspects for 410. */
export class KubernetesApiError extends Error {
  override readonly name = "KubernetesApiError";
  constructor(
    readonly statusCode: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

/** Group and plural of a collection path: `/apis/g/v/namespaces/n/r` → `["g", "r"]`; core group is `""`. */
export function groupResourceOfPath(path: string): { group: string; resource: string } {
  const parts = path.split("/").filter((p) => p !== "");
  const group = parts[0] === "apis" ? (parts[1] ?? "") : "";
  return { group, resource: parts.at(-1) ?? "" };
}

/**
 * The API server answered 403: the EPP's identity lacks a permission. Names the resource, the verb and the Role
 * rule that grants it (docs/kubernetes.md "Minimal Role").
 */
export class KubernetesForbiddenError extends ConfigError {
  readonly rule: string;
  constructor(
    readonly resource: string,
    readonly group: string,
    readonly verb: string,
    readonly namespace: string,
    detail: string,
  ) {
    const rule = `{apiGroups: ["${group}"], resources: ["${resource}"], verbs: ["get", "list", "watch"]}`;
    const what = group === "" ? resource : `${resource}.${group}`;
    super(
      `forbidden: cannot ${verb} ${what} in namespace "${namespace}" (HTTP 403: ${detail}); add this rule to ` +
        `the EPP's Role: ${rule}`,
    );
    this.rule = rule;
  }
}

function statusCodeOf(err: unknown): number | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const e = err as { statusCode?: unknown; code?: unknown };
  if (typeof e.statusCode === "number") return e.statusCode;
  if (typeof e.code === "number") return e.code;
  return undefined;
}

function errorMessage(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as { cause?: unknown }).cause;
    return cause instanceof Error ? `${err.message} (${cause.message})` : err.message;
  }
  return String(err);
}

/** Equal jitter: half the exponential delay fixed, half random, so retries spread out but never tight-loop. */
export function backoffDelay(attempt: number, initialMs: number, maxMs: number, random: () => number): number {
  const exp = Math.min(maxMs, initialMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(exp / 2 + (random() * exp) / 2);
}

/** Minimal raw client: JSON in, JSON out, using the kubeconfig's auth and TLS (the same path Watch uses). */
class RawClient {
  readonly #kc: KubeConfig;
  readonly #server: string;

  constructor(kc: KubeConfig) {
    const cluster = kc.getCurrentCluster();
    if (cluster === null) throw new ConfigError("kubeconfig has no current cluster");
    this.#kc = kc;
    this.#server = cluster.server.replace(/\/+$/, "");
  }

  async request(
    method: "GET" | "PATCH",
    path: string,
    query: Readonly<Record<string, string | undefined>> = {},
    body?: { contentType: string; value: unknown },
  ): Promise<unknown> {
    const url = new URL(this.#server + path);
    for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, v);
    const ctx = new RequestContext(url.toString(), method === "GET" ? HttpMethod.GET : HttpMethod.PATCH);
    await this.#kc.applySecurityAuthentication(ctx);
    const headers = ctx.getHeaders() as unknown as Record<string, string>;
    const init: Parameters<typeof fetch>[1] = {
      method,
      headers: body ? { ...headers, "content-type": body.contentType, accept: "application/json" } : headers,
      signal: AbortSignal.timeout(LIST_TIMEOUT_MS),
    };
    const dispatcher = ctx.getDispatcher();
    if (dispatcher !== undefined) init.dispatcher = dispatcher as unknown as NonNullable<typeof init.dispatcher>;
    if (body) init.body = JSON.stringify(body.value);
    const res = await fetch(url, init);
    const text = await res.text();
    if (res.status < 200 || res.status > 299) {
      let reason = "";
      let message = text.slice(0, 300);
      try {
        const status = JSON.parse(text) as { reason?: string; message?: string };
        reason = status.reason ?? "";
        message = status.message ?? message;
      } catch {
        // Not a Status object (a proxy's HTML error page); keep the raw text.
      }
      throw new KubernetesApiError(res.status, reason, `${method} ${path}: HTTP ${res.status} ${reason} ${message}`);
    }
    return text === "" ? undefined : JSON.parse(text);
  }
}

/**
 * Watch.watch() authenticates before its own try block, so an auth failure (unreadable token file, http without
 * skip-tls) would reject inside ListWatch's reconnect path as an unhandled rejection. Route it to `done` instead.
 * It also asks for bookmarks, which client-node's ListWatch handles but never requests.
 */
class SafeWatch extends Watch {
  readonly #onExpired: () => void;

  constructor(kc: KubeConfig, onExpired: () => void) {
    super(kc);
    this.#onExpired = onExpired;
  }

  override async watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    try {
      // Bookmarks move a quiet watch's resume point forward (a pod watch whose selector matches nothing that
      // changed), so a reconnect resumes instead of re-listing after 410; see docs/kubernetes.md.
      const cb = (phase: string, apiObj: unknown, watchObj?: unknown): void => {
        // ListWatch re-lists on this by itself; it is worth one log line (a restarted API server causes it).
        if (phase === "ERROR" && (apiObj as { code?: unknown } | null)?.code === 410) this.#onExpired();
        callback(phase, apiObj, watchObj);
      };
      return await super.watch(path, { ...queryParams, allowWatchBookmarks: true }, cb, done);
    } catch (err) {
      done(err);
      return new AbortController();
    }
  }
}

type KindName = NormalizedObject["kind"];

/** `/api/v1/namespaces/x/pods` → `v1`; `/apis/g/v/namespaces/x/r` → `g/v`. */
export function apiVersionOfPath(path: string): string {
  const parts = path.split("/").filter((p) => p !== "");
  if (parts[0] === "api" && parts[1] !== undefined) return parts[1];
  if (parts[0] === "apis" && parts[1] !== undefined && parts[2] !== undefined) return `${parts[1]}/${parts[2]}`;
  return "";
}

/**
 * The API server leaves `kind` and `apiVersion` off the items of a built-in list (a PodList's pods have neither;
 * custom-resource lists and watch events do carry them), see docs/kubernetes.md "List items". Items get them from
 * the list (`PodList` → `Pod`), else from the collection that was asked for, so every later consumer (normalising,
 * status writes) sees complete objects whichever way they arrived. Values already present are kept.
 */
export function fillListTypeMeta(
  list: { kind?: string; apiVersion?: string; items: unknown[] },
  kind: string,
  apiVersion: string,
): void {
  const listKind = typeof list.kind === "string" && list.kind.endsWith("List") ? list.kind.slice(0, -4) : "";
  const itemKind = listKind !== "" ? listKind : kind;
  const itemApiVersion = typeof list.apiVersion === "string" && list.apiVersion !== "" ? list.apiVersion : apiVersion;
  for (const item of list.items) {
    if (typeof item !== "object" || item === null || Array.isArray(item)) continue;
    const obj = item as { kind?: unknown; apiVersion?: unknown };
    if (obj.kind === undefined || obj.kind === null || obj.kind === "") obj.kind = itemKind;
    if (obj.apiVersion === undefined || obj.apiVersion === null || obj.apiVersion === "") {
      obj.apiVersion = itemApiVersion;
    }
  }
}

interface ResourceWatchOptions {
  readonly kind: KindName;
  /** API path of the namespaced collection, e.g. `/api/v1/namespaces/default/pods`. */
  readonly path: string;
  readonly labelSelector?: string;
  readonly fieldSelector?: string;
  /**
   * 404 (CRD not installed) and 403 (not granted) are survivable: treat as an empty, synced collection and look
   * again slowly. For a required collection a 403 before the first sync is fatal (`onFatal`).
   */
  readonly optional: boolean;
  /** Returns false when the failure is no longer fatal (the source synced already): retry as usual. */
  readonly onFatal: (err: Error) => boolean;
  readonly kc: KubeConfig;
  readonly client: RawClient;
  readonly logger: Logger;
  readonly namespace: string;
  readonly backoffInitialMs: number;
  readonly backoffMaxMs: number;
  readonly random: () => number;
  readonly onChange: () => void;
}

/** One informer plus its restart loop and a memo of normalised objects (keyed by resourceVersion). */
class ResourceWatch {
  readonly kind: KindName;
  readonly labelSelector: string | undefined;
  /** First list done (or the resource is absent): the collection's contents are known. */
  synced = false;
  /** The API server answered 404 (CRD missing) or 403 (not granted) for the collection. */
  absent = false;
  /** The last failure was a 403. */
  forbidden = false;
  /** Which request is under way, for error messages: list, then watch. */
  #verb: "list" | "watch" = "list";
  readonly #o: ResourceWatchOptions;
  readonly #informer: ListWatch<KubernetesObject>;
  #stopped = false;
  #attempt = 0;
  #startedAt = 0;
  #timer: NodeJS.Timeout | undefined;
  #memo = new Map<string, { rv: string; result: NormalizedObject | undefined }>();

  constructor(o: ResourceWatchOptions) {
    this.#o = o;
    this.kind = o.kind;
    this.labelSelector = o.labelSelector;
    const listFn = async (): Promise<KubernetesListObject<KubernetesObject>> => {
      this.#verb = "list";
      const list = (await o.client.request("GET", o.path, {
        labelSelector: o.labelSelector,
        fieldSelector: o.fieldSelector,
      })) as KubernetesListObject<KubernetesObject> | undefined;
      if (list === undefined || !Array.isArray(list.items)) {
        throw new KubernetesApiError(500, "BadList", `GET ${o.path}: response is not a list`);
      }
      fillListTypeMeta(list, o.kind, apiVersionOfPath(o.path));
      if (this.absent) o.logger.info({ resource: o.path }, "resource is listed again");
      this.absent = false;
      this.forbidden = false;
      // ListWatch opens the watch next.
      this.#verb = "watch";
      // ListWatch applies the items right after this resolves; the debounced flush runs after that.
      queueMicrotask(() => {
        this.synced = true;
        o.onChange();
      });
      return list;
    };
    this.#informer = new ListWatch(
      o.path,
      new SafeWatch(o.kc, () =>
        o.logger.info({ kind: o.kind, resource: o.path }, "watch expired (410 Expired); re-listing"),
      ),
      listFn,
      false,
      o.labelSelector,
      o.fieldSelector,
    );
    this.#informer.on("change", () => {
      if (!this.#stopped) o.onChange();
    });
    this.#informer.on("error", (err: unknown) => this.#onError(err));
  }

  start(): void {
    if (this.#stopped) return;
    this.#startedAt = performance.now();
    this.#informer.start().catch((err: unknown) => this.#onError(err));
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    void this.#informer.stop();
  }

  /** Normalised objects; rejected ones are logged once per resourceVersion and left out. */
  specs(): NormalizedObject[] {
    if (this.absent) return [];
    const next = new Map<string, { rv: string; result: NormalizedObject | undefined }>();
    const out: NormalizedObject[] = [];
    for (const obj of this.#informer.list()) {
      const key = `${obj.metadata?.namespace ?? ""}/${obj.metadata?.name ?? ""}`;
      const rv = obj.metadata?.resourceVersion ?? "";
      let entry = this.#memo.get(key);
      if (entry === undefined || entry.rv !== rv || rv === "") {
        entry = { rv, result: this.#normalize(obj) };
      }
      next.set(key, entry);
      if (entry.result !== undefined) out.push(entry.result);
    }
    this.#memo = next;
    return out;
  }

  /** The raw object as last seen (for status writes: current conditions and resourceVersion). */
  raw(namespace: string, name: string): KubernetesObject | undefined {
    return this.#informer.get(name, namespace);
  }

  #normalize(obj: KubernetesObject): NormalizedObject | undefined {
    try {
      const n = normalizeObject(obj, "k8s", { defaultNamespace: this.#o.namespace });
      if (n.kind !== this.kind) throw new Error(`expected kind ${this.kind}, got ${n.kind}`);
      return n;
    } catch (err) {
      const e = err instanceof ResourceError ? err : undefined;
      this.#o.logger.warn(
        {
          kind: this.kind,
          name: obj.metadata?.name,
          namespace: obj.metadata?.namespace,
          field: e?.field,
          reason: errorMessage(err),
        },
        "ignoring invalid object",
      );
      return undefined;
    }
  }

  #onError(err: unknown): void {
    // ListWatch reports the abort of its own request after stop(); that is not a failure.
    if (this.#stopped) return;
    const o = this.#o;
    const status = statusCodeOf(err);
    if (performance.now() - this.#startedAt > BACKOFF_RESET_AFTER_MS) this.#attempt = 0;
    let delay: number;
    const forbidden =
      status === 403
        ? new KubernetesForbiddenError(
            groupResourceOfPath(o.path).resource,
            groupResourceOfPath(o.path).group,
            this.#verb,
            o.namespace,
            errorMessage(err),
          )
        : undefined;
    // Without pools or pods the EPP can route nothing; say exactly what to grant instead of retrying forever.
    if (forbidden !== undefined && !o.optional && !this.synced && o.onFatal(forbidden)) return;
    if (forbidden !== undefined && o.optional) {
      const first = !this.forbidden;
      this.forbidden = true;
      this.absent = true;
      const wasSynced = this.synced;
      this.synced = true;
      if (first)
        o.logger.error(
          { kind: this.kind, resource: o.path, rule: forbidden.rule },
          `${forbidden.message}; running without ${this.kind}s`,
        );
      if (first || !wasSynced) o.onChange();
      delay = backoffDelay(Number.POSITIVE_INFINITY, o.backoffInitialMs, o.backoffMaxMs, o.random);
    } else if (status === 404) {
      const first = !this.absent;
      this.absent = true;
      const wasSynced = this.synced;
      this.synced = true;
      if (first) {
        const fields = { kind: this.kind, resource: o.path };
        if (o.optional) o.logger.info(fields, "resource not served (CRD not installed?); treating as empty");
        else o.logger.error(fields, "resource not served (CRD not installed?); retrying");
      }
      if (first || !wasSynced) o.onChange();
      // A missing CRD is not an outage: poll for it at the slowest rate, or back off normally when it is required.
      delay = o.optional
        ? backoffDelay(Number.POSITIVE_INFINITY, o.backoffInitialMs, o.backoffMaxMs, o.random)
        : backoffDelay(++this.#attempt, o.backoffInitialMs, o.backoffMaxMs, o.random);
    } else {
      delay = backoffDelay(++this.#attempt, o.backoffInitialMs, o.backoffMaxMs, o.random);
      o.logger.warn(
        { kind: this.kind, resource: o.path, status, attempt: this.#attempt, retryInMs: delay, err: errorMessage(err) },
        "list/watch failed; restarting informer",
      );
    }
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.start();
    }, delay);
  }
}

export interface KubernetesSourceOptions {
  /** kubeconfig file; default: in-cluster service account, else $KUBECONFIG / ~/.kube/config. */
  readonly kubeconfig?: string;
  /** Namespace of the pool and every watched object. */
  readonly namespace: string;
  /** InferencePool name; required unless `standalone` is set. */
  readonly poolName?: string;
  /** API group of the pool (default `inference.networking.k8s.io`; `inference.networking.x-k8s.io` = legacy v1alpha2). */
  readonly poolGroup?: string;
  readonly datastore: Pick<Datastore, "apply">;
  readonly logger?: Logger;
  /** GIE standalone mode: no InferencePool, pods chosen by this selector and served on these ports. */
  readonly standalone?: {
    readonly selector: string | Readonly<Record<string, string>>;
    readonly targetPorts: readonly number[];
    /** Name of the synthesised pool; must equal the datastore's poolName (default "standalone"). */
    readonly poolName?: string;
  };
  /** Coalescing window between an informer event and the snapshot push (default 20 ms). */
  readonly debounceMs?: number;
  /** Restart backoff after list/watch failures (default 250 ms doubling to 30 s, equal jitter). */
  readonly backoff?: { readonly initialMs?: number; readonly maxMs?: number };
  /**
   * Whether to write the `Accepted` condition on InferenceModels now (default true). With leader election pass
   * `() => elector.isLeader` so only the leader writes, and call `resync()` when leadership is gained.
   */
  readonly writeStatus?: boolean | (() => boolean);
  /** Random source for jitter (tests). */
  readonly random?: () => number;
}

interface StatusAttempt {
  readonly signature: string;
  readonly failures: number;
  readonly retryAt: number;
}

/** Watches the cluster and keeps the datastore in sync. One instance serves one pool (or one standalone selector). */
export class KubernetesSource {
  readonly #namespace: string;
  readonly #poolName: string;
  readonly #poolGroup: string;
  readonly #datastore: Pick<Datastore, "apply">;
  readonly #logger: Logger;
  readonly #standalonePool: PoolSpec | undefined;
  readonly #debounceMs: number;
  readonly #backoffInitialMs: number;
  readonly #backoffMaxMs: number;
  readonly #writeStatus: () => boolean;
  readonly #random: () => number;
  readonly #kubeconfigPath: string | undefined;

  #kc: KubeConfig | undefined;
  #client: RawClient | undefined;
  #watches: ResourceWatch[] = [];
  #modelWatch: ResourceWatch | undefined;
  #podWatch: ResourceWatch | undefined;
  #poolWatch: ResourceWatch | undefined;
  #flushTimer: NodeJS.Timeout | undefined;
  #started = false;
  #stopped = false;
  #syncedOnce = false;
  #resolveStart: (() => void) | undefined;
  #rejectStart: ((err: Error) => void) | undefined;
  #lastReport: ApplyReport | undefined;
  #statusInFlight = new Set<string>();
  #statusAttempts = new Map<string, StatusAttempt>();

  constructor(options: KubernetesSourceOptions) {
    if (typeof options !== "object" || options === null) throw new ConfigError("options are required");
    if (typeof options.namespace !== "string" || options.namespace === "") {
      throw new ConfigError("must be a non-empty string", undefined, "--pool-namespace");
    }
    if (typeof options.datastore?.apply !== "function") throw new ConfigError("datastore with apply() is required");
    const poolGroup = options.poolGroup ?? POOL_GROUP;
    if (poolGroup !== POOL_GROUP && poolGroup !== X_GROUP) {
      throw new ConfigError(`must be "${POOL_GROUP}" or "${X_GROUP}", got "${poolGroup}"`, undefined, "--pool-group");
    }
    const debounceMs = options.debounceMs ?? DEFAULT_DEBOUNCE_MS;
    if (!Number.isFinite(debounceMs) || debounceMs < 0) throw new ConfigError("debounceMs must be >= 0");
    const initial = options.backoff?.initialMs ?? DEFAULT_BACKOFF_INITIAL_MS;
    const max = options.backoff?.maxMs ?? DEFAULT_BACKOFF_MAX_MS;
    if (!(initial > 0) || !(max >= initial)) throw new ConfigError("backoff needs 0 < initialMs <= maxMs");

    if (options.standalone !== undefined) {
      this.#standalonePool = Datastore.standalonePool(
        options.standalone.selector,
        options.standalone.targetPorts,
        options.namespace,
        options.standalone.poolName,
      );
      this.#poolName = this.#standalonePool.name;
    } else {
      if (typeof options.poolName !== "string" || options.poolName === "") {
        throw new ConfigError("required unless --endpoint-selector is set", undefined, "--pool-name");
      }
      this.#poolName = options.poolName;
    }
    this.#namespace = options.namespace;
    this.#poolGroup = poolGroup;
    this.#datastore = options.datastore;
    this.#logger = (options.logger ?? silentLogger).child({ component: "kubernetes-source" });
    this.#debounceMs = debounceMs;
    this.#backoffInitialMs = initial;
    this.#backoffMaxMs = max;
    const ws = options.writeStatus ?? true;
    this.#writeStatus = typeof ws === "function" ? ws : () => ws;
    this.#random = options.random ?? Math.random;
    this.#kubeconfigPath = options.kubeconfig;
  }

  /** The last ApplyReport from the datastore (for /debug). */
  get lastReport(): ApplyReport | undefined {
    return this.#lastReport;
  }

  /** Resolves after the first complete snapshot has been applied; rejects if stop() comes first. */
  start(): Promise<void> {
    if (this.#started) throw new Error("KubernetesSource already started");
    this.#started = true;
    try {
      this.#kc = loadKubeConfig(this.#kubeconfigPath);
      this.#client = new RawClient(this.#kc);
    } catch (err) {
      return Promise.reject(err);
    }
    const ns = encodeURIComponent(this.#namespace);
    const promise = new Promise<void>((resolve, reject) => {
      this.#resolveStart = resolve;
      this.#rejectStart = reject;
    });
    if (this.#standalonePool === undefined) {
      const version = this.#poolGroup === POOL_GROUP ? POOL_VERSION : X_VERSION;
      this.#poolWatch = this.#watch({
        kind: "InferencePool",
        path: `/apis/${this.#poolGroup}/${version}/namespaces/${ns}/inferencepools`,
        // Only our pool: other pools' churn in the namespace is not our business.
        fieldSelector: `metadata.name=${this.#poolName}`,
        optional: false,
      });
    }
    const x = `/apis/${X_GROUP}/${X_VERSION}/namespaces/${ns}`;
    this.#modelWatch = this.#watch({ kind: "InferenceModel", path: `${x}/inferencemodels`, optional: true });
    this.#watch({ kind: "InferenceObjective", path: `${x}/inferenceobjectives`, optional: true });
    this.#watch({ kind: "InferenceModelRewrite", path: `${x}/inferencemodelrewrites`, optional: true });
    if (this.#standalonePool !== undefined) this.#ensurePodWatch(this.#standalonePool.selector);
    for (const w of this.#watches) w.start();
    if (this.#podWatch !== undefined && !this.#watches.includes(this.#podWatch)) this.#podWatch.start();
    return promise;
  }

  /** Stops every informer and timer. Idempotent. */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#flushTimer !== undefined) clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    for (const w of this.#watches) w.stop();
    this.#podWatch?.stop();
    this.#rejectStart?.(new Error("KubernetesSource stopped before the first sync"));
    this.#resolveStart = undefined;
    this.#rejectStart = undefined;
  }

  /** Before the first sync: reject start() and stop. Later (a Role edited under a running EPP): log, keep serving. */
  #fatal(err: Error): boolean {
    if (this.#syncedOnce || this.#stopped) return false;
    this.#logger.error({ err: err.message }, "cannot watch a required resource");
    const reject = this.#rejectStart;
    this.#rejectStart = undefined;
    this.#resolveStart = undefined;
    this.stop();
    reject?.(err);
    return true;
  }

  /** Re-pushes the current view and re-evaluates status writes (e.g. after this replica became leader). */
  resync(): void {
    this.#statusAttempts.clear();
    this.#scheduleFlush(0);
  }

  #watch(o: Pick<ResourceWatchOptions, "kind" | "path" | "fieldSelector" | "labelSelector" | "optional">) {
    const w = this.#newWatch(o);
    this.#watches.push(w);
    return w;
  }

  #newWatch(o: Pick<ResourceWatchOptions, "kind" | "path" | "fieldSelector" | "labelSelector" | "optional">) {
    return new ResourceWatch({
      ...o,
      kc: this.#kc!,
      client: this.#client!,
      logger: this.#logger,
      namespace: this.#namespace,
      backoffInitialMs: this.#backoffInitialMs,
      backoffMaxMs: this.#backoffMaxMs,
      random: this.#random,
      onChange: () => this.#scheduleFlush(this.#debounceMs),
      onFatal: (err) => this.#fatal(err),
    });
  }

  /** Re-creates the pod informer when the selector changes (a label selector cannot be changed on a live watch). */
  #ensurePodWatch(selector: Readonly<Record<string, string>> | undefined): boolean {
    const want = selector === undefined ? undefined : selectorString(selector);
    if (this.#podWatch?.labelSelector === want && (want !== undefined || this.#podWatch === undefined)) return false;
    if (this.#podWatch !== undefined) {
      this.#podWatch.stop();
      this.#logger.info({ from: this.#podWatch.labelSelector, to: want }, "pod selector changed; re-watching pods");
    }
    this.#podWatch = undefined;
    if (want === undefined) return true;
    this.#podWatch = this.#newWatch({
      kind: "Pod",
      path: `/api/v1/namespaces/${encodeURIComponent(this.#namespace)}/pods`,
      labelSelector: want,
      optional: false,
    });
    return true;
  }

  #scheduleFlush(delayMs: number): void {
    if (this.#stopped) return;
    if (this.#flushTimer !== undefined) {
      if (delayMs > 0) return;
      clearTimeout(this.#flushTimer);
    }
    this.#flushTimer = setTimeout(() => {
      this.#flushTimer = undefined;
      this.#flush();
    }, delayMs);
  }

  #flush(): void {
    if (this.#stopped) return;
    const pools: PoolSpec[] = [];
    let ourPool: PoolSpec | undefined;
    if (this.#standalonePool !== undefined) {
      pools.push(this.#standalonePool);
      ourPool = this.#standalonePool;
    } else if (this.#poolWatch !== undefined) {
      for (const n of this.#poolWatch.specs()) {
        if (n.kind !== "InferencePool") continue;
        pools.push(n.spec);
        if (n.spec.name === this.#poolName && n.spec.namespace === this.#namespace) ourPool = n.spec;
      }
    }
    // Wait for the first list of every collection before the first push: a partial view would briefly drop
    // models or endpoints that exist.
    if (!this.#watches.every((w) => w.synced)) return;
    if (this.#ensurePodWatch(ourPool?.selector)) {
      this.#podWatch?.start();
      // Hold the push until the new pod list arrives so endpoints switch selectors atomically.
      if (this.#podWatch !== undefined) return;
    }
    if (this.#podWatch !== undefined && !this.#podWatch.synced) return;

    const models: ModelSpec[] = [];
    const objectives: ObjectiveSpec[] = [];
    const rewrites: RewriteSpec[] = [];
    const pods: PodSpec[] = [];
    for (const w of this.#watches) {
      if (w === this.#poolWatch) continue;
      for (const n of w.specs()) {
        if (n.kind === "InferenceModel") models.push(n.spec);
        else if (n.kind === "InferenceObjective") objectives.push(n.spec);
        else if (n.kind === "InferenceModelRewrite") rewrites.push(n.spec);
      }
    }
    if (this.#podWatch !== undefined) {
      for (const n of this.#podWatch.specs()) if (n.kind === "Pod") pods.push(n.spec);
    }
    const set: ResourceSet = { pools, models, objectives, rewrites, pods };
    let report: ApplyReport;
    try {
      report = this.#datastore.apply(set);
    } catch (err) {
      this.#logger.error({ err: errorMessage(err) }, "datastore rejected the snapshot");
      if (!this.#syncedOnce) {
        this.#rejectStart?.(err instanceof Error ? err : new Error(String(err)));
        this.#resolveStart = undefined;
        this.#rejectStart = undefined;
      }
      return;
    }
    this.#lastReport = report;
    if (!this.#syncedOnce) {
      this.#syncedOnce = true;
      this.#logger.info(
        {
          pool: ourPool === undefined ? undefined : `${ourPool.namespace}/${ourPool.name}`,
          pods: pods.length,
          models: models.length,
          objectives: objectives.length,
          rewrites: rewrites.length,
        },
        "initial sync complete",
      );
      this.#resolveStart?.();
      this.#resolveStart = undefined;
      this.#rejectStart = undefined;
    }
    this.#writeModelStatuses(models, report);
  }

  /**
   * Best effort: the `Accepted` condition on our InferenceModels, ModelNameInUse for conflict losers. Writes only
   * when the condition differs, never blocks the snapshot path, and backs off per object when a write fails.
   */
  #writeModelStatuses(models: readonly ModelSpec[], report: ApplyReport): void {
    if (this.#modelWatch === undefined || this.#modelWatch.absent) return;
    let allowed: boolean;
    try {
      allowed = this.#writeStatus();
    } catch {
      allowed = false;
    }
    if (!allowed) return;
    const losers = new Map<string, string>();
    for (const c of report.modelConflicts) for (const l of c.losers) losers.set(l, c.winner);
    const now = Date.now();
    for (const m of models) {
      if (m.namespace !== this.#namespace || m.poolRef !== this.#poolName) continue;
      const raw = this.#modelWatch.raw(m.namespace, m.name) as
        | (KubernetesObject & { status?: { conditions?: Condition[] } })
        | undefined;
      if (raw === undefined) continue;
      const winner = losers.get(m.name);
      const generation = raw.metadata?.generation;
      const desired: Omit<Condition, "lastTransitionTime"> =
        winner === undefined
          ? {
              type: CONDITION_ACCEPTED,
              status: "True",
              reason: REASON_ACCEPTED,
              message: "",
              ...(generation !== undefined ? { observedGeneration: generation } : {}),
            }
          : {
              type: CONDITION_ACCEPTED,
              status: "False",
              reason: REASON_MODEL_NAME_IN_USE,
              message: `modelName "${m.modelName}" is already in use by InferenceModel ${winner}`,
              ...(generation !== undefined ? { observedGeneration: generation } : {}),
            };
      const conditions = Array.isArray(raw.status?.conditions) ? raw.status.conditions : [];
      const current = conditions.find((c) => c?.type === CONDITION_ACCEPTED);
      if (
        current !== undefined &&
        current.status === desired.status &&
        current.reason === desired.reason &&
        (current.message ?? "") === desired.message &&
        current.observedGeneration === desired.observedGeneration
      ) {
        this.#statusAttempts.delete(m.name);
        continue;
      }
      const signature = `${raw.metadata?.resourceVersion}|${desired.status}|${desired.reason}|${desired.message}`;
      if (this.#statusInFlight.has(m.name)) continue;
      const prev = this.#statusAttempts.get(m.name);
      if (prev !== undefined && prev.signature === signature && now < prev.retryAt) continue;
      const next: Condition = {
        ...desired,
        lastTransitionTime:
          current !== undefined && current.status === desired.status && current.lastTransitionTime
            ? current.lastTransitionTime
            : new Date(now).toISOString().replace(/\.\d{3}Z$/, "Z"),
      };
      const patch = {
        // resourceVersion makes the merge patch conditional: a concurrent writer wins, we re-evaluate on its event.
        metadata: { resourceVersion: raw.metadata?.resourceVersion },
        status: { conditions: [...conditions.filter((c) => c?.type !== CONDITION_ACCEPTED), next] },
      };
      this.#statusInFlight.add(m.name);
      const path = `/apis/${X_GROUP}/${X_VERSION}/namespaces/${encodeURIComponent(m.namespace)}/inferencemodels/${encodeURIComponent(m.name)}/status`;
      this.#client!.request("PATCH", path, {}, { contentType: "application/merge-patch+json", value: patch }).then(
        () => {
          this.#statusInFlight.delete(m.name);
          this.#statusAttempts.delete(m.name);
        },
        (err: unknown) => {
          this.#statusInFlight.delete(m.name);
          const failures = (prev?.signature === signature ? prev.failures : 0) + 1;
          const wait = backoffDelay(failures, 1000, this.#backoffMaxMs, this.#random);
          this.#statusAttempts.set(m.name, { signature, failures, retryAt: Date.now() + wait });
          const status = statusCodeOf(err);
          // 409 = the object changed under us; its watch event re-runs this with fresh data.
          const level = status === 409 ? "debug" : "warn";
          this.#logger[level](
            { kind: "InferenceModel", name: m.name, status, err: errorMessage(err) },
            "status update failed",
          );
          if (status !== 409 && !this.#stopped) {
            setTimeout(() => this.#scheduleFlush(this.#debounceMs), wait).unref();
          }
        },
      );
    }
  }
}

interface Condition {
  type: string;
  status: "True" | "False" | "Unknown";
  reason: string;
  message?: string;
  lastTransitionTime?: string;
  observedGeneration?: number;
}

/** `{b: "2", a: "1"}` → `a=1,b=2` (sorted so equal selectors compare equal). */
export function selectorString(selector: Readonly<Record<string, string>>): string {
  return Object.keys(selector)
    .sort()
    .map((k) => `${k}=${selector[k]}`)
    .join(",");
}
