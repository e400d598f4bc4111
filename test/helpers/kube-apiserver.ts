/**
 * A real Kubernetes control plane on loopback for tests: etcd + kube-apiserver, nothing else (no controller-manager,
 * no scheduler, no kubelet). Pods are plain API objects whose status the test writes; nothing runs them.
 *
 * Stable API (other test files build on it; extend, do not change):
 *
 *   const kube = await KubeApiServer.start({ etcd, kubeApiserver });   // paths from describeWithTools
 *   kube.url / kube.kubeconfig / kube.dir / kube.namespace ("default")
 *   await kube.createPod("vllm-0", { ip: "127.0.1.1", labels: { app: "vllm" }, ready: true });
 *   await kube.setPodStatus("vllm-0", { ready: false });     // or { ip }, { phase }
 *   await kube.deletePod("vllm-0");                          // { terminating: true } = finalizer, stays Terminating
 *   await kube.applyCrdFiles([".../crd.yaml"]);              // waits until Established and served
 *   await kube.apply(obj | yamlText);                        // server-side apply of any object(s)
 *   await kube.remove(apiVersion, kind, name, namespace?);
 *   await kube.request("GET", "/api/v1/namespaces/default/pods"); // raw JSON with the admin identity
 *   const sa = await kube.serviceAccountKubeconfig("epp", { rules });      // SA + Role + RoleBinding + token
 *   await kube.stopApiServer(); await kube.startApiServer();   // or kube.restartApiServer(): same port, same data
 *   kube.pauseApiServer(); kube.resumeApiServer();             // SIGSTOP / SIGCONT: connections open, no answers
 *   await kube.close();                                        // stops both, removes the directory
 *
 * Certificates (CA, serving cert for 127.0.0.1/localhost/kubernetes.default…, admin client cert in group
 * system:masters, service-account signing pair) are generated fresh with node:crypto and `selfsigned`; no openssl.
 * Flags and why (docs/kubernetes.md "A real API server in tests"): `--authorization-mode RBAC` so ServiceAccount
 * tokens get exactly what their Role grants (the admin cert bypasses RBAC); `--disable-admission-plugins
 * ServiceAccount` because nothing creates the `default` ServiceAccount without a controller-manager and that plugin
 * would reject every Pod; etcd over plain HTTP on loopback.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generate } from "selfsigned";
import { Agent, fetch } from "undici";
import { parseAllDocuments, stringify } from "yaml";
import { freePorts } from "./relay.js";

export interface KubeApiServerOptions {
  /** Absolute paths of the binaries (describeWithTools gives them). */
  readonly etcd: string;
  readonly kubeApiserver: string;
  /** Only for `kubectl()`; optional. */
  readonly kubectl?: string;
  /** Working directory (default: a fresh temp dir, removed by close()). */
  readonly dir?: string;
  /** Deadline for /readyz after a (re)start; default 90 s (a busy 2-core machine takes 3-10 s). */
  readonly readyTimeoutMs?: number;
}

export interface PodOptions {
  readonly ip?: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly annotations?: Readonly<Record<string, string>>;
  /** Ready condition (default true). */
  readonly ready?: boolean;
  /** Default "Running". */
  readonly phase?: string;
  readonly namespace?: string;
}

export interface PolicyRule {
  readonly apiGroups: readonly string[];
  readonly resources: readonly string[];
  readonly verbs: readonly string[];
  readonly resourceNames?: readonly string[];
}

export interface ApiObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; [k: string]: unknown };
  [k: string]: unknown;
}

/** An HTTP answer other than 2xx from the API server. */
export class KubeRequestError extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
    message: string,
  ) {
    super(message);
  }
}

const SERVICE_CIDR = "10.0.0.0/24";
const SERVICE_IP = "10.0.0.1";
const ISSUER = "https://kubernetes.default.svc.cluster.local";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Pki {
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  adminCert: string;
  adminKey: string;
  saKey: string;
  saPub: string;
}

async function generatePki(): Promise<Pki> {
  const notBeforeDate = new Date(Date.now() - 60_000);
  const notAfterDate = new Date(Date.now() + 7 * 24 * 3600_000);
  const common = { keyType: "ec" as const, curve: "P-256" as const, algorithm: "sha256", notBeforeDate, notAfterDate };
  const ca = await generate([{ name: "commonName", value: "switchyard-test-ca" }], {
    ...common,
    extensions: [
      { name: "basicConstraints", cA: true, critical: true },
      { name: "keyUsage", keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    ],
  });
  const server = await generate([{ name: "commonName", value: "kube-apiserver" }], {
    ...common,
    ca: { key: ca.private, cert: ca.cert },
    extensions: [
      { name: "basicConstraints", cA: false, critical: true },
      { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
      { name: "extKeyUsage", serverAuth: true },
      {
        name: "subjectAltName",
        altNames: [
          { type: 7, ip: "127.0.0.1" },
          { type: 7, ip: SERVICE_IP },
          { type: 2, value: "localhost" },
          { type: 2, value: "kubernetes" },
          { type: 2, value: "kubernetes.default" },
          { type: 2, value: "kubernetes.default.svc" },
          { type: 2, value: "kubernetes.default.svc.cluster.local" },
        ],
      },
    ],
  });
  const admin = await generate(
    [
      { name: "organizationName", value: "system:masters" },
      { name: "commonName", value: "switchyard-test-admin" },
    ],
    {
      ...common,
      ca: { key: ca.private, cert: ca.cert },
      extensions: [
        { name: "basicConstraints", cA: false, critical: true },
        { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
        { name: "extKeyUsage", clientAuth: true },
      ],
    },
  );
  const sa = generateKeyPairSync("ec", {
    namedCurve: "prime256v1",
    publicKeyEncoding: { type: "spki", format: "pem" },
    privateKeyEncoding: { type: "pkcs8", format: "pem" },
  });
  return {
    caCert: ca.cert,
    caKey: ca.private,
    serverCert: server.cert,
    serverKey: server.private,
    adminCert: admin.cert,
    adminKey: admin.private,
    saKey: sa.privateKey,
    saPub: sa.publicKey,
  };
}

function b64(s: string): string {
  return Buffer.from(s).toString("base64");
}

/** Built-in kinds the helper can address without discovery. */
const BUILTIN: Readonly<Record<string, { readonly plural: string; readonly namespaced: boolean }>> = {
  "v1/Pod": { plural: "pods", namespaced: true },
  "v1/Namespace": { plural: "namespaces", namespaced: false },
  "v1/ServiceAccount": { plural: "serviceaccounts", namespaced: true },
  "v1/Service": { plural: "services", namespaced: true },
  "v1/ConfigMap": { plural: "configmaps", namespaced: true },
  "rbac.authorization.k8s.io/v1/Role": { plural: "roles", namespaced: true },
  "rbac.authorization.k8s.io/v1/RoleBinding": { plural: "rolebindings", namespaced: true },
  "rbac.authorization.k8s.io/v1/ClusterRole": { plural: "clusterroles", namespaced: false },
  "rbac.authorization.k8s.io/v1/ClusterRoleBinding": { plural: "clusterrolebindings", namespaced: false },
  "coordination.k8s.io/v1/Lease": { plural: "leases", namespaced: true },
  "apiextensions.k8s.io/v1/CustomResourceDefinition": { plural: "customresourcedefinitions", namespaced: false },
  "apps/v1/Deployment": { plural: "deployments", namespaced: true },
};

export class KubeApiServer {
  readonly dir: string;
  readonly namespace = "default";
  readonly #o: KubeApiServerOptions;
  readonly #ownsDir: boolean;
  #pki!: Pki;
  #etcdPort = 0;
  #etcdPeerPort = 0;
  #apiPort = 0;
  #etcd: ChildProcess | undefined;
  #api: ChildProcess | undefined;
  #agent: Agent | undefined;
  #discovery = new Map<string, { plural: string; namespaced: boolean }>();
  #closed = false;

  private constructor(o: KubeApiServerOptions, dir: string, ownsDir: boolean) {
    this.#o = o;
    this.dir = dir;
    this.#ownsDir = ownsDir;
  }

  /** Generates certificates, starts etcd and kube-apiserver, waits for /readyz. */
  static async start(o: KubeApiServerOptions): Promise<KubeApiServer> {
    const ownsDir = o.dir === undefined;
    const dir = o.dir ?? (await mkdtemp(join(tmpdir(), "sy-kube-")));
    const k = new KubeApiServer(o, dir, ownsDir);
    try {
      await k.#init();
    } catch (err) {
      await k.close();
      throw err;
    }
    return k;
  }

  /** https://127.0.0.1:PORT */
  get url(): string {
    return `https://127.0.0.1:${this.#apiPort}`;
  }

  /** Admin kubeconfig (client certificate in group system:masters; bypasses RBAC). */
  get kubeconfig(): string {
    return join(this.dir, "kubeconfig");
  }

  get caCertPem(): string {
    return this.#pki.caCert;
  }

  /** PIDs of the running processes (undefined when stopped). */
  get pids(): { etcd: number | undefined; kubeApiserver: number | undefined } {
    return { etcd: this.#etcd?.pid, kubeApiserver: this.#api?.pid };
  }

  async #init(): Promise<void> {
    await mkdir(join(this.dir, "pki"), { recursive: true });
    this.#pki = await generatePki();
    const p = this.#pki;
    const pki = join(this.dir, "pki");
    await Promise.all([
      writeFile(join(pki, "ca.crt"), p.caCert),
      writeFile(join(pki, "apiserver.crt"), p.serverCert),
      writeFile(join(pki, "apiserver.key"), p.serverKey, { mode: 0o600 }),
      writeFile(join(pki, "admin.crt"), p.adminCert),
      writeFile(join(pki, "admin.key"), p.adminKey, { mode: 0o600 }),
      writeFile(join(pki, "sa.key"), p.saKey, { mode: 0o600 }),
      writeFile(join(pki, "sa.pub"), p.saPub),
    ]);
    [this.#etcdPort, this.#etcdPeerPort, this.#apiPort] = (await freePorts(3)) as [number, number, number];
    this.#agent = new Agent({
      connect: { ca: p.caCert, cert: p.adminCert, key: p.adminKey },
      // Short keep-alive: after a restart stale pooled sockets would only produce spurious errors.
      keepAliveTimeout: 1000,
    });
    await this.#writeKubeconfig(this.kubeconfig, {
      "client-certificate-data": b64(p.adminCert),
      "client-key-data": b64(p.adminKey),
    });
    await this.#startEtcd();
    await this.startApiServer();
  }

  async #writeKubeconfig(path: string, user: Record<string, string>, namespace = this.namespace): Promise<void> {
    const config = {
      apiVersion: "v1",
      kind: "Config",
      clusters: [{ name: "test", cluster: { server: this.url, "certificate-authority-data": b64(this.#pki.caCert) } }],
      users: [{ name: "test-user", user }],
      contexts: [{ name: "test", context: { cluster: "test", user: "test-user", namespace } }],
      "current-context": "test",
    };
    await writeFile(path, stringify(config), { mode: 0o600 });
  }

  #spawn(name: string, bin: string, args: string[]): ChildProcess {
    const log = createWriteStream(join(this.dir, `${name}.log`), { flags: "a" });
    const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
    child.stdout?.pipe(log, { end: false });
    child.stderr?.pipe(log, { end: false });
    child.once("exit", () => log.end());
    return child;
  }

  async #startEtcd(): Promise<void> {
    const client = `http://127.0.0.1:${this.#etcdPort}`;
    const peer = `http://127.0.0.1:${this.#etcdPeerPort}`;
    this.#etcd = this.#spawn("etcd", this.#o.etcd, [
      "--name",
      "test",
      "--data-dir",
      join(this.dir, "etcd"),
      "--listen-client-urls",
      client,
      "--advertise-client-urls",
      client,
      "--listen-peer-urls",
      peer,
      "--initial-advertise-peer-urls",
      peer,
      "--initial-cluster",
      `test=${peer}`,
      "--log-level",
      "warn",
      "--logger",
      "zap",
      "--quota-backend-bytes",
      "2147483648",
    ]);
    const deadline = Date.now() + (this.#o.readyTimeoutMs ?? 90_000);
    for (;;) {
      try {
        const res = await fetch(`${client}/health`, { signal: AbortSignal.timeout(1000) });
        if ((await res.text()).includes('"health":"true"')) return;
      } catch {
        // not up yet
      }
      if (this.#etcd.exitCode !== null) throw new Error(`etcd exited: ${await this.log("etcd")}`);
      if (Date.now() > deadline) throw new Error(`etcd not healthy in time: ${await this.log("etcd")}`);
      await sleep(100);
    }
  }

  /** Tail of a component's log (`etcd` or `kube-apiserver`). */
  async log(name: "etcd" | "kube-apiserver", lines = 30): Promise<string> {
    try {
      return (await readFile(join(this.dir, `${name}.log`), "utf8")).split("\n").slice(-lines).join("\n");
    } catch {
      return "";
    }
  }

  /** Starts kube-apiserver (again) on the same port with the same data; resolves once /readyz answers ok. */
  async startApiServer(): Promise<void> {
    if (this.#api !== undefined && this.#api.exitCode === null) return;
    const pki = join(this.dir, "pki");
    this.#api = this.#spawn("kube-apiserver", this.#o.kubeApiserver, [
      "--etcd-servers",
      `http://127.0.0.1:${this.#etcdPort}`,
      "--bind-address",
      "127.0.0.1",
      "--advertise-address",
      "127.0.0.1",
      "--secure-port",
      String(this.#apiPort),
      "--tls-cert-file",
      join(pki, "apiserver.crt"),
      "--tls-private-key-file",
      join(pki, "apiserver.key"),
      "--cert-dir",
      pki,
      "--client-ca-file",
      join(pki, "ca.crt"),
      "--service-account-issuer",
      ISSUER,
      "--service-account-key-file",
      join(pki, "sa.pub"),
      "--service-account-signing-key-file",
      join(pki, "sa.key"),
      "--authorization-mode",
      "RBAC",
      "--service-cluster-ip-range",
      SERVICE_CIDR,
      "--disable-admission-plugins",
      "ServiceAccount",
      "--allow-privileged=true",
      "--profiling=false",
      "--v",
      "1",
    ]);
    const api = this.#api;
    const deadline = Date.now() + (this.#o.readyTimeoutMs ?? 90_000);
    for (;;) {
      try {
        const res = await fetch(`${this.url}/readyz`, {
          dispatcher: this.#agent,
          signal: AbortSignal.timeout(2000),
        });
        await res.text();
        if (res.status === 200) return;
      } catch {
        // not listening yet
      }
      if (api.exitCode !== null || api.signalCode !== null) {
        throw new Error(`kube-apiserver exited: ${await this.log("kube-apiserver")}`);
      }
      if (Date.now() > deadline)
        throw new Error(`kube-apiserver not ready in time: ${await this.log("kube-apiserver")}`);
      await sleep(200);
    }
  }

  /** Stops kube-apiserver (SIGTERM, or the given signal) and waits for it to exit; etcd keeps the data. */
  async stopApiServer(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    const api = this.#api;
    this.#api = undefined;
    if (api === undefined || api.exitCode !== null || api.signalCode !== null) return;
    await stopChild(api, signal);
  }

  async restartApiServer(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    await this.stopApiServer(signal);
    await this.startApiServer();
  }

  /** SIGSTOP: the port stays open and connections hang without answers (a wedged API server). */
  pauseApiServer(): void {
    this.#api?.kill("SIGSTOP");
  }

  resumeApiServer(): void {
    this.#api?.kill("SIGCONT");
  }

  /** Stops everything and removes the directory it created. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#api?.kill("SIGCONT");
    await this.stopApiServer("SIGKILL").catch(() => {});
    const etcd = this.#etcd;
    this.#etcd = undefined;
    if (etcd !== undefined && etcd.exitCode === null) await stopChild(etcd, "SIGKILL").catch(() => {});
    await this.#agent?.close().catch(() => {});
    if (this.#ownsDir) await rm(this.dir, { recursive: true, force: true });
  }

  // ---- API access -------------------------------------------------------------------------------------------------

  /** One request with the admin identity; JSON in and out. Throws KubeRequestError on a non-2xx answer. */
  async request(
    method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE",
    path: string,
    body?: unknown,
    contentType = "application/json",
  ): Promise<unknown> {
    const res = await fetch(this.url + path, {
      method,
      dispatcher: this.#agent,
      headers:
        body === undefined
          ? { accept: "application/json" }
          : { "content-type": contentType, accept: "application/json" },
      body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
    const text = await res.text();
    if (res.status < 200 || res.status > 299) {
      throw new KubeRequestError(res.status, text, `${method} ${path}: HTTP ${res.status} ${text.slice(0, 500)}`);
    }
    return text === "" ? undefined : JSON.parse(text);
  }

  /** Collection path of a kind: built-ins from a table, custom resources through discovery. */
  async resourcePath(apiVersion: string, kind: string, namespace?: string, name?: string): Promise<string> {
    const key = `${apiVersion}/${kind}`;
    let r = BUILTIN[key] ?? this.#discovery.get(key);
    if (r === undefined) {
      const groupPath = apiVersion.includes("/") ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
      const list = (await this.request("GET", groupPath)) as {
        resources: { name: string; kind: string; namespaced: boolean }[];
      };
      for (const res of list.resources) {
        if (res.name.includes("/")) continue;
        this.#discovery.set(`${apiVersion}/${res.kind}`, { plural: res.name, namespaced: res.namespaced });
      }
      r = this.#discovery.get(key);
      if (r === undefined) throw new Error(`the API server does not serve ${apiVersion} ${kind}`);
    }
    const base = apiVersion.includes("/") ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
    const ns = r.namespaced ? `/namespaces/${encodeURIComponent(namespace ?? this.namespace)}` : "";
    return `${base}${ns}/${r.plural}${name === undefined ? "" : `/${encodeURIComponent(name)}`}`;
  }

  /**
   * Server-side apply (force, strict field validation) of one object, a list of them, or YAML text with several
   * documents. A field the schema does not know fails with `strict decoding error: unknown field …` (HTTP 422/400).
   */
  async apply(input: ApiObject | readonly ApiObject[] | string): Promise<ApiObject[]> {
    const objects: ApiObject[] =
      typeof input === "string"
        ? parseAllDocuments(input)
            .map((d) => d.toJS() as ApiObject | null)
            .filter((o): o is ApiObject => o !== null && typeof o === "object")
        : Array.isArray(input)
          ? [...(input as readonly ApiObject[])]
          : [input as ApiObject];
    const out: ApiObject[] = [];
    for (const obj of objects) {
      const path = await this.resourcePath(obj.apiVersion, obj.kind, obj.metadata.namespace, obj.metadata.name);
      out.push(
        (await this.request(
          "PATCH",
          // Strict, as kubectl: an unknown field fails instead of being dropped with a warning (the API default).
          `${path}?fieldManager=switchyard-test&force=true&fieldValidation=Strict`,
          obj,
          "application/apply-patch+yaml",
        )) as ApiObject,
      );
    }
    return out;
  }

  async get(apiVersion: string, kind: string, name: string, namespace?: string): Promise<ApiObject | undefined> {
    try {
      return (await this.request("GET", await this.resourcePath(apiVersion, kind, namespace, name))) as ApiObject;
    } catch (err) {
      if (err instanceof KubeRequestError && err.status === 404) return undefined;
      throw err;
    }
  }

  /** Deletes an object; absent is fine. */
  async remove(apiVersion: string, kind: string, name: string, namespace?: string): Promise<void> {
    try {
      await this.request("DELETE", await this.resourcePath(apiVersion, kind, namespace, name));
    } catch (err) {
      if (!(err instanceof KubeRequestError && err.status === 404)) throw err;
    }
  }

  /** Merge-patches an object (or its status with `subresource: "status"`). */
  async patch(
    apiVersion: string,
    kind: string,
    name: string,
    patch: unknown,
    options: { namespace?: string; subresource?: "status" } = {},
  ): Promise<ApiObject> {
    const path = await this.resourcePath(apiVersion, kind, options.namespace, name);
    const sub = options.subresource === undefined ? "" : `/${options.subresource}`;
    return (await this.request("PATCH", path + sub, patch, "application/merge-patch+json")) as ApiObject;
  }

  /** Installs CRDs from YAML files and waits until each is Established and its resources are served. */
  async applyCrdFiles(files: readonly string[]): Promise<void> {
    const crds: ApiObject[] = [];
    for (const f of files) {
      for (const o of (await this.apply(await readFile(f, "utf8"))) as ApiObject[]) crds.push(o);
    }
    await this.waitForCrds(crds.map((c) => c.metadata.name));
  }

  async waitForCrds(names: readonly string[], timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (const name of names) {
      for (;;) {
        const crd = (await this.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)) as
          | (ApiObject & { status?: { conditions?: { type: string; status: string }[] } })
          | undefined;
        const established = crd?.status?.conditions?.some((c) => c.type === "Established" && c.status === "True");
        // Established is not yet served: the group's discovery document (what resourcePath reads) is updated
        // after the condition, and under load it answered 404 for a moment (seen in CI on Node 22).
        if (established && crd !== undefined && (await this.#served(crd))) break;
        if (Date.now() > deadline)
          throw new Error(`CRD ${name} ${established ? "Established but not served" : "not Established"} in time`);
        await sleep(100);
      }
    }
    this.#discovery.clear();
  }

  /** Every served version of the CRD lists its plural in the group's discovery document. */
  async #served(crd: ApiObject): Promise<boolean> {
    const spec = (
      crd as { spec?: { group?: string; names?: { plural?: string }; versions?: { name: string; served?: boolean }[] } }
    ).spec;
    if (spec?.group === undefined || spec.names?.plural === undefined) return true;
    for (const v of spec.versions ?? []) {
      if (v.served === false) continue;
      try {
        const doc = (await this.request("GET", `/apis/${spec.group}/${v.name}`)) as { resources?: { name: string }[] };
        if (!doc.resources?.some((r) => r.name === spec.names!.plural)) return false;
      } catch (err) {
        if (err instanceof KubeRequestError && err.status === 404) return false;
        throw err;
      }
    }
    return true;
  }

  /** Deletes CRDs by name and waits until they are gone. */
  async deleteCrds(names: readonly string[], timeoutMs = 60_000): Promise<void> {
    for (const n of names) await this.remove("apiextensions.k8s.io/v1", "CustomResourceDefinition", n);
    const deadline = Date.now() + timeoutMs;
    for (const n of names) {
      while ((await this.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", n)) !== undefined) {
        if (Date.now() > deadline) throw new Error(`CRD ${n} not deleted in time`);
        await sleep(100);
      }
    }
    this.#discovery.clear();
  }

  // ---- pods -------------------------------------------------------------------------------------------------------

  /** Creates a Pod (nothing runs it) and sets its status: podIP, phase and the Ready condition. */
  async createPod(name: string, o: PodOptions = {}): Promise<ApiObject> {
    const namespace = o.namespace ?? this.namespace;
    await this.request("POST", `/api/v1/namespaces/${namespace}/pods`, {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name, namespace, labels: o.labels ?? {}, annotations: o.annotations ?? {} },
      spec: { containers: [{ name: "server", image: "vllm/vllm-openai" }] },
    });
    return await this.setPodStatus(name, { ip: o.ip, ready: o.ready ?? true, phase: o.phase ?? "Running", namespace });
  }

  /** Writes pod status; unspecified fields keep their values. A merge patch replaces the whole conditions list. */
  async setPodStatus(
    name: string,
    o: { ip?: string; ready?: boolean; phase?: string; namespace?: string },
  ): Promise<ApiObject> {
    const status: Record<string, unknown> = {};
    if (o.ip !== undefined) status.podIP = o.ip;
    if (o.phase !== undefined) status.phase = o.phase;
    if (o.ready !== undefined) status.conditions = [{ type: "Ready", status: o.ready ? "True" : "False" }];
    return await this.patch("v1", "Pod", name, { status }, { namespace: o.namespace, subresource: "status" });
  }

  async patchPodLabels(name: string, labels: Record<string, string | null>, namespace?: string): Promise<ApiObject> {
    return await this.patch("v1", "Pod", name, { metadata: { labels } }, { namespace });
  }

  /**
   * Deletes a pod. With `terminating: true` a finalizer is added first, so the pod stays as Terminating
   * (deletionTimestamp set) until `finishTerminating()` removes the finalizer.
   */
  async deletePod(name: string, o: { namespace?: string; terminating?: boolean } = {}): Promise<void> {
    if (o.terminating === true) {
      await this.patch("v1", "Pod", name, { metadata: { finalizers: ["switchyard.test/hold"] } }, o);
    }
    await this.request(
      "DELETE",
      `/api/v1/namespaces/${o.namespace ?? this.namespace}/pods/${name}?gracePeriodSeconds=0`,
    );
  }

  async finishTerminating(name: string, namespace?: string): Promise<void> {
    await this.patch("v1", "Pod", name, { metadata: { finalizers: null } }, { namespace });
  }

  // ---- identities ---------------------------------------------------------------------------------------------------

  /**
   * A ServiceAccount bound to a Role with `rules` (namespace-scoped), and a kubeconfig using a fresh 24 h token for
   * it (TokenRequest API; no token controller needed). An existing Role of the same name is replaced.
   */
  async serviceAccountKubeconfig(
    name: string,
    o: { rules: readonly PolicyRule[]; namespace?: string; roleName?: string },
  ): Promise<string> {
    const namespace = o.namespace ?? this.namespace;
    const roleName = o.roleName ?? name;
    await this.apply([
      { apiVersion: "v1", kind: "ServiceAccount", metadata: { name, namespace } },
      {
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "Role",
        metadata: { name: roleName, namespace },
        rules: o.rules.map((r) => ({ ...r })),
      },
      {
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "RoleBinding",
        metadata: { name: roleName, namespace },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: roleName },
        subjects: [{ kind: "ServiceAccount", name, namespace }],
      },
    ]);
    const token = (await this.request("POST", `/api/v1/namespaces/${namespace}/serviceaccounts/${name}/token`, {
      apiVersion: "authentication.k8s.io/v1",
      kind: "TokenRequest",
      spec: { expirationSeconds: 86_400 },
    })) as { status: { token: string } };
    const path = join(this.dir, `sa-${namespace}-${name}.kubeconfig`);
    await this.#writeKubeconfig(path, { token: token.status.token }, namespace);
    return path;
  }

  /** Runs kubectl with the admin kubeconfig (needs the `kubectl` option). Resolves with stdout. */
  async kubectl(args: readonly string[], input?: string): Promise<string> {
    const bin = this.#o.kubectl;
    if (bin === undefined) throw new Error("KubeApiServer was started without a kubectl path");
    return await new Promise((resolve, reject) => {
      const child = execFile(
        bin,
        ["--kubeconfig", this.kubeconfig, ...args],
        { timeout: 60_000, maxBuffer: 16 << 20 },
        (err, stdout, stderr) => {
          if (err) reject(new Error(`kubectl ${args.join(" ")}: ${err.message}\n${stderr}`));
          else resolve(stdout);
        },
      );
      if (input !== undefined) child.stdin?.end(input);
    });
  }
}

async function stopChild(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGCONT");
  child.kill(signal);
  const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}
