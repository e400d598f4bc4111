/**
 * A small, faithful-enough Kubernetes API server on loopback for source and leader-election tests.
 *
 * It serves the REST shapes client-node's list/watch and typed clients use: collection list (with
 * `metadata.resourceVersion`), chunked watch streams (`?watch=true`, one JSON event per line), get/create/replace/
 * merge-or-json-patch/delete, and the `status` subresource. Tests drive it directly (create/update/remove) and can
 * inject the failures informers must survive: expired resourceVersions, dropped watch connections, and bursts of 500s.
 * Every request is recorded so tests can count them.
 *
 * Where it matters to a client it answers the way a real kube-apiserver v1.34 does (docs/kubernetes.md):
 * - items of a built-in list (PodList, LeaseList, …) carry no `kind`/`apiVersion`; custom-resource list items and
 *   every watch event object do;
 * - a watch from a too-old resourceVersion answers HTTP 200 and then one in-stream ERROR event (Status 410 Expired),
 *   never an HTTP 410;
 * - with `allowWatchBookmarks=true` a watch gets BOOKMARK events (`bookmark()`, or every `bookmarkIntervalMs`).
 */
import { randomUUID } from "node:crypto";
import { writeFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { stringify } from "yaml";

export interface FakeObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    generation?: number;
    creationTimestamp?: string;
    deletionTimestamp?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    [k: string]: unknown;
  };
  [k: string]: unknown;
}

export interface RequestRecord {
  readonly method: string;
  /** Path without the query string. */
  readonly path: string;
  readonly query: URLSearchParams;
  readonly watch: boolean;
  /** Status the fake answered with (200 for watch streams, also for one that ends with a 410 ERROR event). */
  status: number;
  /** A watch answered with the in-stream 410 Expired ERROR event because its resourceVersion was too old. */
  expired?: boolean;
}

export interface StatusWrite {
  readonly method: string;
  readonly contentType: string;
  readonly resource: string;
  readonly namespace: string;
  readonly name: string;
  readonly body: unknown;
}

type EventType = "ADDED" | "MODIFIED" | "DELETED";

interface StoredEvent {
  readonly rv: number;
  readonly resource: string;
  readonly type: EventType;
  readonly object: FakeObject;
  /** Previous state for MODIFIED, so selector-filtered watchers see ADDED/DELETED when membership changes. */
  readonly previous: FakeObject | undefined;
}

interface Watcher {
  readonly resource: string;
  readonly namespace: string | undefined;
  readonly labelSelector: string | undefined;
  readonly fieldSelector: string | undefined;
  readonly bookmarks: boolean;
  readonly res: http.ServerResponse;
}

interface ResourceInfo {
  readonly group: string;
  readonly version: string;
  readonly plural: string;
  readonly kind: string;
  /** Writes to the main resource keep `.status` (CRDs with a status subresource). */
  readonly hasStatus: boolean;
  /** A custom resource: its list items keep kind/apiVersion (built-in lists strip them). */
  readonly custom?: boolean;
}

/** The resources the fake serves unless a test removes some (to simulate missing CRDs). */
export const DEFAULT_RESOURCES: readonly ResourceInfo[] = [
  { group: "", version: "v1", plural: "pods", kind: "Pod", hasStatus: true },
  { group: "coordination.k8s.io", version: "v1", plural: "leases", kind: "Lease", hasStatus: false },
  {
    group: "inference.networking.k8s.io",
    version: "v1",
    plural: "inferencepools",
    kind: "InferencePool",
    hasStatus: true,
    custom: true,
  },
  {
    group: "inference.networking.x-k8s.io",
    version: "v1alpha2",
    plural: "inferencepools",
    kind: "InferencePool",
    hasStatus: true,
    custom: true,
  },
  {
    group: "inference.networking.x-k8s.io",
    version: "v1alpha2",
    plural: "inferencemodels",
    kind: "InferenceModel",
    hasStatus: true,
    custom: true,
  },
  {
    group: "inference.networking.x-k8s.io",
    version: "v1alpha2",
    plural: "inferenceobjectives",
    kind: "InferenceObjective",
    hasStatus: true,
    custom: true,
  },
  {
    group: "inference.networking.x-k8s.io",
    version: "v1alpha2",
    plural: "inferencemodelrewrites",
    kind: "InferenceModelRewrite",
    hasStatus: true,
    custom: true,
  },
  // apps/v1 workloads with the `scale` subresource, for the autoscaler's patches.
  { group: "apps", version: "v1", plural: "deployments", kind: "Deployment", hasStatus: true },
  { group: "apps", version: "v1", plural: "statefulsets", kind: "StatefulSet", hasStatus: true },
];

/** Kinds whose `scale` subresource the fake serves (autoscaling/v1 Scale). */
const SCALABLE = new Set(["deployments", "statefulsets"]);

export interface ScaleWrite {
  readonly method: string;
  readonly contentType: string;
  readonly resource: string;
  readonly namespace: string;
  readonly name: string;
  readonly body: unknown;
  /** spec.replicas after the write. */
  readonly replicas: number;
}

export interface FakeApiServerOptions {
  /** Loopback address to bind (default 127.0.0.1). */
  host?: string;
  /** Resource keys (`group/version/plural`, core group as `/v1/pods`) NOT to serve: requests for them get 404. */
  omit?: readonly string[];
  /** Send a BOOKMARK to watches that asked for them this often (default: only when `bookmark()` is called). */
  bookmarkIntervalMs?: number;
}

export interface ExpireOptions {
  /**
   * How open watches learn about the expiry: `event` sends a watch ERROR event with code 410 and ends the stream;
   * `reconnect` drops the connections so the informer re-watches from its old resourceVersion and gets the 410
   * then (as an in-stream ERROR event after HTTP 200, like the real server).
   */
  via: "event" | "reconnect";
  /** Changes made while history is lost: applied to the store but never delivered to watchers. */
  whileExpired?: () => void;
}

function resourceKey(group: string, version: string, plural: string): string {
  return `${group}/${version}/${plural}`;
}

function clone<T>(v: T): T {
  return structuredClone(v);
}

function expiredEvent(message: string): string {
  const status = { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", reason: "Expired", code: 410 };
  return `${JSON.stringify({ type: "ERROR", object: { ...status, message } })}\n`;
}

function statusBody(code: number, reason: string, message: string): string {
  return JSON.stringify({ kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, code });
}

/** Equality-based label selectors: `k=v`, `k==v`, `k!=v`, `k`, `!k`, comma-separated (all must hold). */
export function matchesLabelSelector(labels: Readonly<Record<string, string>>, selector: string | undefined): boolean {
  if (selector === undefined || selector.trim() === "") return true;
  for (const raw of selector.split(",")) {
    const term = raw.trim();
    if (term === "") continue;
    const ne = term.indexOf("!=");
    if (ne !== -1) {
      if (labels[term.slice(0, ne).trim()] === term.slice(ne + 2).trim()) return false;
      continue;
    }
    const eq = term.indexOf("=");
    if (eq !== -1) {
      const key = term.slice(0, eq).trim();
      const value = term.slice(term[eq + 1] === "=" ? eq + 2 : eq + 1).trim();
      if (labels[key] !== value) return false;
      continue;
    }
    if (term.startsWith("!")) {
      if (term.slice(1) in labels) return false;
      continue;
    }
    if (!(term in labels)) return false;
  }
  return true;
}

function matchesFieldSelector(obj: FakeObject, selector: string | undefined): boolean {
  if (selector === undefined || selector.trim() === "") return true;
  for (const raw of selector.split(",")) {
    const [field, value] = raw.split("=").map((s) => s.trim());
    if (field === "metadata.name" && obj.metadata.name !== value) return false;
    if (field === "metadata.namespace" && obj.metadata.namespace !== value) return false;
  }
  return true;
}

/** RFC 7386 JSON merge patch. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== "object" || Array.isArray(patch)) return clone(patch);
  const out: Record<string, unknown> =
    target !== null && typeof target === "object" && !Array.isArray(target)
      ? { ...(target as Record<string, unknown>) }
      : {};
  for (const [k, v] of Object.entries(patch as Record<string, unknown>)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** RFC 6902 subset: add / replace / remove on object paths (enough for status writes). */
function jsonPatch(target: FakeObject, ops: unknown): FakeObject {
  if (!Array.isArray(ops)) throw new Error("json patch must be an array");
  const doc = clone(target) as unknown as Record<string, unknown>;
  for (const op of ops as { op: string; path: string; value?: unknown }[]) {
    const parts = op.path
      .split("/")
      .slice(1)
      .map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"));
    const last = parts.pop();
    if (last === undefined) throw new Error(`bad path ${op.path}`);
    let cur: Record<string, unknown> = doc;
    for (const p of parts) {
      if (cur[p] === undefined || cur[p] === null) cur[p] = {};
      cur = cur[p] as Record<string, unknown>;
    }
    if (op.op === "remove") delete cur[last];
    else if (op.op === "add" || op.op === "replace") cur[last] = clone(op.value);
    else throw new Error(`unsupported op ${op.op}`);
  }
  return doc as unknown as FakeObject;
}

export class FakeApiServer {
  readonly requests: RequestRecord[] = [];
  readonly statusWrites: StatusWrite[] = [];
  /** Writes to the `scale` subresource of deployments and statefulsets, in order. */
  readonly scaleWrites: ScaleWrite[] = [];
  #server: http.Server;
  #url = "";
  #rv = 1;
  /** Watches asking to resume from a resourceVersion below this get 410 Gone. */
  #compactedBelow = 0;
  #resources = new Map<string, ResourceInfo>();
  #store = new Map<string, Map<string, FakeObject>>();
  #log: StoredEvent[] = [];
  #watchers = new Set<Watcher>();
  #failNext = 0;
  #failFilter: ((r: RequestRecord) => boolean) | undefined;
  #silent = false;
  #bookmarkTimer: NodeJS.Timeout | undefined;
  #forbidden = new Set<string>();
  /** BOOKMARK events sent so far. */
  bookmarksSent = 0;

  private constructor(options: FakeApiServerOptions) {
    const omit = new Set(options.omit ?? []);
    for (const r of DEFAULT_RESOURCES) {
      const key = resourceKey(r.group, r.version, r.plural);
      if (!omit.has(key)) this.#resources.set(key, r);
    }
    this.#server = http.createServer((req, res) => {
      this.#handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) {
          res.writeHead(500, { "content-type": "application/json" });
          res.end(statusBody(500, "InternalError", String(err)));
        } else res.destroy();
      });
    });
  }

  static async start(options: FakeApiServerOptions = {}): Promise<FakeApiServer> {
    const s = new FakeApiServer(options);
    await new Promise<void>((resolve, reject) => {
      s.#server.once("error", reject);
      s.#server.listen(0, options.host ?? "127.0.0.1", () => resolve());
    });
    const addr = s.#server.address() as AddressInfo;
    s.#url = `http://${addr.address}:${addr.port}`;
    if (options.bookmarkIntervalMs !== undefined) {
      s.#bookmarkTimer = setInterval(() => s.bookmark(), options.bookmarkIntervalMs);
      s.#bookmarkTimer.unref();
    }
    return s;
  }

  get url(): string {
    return this.#url;
  }

  get resourceVersion(): number {
    return this.#rv;
  }

  /** Open watch streams right now. */
  get watchCount(): number {
    return this.#watchers.size;
  }

  /** Writes a kubeconfig pointing at this server; client-node 2.x needs insecure-skip-tls-verify for http://. */
  async writeKubeconfig(dir: string, namespace = "default"): Promise<string> {
    const file = join(dir, `kubeconfig-${randomUUID()}.yaml`);
    const config = {
      apiVersion: "v1",
      kind: "Config",
      clusters: [{ name: "fake", cluster: { server: this.#url, "insecure-skip-tls-verify": true } }],
      users: [{ name: "fake", user: { token: "fake-token" } }],
      contexts: [{ name: "fake", context: { cluster: "fake", user: "fake", namespace } }],
      "current-context": "fake",
    };
    await writeFile(file, stringify(config));
    return file;
  }

  // ---- test-side mutations -------------------------------------------------------------------------------------

  /** Creates (or fails if it exists). Fills uid, resourceVersion, generation and creationTimestamp when missing. */
  create(obj: FakeObject): FakeObject {
    const info = this.#infoFor(obj);
    const coll = this.#collection(info);
    const key = `${obj.metadata.namespace ?? ""}/${obj.metadata.name}`;
    if (coll.has(key)) throw new Error(`${obj.kind} ${key} already exists`);
    const stored = clone(obj);
    stored.metadata.uid ??= randomUUID();
    stored.metadata.generation ??= 1;
    stored.metadata.creationTimestamp ??= new Date().toISOString();
    stored.metadata.resourceVersion = String(++this.#rv);
    coll.set(key, stored);
    this.#emit(info, "ADDED", stored, undefined);
    return clone(stored);
  }

  /** Replaces the stored object (keeping uid/creationTimestamp), bumping resourceVersion; creates when absent. */
  update(obj: FakeObject): FakeObject {
    const info = this.#infoFor(obj);
    const coll = this.#collection(info);
    const key = `${obj.metadata.namespace ?? ""}/${obj.metadata.name}`;
    const previous = coll.get(key);
    if (!previous) return this.create(obj);
    return this.#replace(info, coll, key, previous, clone(obj), false);
  }

  /** Mutates a stored object in place through `fn` and stores the result as a new version. */
  modify(apiVersion: string, kind: string, namespace: string, name: string, fn: (obj: FakeObject) => void): FakeObject {
    const current = this.get(apiVersion, kind, namespace, name);
    if (!current) throw new Error(`${kind} ${namespace}/${name} not found`);
    fn(current);
    return this.update(current);
  }

  remove(apiVersion: string, kind: string, namespace: string, name: string): void {
    const info = this.#infoFor({ apiVersion, kind, metadata: { name } });
    const coll = this.#collection(info);
    const key = `${namespace}/${name}`;
    const previous = coll.get(key);
    if (!previous) throw new Error(`${kind} ${key} not found`);
    coll.delete(key);
    const gone = clone(previous);
    gone.metadata.resourceVersion = String(++this.#rv);
    this.#emit(info, "DELETED", gone, undefined);
  }

  get(apiVersion: string, kind: string, namespace: string, name: string): FakeObject | undefined {
    const info = this.#infoFor({ apiVersion, kind, metadata: { name } });
    const found = this.#collection(info).get(`${namespace}/${name}`);
    return found ? clone(found) : undefined;
  }

  /**
   * Loses watch history: changes in `whileExpired` are applied but never delivered, the history is compacted, and
   * open watches are told (per `via`). Informers can only converge by re-listing.
   */
  expire(options: ExpireOptions): void {
    this.#silent = true;
    try {
      options.whileExpired?.();
    } finally {
      this.#silent = false;
    }
    this.#rv++;
    this.#compactedBelow = this.#rv;
    this.#log = [];
    for (const w of this.#watchers) {
      if (options.via === "event") {
        w.res.write(expiredEvent("too old resource version"));
        w.res.end();
      } else w.res.destroy();
    }
    this.#watchers.clear();
  }

  /**
   * Sends a BOOKMARK (an object of the watched kind with only `metadata.resourceVersion`, the current one) to every
   * open watch that asked with `allowWatchBookmarks=true`.
   */
  bookmark(): void {
    for (const w of this.#watchers) {
      if (!w.bookmarks) continue;
      const info = this.#resources.get(w.resource);
      if (info === undefined) continue;
      const object = {
        kind: info.kind,
        apiVersion: info.group === "" ? info.version : `${info.group}/${info.version}`,
        metadata: { resourceVersion: String(this.#rv), annotations: {} },
      };
      w.res.write(`${JSON.stringify({ type: "BOOKMARK", object })}\n`);
      this.bookmarksSent++;
    }
  }

  /** Cuts every open watch connection (like an API server restart or a load balancer idle cut). */
  dropWatches(): void {
    for (const w of this.#watchers) w.res.destroy();
    this.#watchers.clear();
  }

  /** Answers the next `n` matching requests with 500 (Infinity = until `heal()`). */
  failNext(n: number, filter?: (r: RequestRecord) => boolean): void {
    this.#failNext = n;
    this.#failFilter = filter;
  }

  heal(): void {
    this.#failNext = 0;
    this.#failFilter = undefined;
  }

  /**
   * Answers 403 Forbidden for every request on a resource key (`group/version/plural`, core as `/v1/pods`), as RBAC
   * does when the Role lacks it: before looking the resource up, so even an uninstalled CRD answers 403.
   */
  forbid(key: string, forbidden = true): void {
    if (forbidden) this.#forbidden.add(key);
    else this.#forbidden.delete(key);
  }

  /** Starts (or stops) serving a resource, e.g. to install a CRD late. */
  setServed(key: string, served: boolean): void {
    if (!served) {
      this.#resources.delete(key);
      return;
    }
    const info = DEFAULT_RESOURCES.find((r) => resourceKey(r.group, r.version, r.plural) === key);
    if (!info) throw new Error(`unknown resource ${key}`);
    this.#resources.set(key, info);
  }

  async close(): Promise<void> {
    if (this.#bookmarkTimer !== undefined) clearInterval(this.#bookmarkTimer);
    for (const w of this.#watchers) w.res.destroy();
    this.#watchers.clear();
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }

  // ---- internals -----------------------------------------------------------------------------------------------

  #infoFor(obj: Pick<FakeObject, "apiVersion" | "kind" | "metadata">): ResourceInfo {
    const slash = obj.apiVersion.indexOf("/");
    const group = slash === -1 ? "" : obj.apiVersion.slice(0, slash);
    const version = slash === -1 ? obj.apiVersion : obj.apiVersion.slice(slash + 1);
    const info = DEFAULT_RESOURCES.find((r) => r.group === group && r.version === version && r.kind === obj.kind);
    if (!info) throw new Error(`fake apiserver does not know ${obj.apiVersion} ${obj.kind}`);
    return info;
  }

  #collection(info: ResourceInfo): Map<string, FakeObject> {
    const key = resourceKey(info.group, info.version, info.plural);
    let coll = this.#store.get(key);
    if (!coll) {
      coll = new Map();
      this.#store.set(key, coll);
    }
    return coll;
  }

  #replace(
    info: ResourceInfo,
    coll: Map<string, FakeObject>,
    key: string,
    previous: FakeObject,
    next: FakeObject,
    statusOnly: boolean,
  ): FakeObject {
    const stored: FakeObject = statusOnly ? { ...clone(previous), status: next.status } : next;
    if (!statusOnly && info.hasStatus && info.kind !== "Pod" && previous.status !== undefined)
      stored.status = clone(previous.status);
    stored.metadata = {
      ...(statusOnly ? previous.metadata : stored.metadata),
      uid: previous.metadata.uid,
      creationTimestamp: previous.metadata.creationTimestamp,
      resourceVersion: String(++this.#rv),
    };
    const specChanged = JSON.stringify(previous.spec) !== JSON.stringify(stored.spec);
    stored.metadata.generation = (previous.metadata.generation ?? 1) + (specChanged ? 1 : 0);
    coll.set(key, stored);
    this.#emit(info, "MODIFIED", stored, previous);
    return clone(stored);
  }

  #emit(info: ResourceInfo, type: EventType, object: FakeObject, previous: FakeObject | undefined): void {
    if (this.#silent) return;
    const resource = resourceKey(info.group, info.version, info.plural);
    const event: StoredEvent = { rv: this.#rv, resource, type, object: clone(object), previous };
    this.#log.push(event);
    for (const w of this.#watchers) this.#deliver(w, event);
  }

  #deliver(w: Watcher, ev: StoredEvent): void {
    if (w.resource !== ev.resource) return;
    if (w.namespace !== undefined && ev.object.metadata.namespace !== w.namespace) return;
    const matches = (o: FakeObject | undefined): boolean =>
      o !== undefined &&
      matchesLabelSelector(o.metadata.labels ?? {}, w.labelSelector) &&
      matchesFieldSelector(o, w.fieldSelector);
    let type: EventType | undefined = ev.type;
    if (ev.type === "MODIFIED") {
      const was = matches(ev.previous);
      const is = matches(ev.object);
      type = was && is ? "MODIFIED" : is ? "ADDED" : was ? "DELETED" : undefined;
    } else if (!matches(ev.object)) type = undefined;
    if (type === undefined) return;
    w.res.write(`${JSON.stringify({ type, object: ev.object })}\n`);
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://fake");
    const watchParam = url.searchParams.get("watch");
    const record: RequestRecord = {
      method: req.method ?? "GET",
      path: url.pathname,
      query: url.searchParams,
      watch: watchParam === "true" || watchParam === "1",
      status: 0,
    };
    this.requests.push(record);
    const body = await readBody(req);
    const send = (status: number, payload: string): void => {
      record.status = status;
      res.writeHead(status, { "content-type": "application/json" });
      res.end(payload);
    };

    if (this.#failNext > 0 && (this.#failFilter === undefined || this.#failFilter(record))) {
      this.#failNext--;
      send(500, statusBody(500, "InternalError", "injected failure"));
      return;
    }

    const route = parsePath(url.pathname);
    if (!route) {
      send(404, statusBody(404, "NotFound", `no route for ${url.pathname}`));
      return;
    }
    if (this.#forbidden.has(resourceKey(route.group, route.version, route.plural))) {
      const verb = route.name !== undefined ? "get" : record.watch ? "watch" : "list";
      send(
        403,
        statusBody(
          403,
          "Forbidden",
          `${route.plural}${route.group === "" ? "" : `.${route.group}`} is forbidden: User "system:serviceaccount:default:epp" cannot ${verb} resource "${route.plural}" in API group "${route.group}" in the namespace "${route.namespace ?? ""}"`,
        ),
      );
      return;
    }
    const info = this.#resources.get(resourceKey(route.group, route.version, route.plural));
    if (!info) {
      send(404, statusBody(404, "NotFound", `the server could not find the requested resource`));
      return;
    }
    const coll = this.#collection(info);
    const method = record.method;

    if (route.name === undefined) {
      if (method === "GET" && record.watch) {
        this.#startWatch(info, route.namespace, url.searchParams, res, record);
        return;
      }
      if (method === "GET") {
        const items = [...coll.values()]
          .filter(
            (o) =>
              (route.namespace === undefined || o.metadata.namespace === route.namespace) &&
              matchesLabelSelector(o.metadata.labels ?? {}, url.searchParams.get("labelSelector") ?? undefined) &&
              matchesFieldSelector(o, url.searchParams.get("fieldSelector") ?? undefined),
          )
          .map((o) => {
            if (info.custom === true) return o;
            const { kind: _kind, apiVersion: _apiVersion, ...item } = o;
            return item;
          });
        send(
          200,
          JSON.stringify({
            kind: `${info.kind}List`,
            apiVersion: info.group === "" ? info.version : `${info.group}/${info.version}`,
            metadata: { resourceVersion: String(this.#rv) },
            items,
          }),
        );
        return;
      }
      if (method === "POST") {
        const obj = JSON.parse(body) as FakeObject;
        obj.metadata.namespace = route.namespace ?? obj.metadata.namespace;
        const key = `${obj.metadata.namespace ?? ""}/${obj.metadata.name}`;
        if (coll.has(key)) {
          send(409, statusBody(409, "AlreadyExists", `${info.plural} "${obj.metadata.name}" already exists`));
          return;
        }
        delete obj.metadata.resourceVersion;
        send(201, JSON.stringify(this.create(obj)));
        return;
      }
      send(405, statusBody(405, "MethodNotAllowed", method));
      return;
    }

    const key = `${route.namespace ?? ""}/${route.name}`;
    const current = coll.get(key);
    if (!current) {
      send(404, statusBody(404, "NotFound", `${info.plural} "${route.name}" not found`));
      return;
    }
    const contentType = (req.headers["content-type"] ?? "").split(";")[0]!.trim();
    if (route.subresource === "status" && (method === "PUT" || method === "PATCH")) {
      this.statusWrites.push({
        method,
        contentType,
        resource: info.plural,
        namespace: route.namespace ?? "",
        name: route.name,
        body: body === "" ? undefined : JSON.parse(body),
      });
    }
    if (route.subresource === "scale" && SCALABLE.has(info.plural)) {
      this.#scale(info, coll, key, current, method, contentType, body, send);
      return;
    }
    if (route.subresource !== undefined && route.subresource !== "status") {
      send(404, statusBody(404, "NotFound", `subresource ${route.subresource}`));
      return;
    }
    switch (method) {
      case "GET":
        send(200, JSON.stringify(current));
        return;
      case "DELETE":
        this.remove(current.apiVersion, current.kind, route.namespace ?? "", route.name);
        send(200, statusBody(200, "", "deleted").replace('"Failure"', '"Success"'));
        return;
      case "PUT": {
        const obj = JSON.parse(body) as FakeObject;
        const want = obj.metadata?.resourceVersion;
        if (want !== undefined && want !== "" && want !== current.metadata.resourceVersion) {
          send(
            409,
            statusBody(409, "Conflict", `Operation cannot be fulfilled on ${info.plural} "${route.name}": modified`),
          );
          return;
        }
        obj.apiVersion ??= current.apiVersion;
        obj.kind ??= current.kind;
        const updated = this.#replace(info, coll, key, current, obj, route.subresource === "status");
        send(200, JSON.stringify(updated));
        return;
      }
      case "PATCH": {
        let patched: FakeObject;
        try {
          patched =
            contentType === "application/json-patch+json"
              ? jsonPatch(current, JSON.parse(body))
              : (mergePatch(current, JSON.parse(body)) as FakeObject);
        } catch (err) {
          send(422, statusBody(422, "Invalid", String(err)));
          return;
        }
        const updated = this.#replace(info, coll, key, current, patched, route.subresource === "status");
        send(200, JSON.stringify(updated));
        return;
      }
      default:
        send(405, statusBody(405, "MethodNotAllowed", method));
    }
  }

  /** The autoscaling/v1 Scale view of a workload: GET reads it, PUT/PATCH write spec.replicas through it. */
  #scale(
    info: ResourceInfo,
    coll: Map<string, FakeObject>,
    key: string,
    current: FakeObject,
    method: string,
    contentType: string,
    body: string,
    send: (status: number, payload: string) => void,
  ): void {
    const view = (o: FakeObject) => ({
      apiVersion: "autoscaling/v1",
      kind: "Scale",
      metadata: {
        name: o.metadata.name,
        namespace: o.metadata.namespace,
        uid: o.metadata.uid,
        resourceVersion: o.metadata.resourceVersion,
        creationTimestamp: o.metadata.creationTimestamp,
      },
      spec: { replicas: ((o.spec as Record<string, unknown> | undefined)?.replicas as number | undefined) ?? 1 },
      status: { replicas: ((o.status as Record<string, unknown> | undefined)?.replicas as number | undefined) ?? 0 },
    });
    if (method === "GET") {
      send(200, JSON.stringify(view(current)));
      return;
    }
    if (method !== "PUT" && method !== "PATCH") {
      send(405, statusBody(405, "MethodNotAllowed", method));
      return;
    }
    let next: { spec?: { replicas?: unknown } };
    try {
      const parsed = JSON.parse(body) as unknown;
      next =
        method === "PUT"
          ? (parsed as typeof next)
          : contentType === "application/json-patch+json"
            ? (jsonPatch(view(current) as unknown as FakeObject, parsed) as unknown as typeof next)
            : (mergePatch(view(current), parsed) as typeof next);
    } catch (err) {
      send(422, statusBody(422, "Invalid", String(err)));
      return;
    }
    const replicas = next.spec?.replicas;
    if (typeof replicas !== "number" || !Number.isInteger(replicas) || replicas < 0) {
      send(422, statusBody(422, "Invalid", `spec.replicas: Invalid value: ${JSON.stringify(replicas)}`));
      return;
    }
    const updated = this.#replace(
      info,
      coll,
      key,
      current,
      { ...clone(current), spec: { ...((current.spec as Record<string, unknown>) ?? {}), replicas } },
      false,
    );
    this.scaleWrites.push({
      method,
      contentType,
      resource: info.plural,
      namespace: current.metadata.namespace ?? "",
      name: current.metadata.name,
      body: JSON.parse(body) as unknown,
      replicas,
    });
    send(200, JSON.stringify(view(updated)));
  }

  #startWatch(
    info: ResourceInfo,
    namespace: string | undefined,
    params: URLSearchParams,
    res: http.ServerResponse,
    record: RequestRecord,
  ): void {
    const rvParam = params.get("resourceVersion") ?? "";
    const from = rvParam === "" || rvParam === "0" ? undefined : Number(rvParam);
    record.status = 200;
    res.writeHead(200, { "content-type": "application/json", "transfer-encoding": "chunked" });
    if (from !== undefined && (!Number.isFinite(from) || from < this.#compactedBelow)) {
      record.expired = true;
      res.end(expiredEvent(`too old resource version: ${rvParam} (${this.#compactedBelow})`));
      return;
    }
    res.flushHeaders();
    const watcher: Watcher = {
      resource: resourceKey(info.group, info.version, info.plural),
      namespace,
      labelSelector: params.get("labelSelector") ?? undefined,
      fieldSelector: params.get("fieldSelector") ?? undefined,
      bookmarks: params.get("allowWatchBookmarks") === "true",
      res,
    };
    if (from === undefined) {
      // No resourceVersion: "start at most recent" = synthetic ADDED for every current object.
      for (const obj of this.#collection(info).values()) {
        this.#deliver(watcher, {
          rv: this.#rv,
          resource: watcher.resource,
          type: "ADDED",
          object: obj,
          previous: undefined,
        });
      }
    } else {
      for (const ev of this.#log) if (ev.rv > from) this.#deliver(watcher, ev);
    }
    this.#watchers.add(watcher);
    res.on("close", () => this.#watchers.delete(watcher));
  }
}

interface Route {
  readonly group: string;
  readonly version: string;
  readonly namespace: string | undefined;
  readonly plural: string;
  readonly name: string | undefined;
  readonly subresource: string | undefined;
}

function parsePath(pathname: string): Route | undefined {
  const parts = pathname.split("/").filter((p) => p !== "");
  let group: string;
  let version: string;
  let rest: string[];
  if (parts[0] === "api" && parts.length >= 2) {
    group = "";
    version = parts[1]!;
    rest = parts.slice(2);
  } else if (parts[0] === "apis" && parts.length >= 3) {
    group = parts[1]!;
    version = parts[2]!;
    rest = parts.slice(3);
  } else return undefined;
  let namespace: string | undefined;
  if (rest[0] === "namespaces" && rest.length >= 3) {
    namespace = rest[1];
    rest = rest.slice(2);
  }
  const [plural, name, subresource] = rest;
  if (plural === undefined || rest.length > 3) return undefined;
  return { group, version, namespace, plural, name, subresource };
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

// ---- object builders shared by tests ------------------------------------------------------------------------------

export function podObject(
  name: string,
  options: {
    namespace?: string;
    ip?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ready?: boolean;
  } = {},
): FakeObject {
  const ready = options.ready ?? true;
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name,
      namespace: options.namespace ?? "default",
      labels: options.labels ?? {},
      annotations: options.annotations ?? {},
    },
    spec: { containers: [{ name: "server", image: "vllm" }] },
    status: {
      phase: "Running",
      ...(options.ip !== undefined ? { podIP: options.ip, podIPs: [{ ip: options.ip }] } : {}),
      conditions: [{ type: "Ready", status: ready ? "True" : "False" }],
    },
  };
}

export function poolObject(
  name: string,
  options: { namespace?: string; matchLabels?: Record<string, string>; ports?: number[] } = {},
): FakeObject {
  return {
    apiVersion: "inference.networking.k8s.io/v1",
    kind: "InferencePool",
    metadata: { name, namespace: options.namespace ?? "default" },
    spec: {
      selector: { matchLabels: options.matchLabels ?? { app: "vllm" } },
      targetPorts: (options.ports ?? [8000]).map((number) => ({ number })),
      endpointPickerRef: { name: `${name}-epp`, port: { number: 9002 } },
    },
  };
}

export function modelObject(
  name: string,
  options: { namespace?: string; modelName?: string; pool?: string; criticality?: string; created?: string } = {},
): FakeObject {
  return {
    apiVersion: "inference.networking.x-k8s.io/v1alpha2",
    kind: "InferenceModel",
    metadata: {
      name,
      namespace: options.namespace ?? "default",
      ...(options.created !== undefined ? { creationTimestamp: options.created } : {}),
    },
    spec: {
      modelName: options.modelName ?? name,
      ...(options.criticality !== undefined ? { criticality: options.criticality } : {}),
      poolRef: { name: options.pool ?? "pool" },
    },
  };
}

export function objectiveObject(
  name: string,
  options: { namespace?: string; priority?: number; pool?: string } = {},
): FakeObject {
  return {
    apiVersion: "inference.networking.x-k8s.io/v1alpha2",
    kind: "InferenceObjective",
    metadata: { name, namespace: options.namespace ?? "default" },
    spec: {
      ...(options.priority !== undefined ? { priority: options.priority } : {}),
      poolRef: { name: options.pool ?? "pool", group: "inference.networking.k8s.io" },
    },
  };
}

/** An apps/v1 Deployment (or StatefulSet with kind "StatefulSet") with `replicas`, for scale-subresource tests. */
export function workloadObject(
  kind: "Deployment" | "StatefulSet",
  name: string,
  replicas: number,
  namespace = "default",
): FakeObject {
  return {
    apiVersion: "apps/v1",
    kind,
    metadata: { name, namespace, labels: { app: name } },
    spec: { replicas, selector: { matchLabels: { app: name } } },
    status: { replicas },
  };
}
