/**
 * Real Envoy in front of switchyard: renders one of the shipped bootstraps in deploy/envoy/ and runs Envoy on it.
 * `switchyard up --gateway envoy`, the Envoy e2e suite and the benchmarks all go through here, so what they run is
 * exactly the shipped file plus the documented options below (docs/envoy.md).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { closeSync, existsSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseDocument } from "yaml";
import { ConfigError } from "../common/errors.js";

export type EnvoyTemplate = "envoy" | "envoy-gateway-like";
export type EnvoyBodyMode = "FULL_DUPLEX_STREAMED" | "BUFFERED" | "STREAMED" | "BUFFERED_PARTIAL" | "NONE";

export interface EnvoyConfigOptions {
  /** deploy/envoy/<template>.yaml. Default "envoy". */
  readonly template?: EnvoyTemplate;
  readonly listenAddress?: string;
  readonly listenPort: number;
  readonly adminPort: number;
  readonly eppHost?: string;
  readonly eppPort: number;
  /** The picker serves TLS (its default, --secure-serving): Envoy connects with TLS and checks no certificate. */
  readonly eppTls?: boolean;
  readonly requestBodyMode?: EnvoyBodyMode;
  readonly responseBodyMode?: EnvoyBodyMode;
  readonly failureModeAllow?: boolean;
  readonly allowModeOverride?: boolean;
  /** `envoy.reloadable_features.ext_proc_graceful_grpc_close` (envoy template). Default true. */
  readonly gracefulGrpcClose?: boolean;
  readonly messageTimeout?: string;
  /** Default /dev/stdout. */
  readonly accessLog?: string;
  /**
   * Fail-open set-up (docs/envoy.md "Failure modes"): the client's own x-gateway-destination-endpoint is removed
   * before the picker, and the route adds this `ip:port` only when the picker set none (it is down).
   */
  readonly fallbackEndpoint?: string;
  /** Copies this request header into `envoy.lb.subset_hint` metadata before the picker (how a gateway hints). */
  readonly subsetHintHeader?: string;
  /**
   * Envoy alone, the benchmarks' baseline: no picker filter, the route goes to a static cluster of these endpoints
   * balanced by Envoy's own policy. The rest of the bootstrap (listener, buffers, timeouts) stays as shipped.
   */
  readonly baseline?: { readonly policy: "ROUND_ROBIN" | "LEAST_REQUEST"; readonly endpoints: readonly string[] };
}

const BODY_MODES: ReadonlySet<string> = new Set([
  "FULL_DUPLEX_STREAMED",
  "BUFFERED",
  "STREAMED",
  "BUFFERED_PARTIAL",
  "NONE",
]);
const PLACEHOLDER = /\$\{([A-Z][A-Z0-9_]*)(?::-([^}]*))?\}/g;

/** deploy/envoy, found from src/local (tests) and dist/local (built, and the npm package). */
export function envoyDeployDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = join(dir, "deploy", "envoy");
    if (existsSync(join(candidate, "envoy.yaml"))) return candidate;
    dir = dirname(dir);
  }
  throw new Error("switchyard: cannot find deploy/envoy/ next to the package");
}

/** Fills `${NAME:-default}` placeholders; a name with neither a value nor a default is an error. */
export function fillPlaceholders(text: string, values: Readonly<Record<string, string | undefined>>): string {
  const missing = new Set<string>();
  const out = text.replace(PLACEHOLDER, (_, name: string, fallback: string | undefined) => {
    const v = values[name] ?? fallback;
    if (v === undefined) {
      missing.add(name);
      return "";
    }
    return v;
  });
  if (missing.size > 0) throw new ConfigError(`no value for ${[...missing].join(", ")}`, undefined, "envoy template");
  return out;
}

function checkMode(name: string, mode: string | undefined): void {
  if (mode !== undefined && !BODY_MODES.has(mode)) {
    throw new ConfigError(`must be one of ${[...BODY_MODES].join(", ")}, got "${mode}"`, undefined, name);
  }
}

type Json = Record<string, unknown>;

function filters(doc: Json): Json[] {
  const listener = (doc.static_resources as Json).listeners as Json[];
  const chain = (listener[0]!.filter_chains as Json[])[0]!;
  const hcm = ((chain.filters as Json[])[0]!.typed_config ?? {}) as Json;
  return hcm.http_filters as Json[];
}

function route(doc: Json): Json {
  const listener = (doc.static_resources as Json).listeners as Json[];
  const chain = (listener[0]!.filter_chains as Json[])[0]!;
  const hcm = (chain.filters as Json[])[0]!.typed_config as Json;
  const vhost = ((hcm.route_config as Json).virtual_hosts as Json[])[0]!;
  return (vhost.routes as Json[])[0]!;
}

function extProcIndex(list: Json[]): number {
  const i = list.findIndex((f) => String(f.name).startsWith("envoy.filters.http.ext_proc"));
  if (i < 0) throw new Error("envoy template has no ext_proc filter");
  return i;
}

/** The bootstrap YAML for these options. */
export function renderEnvoyConfig(options: EnvoyConfigOptions): string {
  checkMode("requestBodyMode", options.requestBodyMode);
  checkMode("responseBodyMode", options.responseBodyMode);
  const template = options.template ?? "envoy";
  const text = readFileSync(join(envoyDeployDir(), `${template}.yaml`), "utf8");
  const bool = (b: boolean | undefined) => (b === undefined ? undefined : String(b));
  const filled = fillPlaceholders(text, {
    LISTEN_ADDRESS: options.listenAddress,
    LISTEN_PORT: String(options.listenPort),
    ADMIN_PORT: String(options.adminPort),
    EPP_HOST: options.eppHost,
    EPP_PORT: String(options.eppPort),
    REQUEST_BODY_MODE: options.requestBodyMode,
    RESPONSE_BODY_MODE: options.responseBodyMode,
    FAILURE_MODE_ALLOW: bool(options.failureModeAllow),
    ALLOW_MODE_OVERRIDE: bool(options.allowModeOverride),
    GRACEFUL_GRPC_CLOSE: bool(options.gracefulGrpcClose),
    MESSAGE_TIMEOUT: options.messageTimeout,
    ACCESS_LOG: options.accessLog,
  });
  const needsEdit =
    options.fallbackEndpoint !== undefined ||
    options.subsetHintHeader !== undefined ||
    options.eppTls === true ||
    options.baseline !== undefined;
  if (!needsEdit) return filled;

  const doc = parseDocument(filled);
  const json = doc.toJSON() as Json;
  const list = filters(json);
  if (options.eppTls === true && template === "envoy") {
    const clusters = (json.static_resources as Json).clusters as Json[];
    const epp = clusters.find((c) => c.name === "endpoint_picker")!;
    epp.transport_socket = {
      name: "envoy.transport_sockets.tls",
      typed_config: {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        common_tls_context: { validation_context: {} },
      },
    };
  }
  if (options.subsetHintHeader !== undefined) {
    list.splice(extProcIndex(list), 0, {
      name: "envoy.filters.http.header_to_metadata",
      typed_config: {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.header_to_metadata.v3.Config",
        request_rules: [
          {
            header: options.subsetHintHeader,
            on_header_present: {
              metadata_namespace: "envoy.lb.subset_hint",
              key: "x-gateway-destination-endpoint-subset",
              type: "STRING",
            },
            remove: true,
          },
        ],
      },
    });
  }
  if (options.baseline !== undefined) {
    list.splice(extProcIndex(list), 1);
    const clusters = (json.static_resources as Json).clusters as Json[];
    const lbEndpoints = options.baseline.endpoints.map((e) => {
      const i = e.lastIndexOf(":");
      return {
        endpoint: { address: { socket_address: { address: e.slice(0, i), port_value: Number(e.slice(i + 1)) } } },
      };
    });
    clusters.push({
      name: "baseline_pool",
      type: "STATIC",
      lb_policy: options.baseline.policy,
      connect_timeout: "10s",
      per_connection_buffer_limit_bytes: 32768,
      circuit_breakers: { thresholds: [{ max_connections: 40000, max_pending_requests: 40000, max_requests: 40000 }] },
      load_assignment: { cluster_name: "baseline_pool", endpoints: [{ lb_endpoints: lbEndpoints }] },
    });
    ((route(json).route ?? {}) as Json).cluster = "baseline_pool";
  }
  if (options.fallbackEndpoint !== undefined) {
    // The client must not choose the pod when the picker is skipped: drop its header before the picker runs.
    list.splice(extProcIndex(list), 0, {
      name: "envoy.filters.http.header_mutation",
      typed_config: {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
        mutations: { request_mutations: [{ remove: "x-gateway-destination-endpoint" }] },
      },
    });
    const r = route(json);
    r.request_headers_to_add = [
      {
        header: { key: "x-gateway-destination-endpoint", value: options.fallbackEndpoint },
        append_action: "ADD_IF_ABSENT",
      },
    ];
  }
  return `${JSON.stringify(json, null, 1)}\n`;
}

export interface EnvoyProcess {
  readonly pid: number;
  readonly url: string;
  readonly adminUrl: string;
  readonly process: ChildProcess;
  readonly exited: Promise<number | string>;
  /** Counters and gauges from /stats (histograms left out). */
  stats(filter?: RegExp): Promise<Map<string, number>>;
  /** SIGTERM, then SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

export interface StartEnvoyOptions {
  readonly binary: string;
  readonly config: EnvoyConfigOptions;
  /** Where the rendered bootstrap is written. */
  readonly configFile: string;
  /** Envoy's own log (stderr and stdout). */
  readonly logFile: string;
  /** Default 60 s: a cold start on a busy 2-core machine. */
  readonly readyTimeoutMs?: number;
  /** Envoy --concurrency (worker threads). Default: Envoy's (one per core). */
  readonly concurrency?: number;
  readonly logLevel?: string;
  /** Called with the Envoy process right after it is spawned, before it is ready (to stop it during start-up). */
  readonly onSpawn?: (child: ChildProcess) => void;
}

async function adminGet(url: string): Promise<string | undefined> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
    return res.ok ? await res.text() : undefined;
  } catch {
    return undefined;
  }
}

/** The node id the admin's /server_info reports, if it answers with one. */
async function adminNodeId(adminUrl: string): Promise<string | undefined> {
  const text = await adminGet(`${adminUrl}/server_info`);
  if (text === undefined) return undefined;
  try {
    const id = (JSON.parse(text) as { node?: { id?: unknown } }).node?.id;
    return typeof id === "string" ? id : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Starts Envoy and resolves once its admin says LIVE and the listener accepts connections. Readiness is read only
 * from the Envoy this call started: it runs with a node id of its own (`--service-node`), and an admin port that
 * answers with another id (an Envoy left over from an earlier run, or someone else's) is not taken for it.
 */
export async function startEnvoy(options: StartEnvoyOptions): Promise<EnvoyProcess> {
  const { config } = options;
  writeFileSync(options.configFile, renderEnvoyConfig(config));
  const log = openSync(options.logFile, "a");
  const nodeId = `switchyard-${process.pid}-${randomUUID()}`;
  const args = [
    "-c",
    options.configFile,
    "--service-node",
    nodeId,
    // Several Envoys on one machine (tests, bench) must not share a hot-restart domain.
    "--disable-hot-restart",
    "--log-level",
    options.logLevel ?? "warn",
    "--file-flush-interval-msec",
    "100",
  ];
  if (options.concurrency !== undefined) args.push("--concurrency", String(options.concurrency));
  const child = spawn(options.binary, args, { stdio: ["ignore", log, log] });
  closeSync(log);
  options.onSpawn?.(child);
  const exited = new Promise<number | string>((resolve) => {
    child.once("exit", (code, signal) => resolve(code ?? signal ?? "unknown"));
    child.once("error", (err) => resolve(err.message));
  });
  let gone: number | string | undefined;
  void exited.then((c) => {
    gone = c;
  });
  const host = config.listenAddress ?? "127.0.0.1";
  const adminUrl = `http://127.0.0.1:${config.adminPort}`;
  const url = `http://${host}:${config.listenPort}`;
  const deadline = Date.now() + (options.readyTimeoutMs ?? 60_000);
  let stranger: string | undefined;
  for (;;) {
    if (gone !== undefined) {
      const tail = readFileSync(options.logFile, "utf8").split("\n").slice(-15).join("\n");
      throw new Error(`envoy exited (${gone}) before it was ready:\n${tail}`);
    }
    const id = await adminNodeId(adminUrl);
    if (id !== undefined && id !== nodeId) stranger = id;
    if (id === nodeId && (await adminGet(`${adminUrl}/ready`))?.trim() === "LIVE") {
      const listening = await adminGet(`${adminUrl}/listeners?format=json`);
      if (listening?.includes(String(config.listenPort))) break;
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      const other =
        stranger === undefined
          ? ""
          : `; another Envoy (node id "${stranger}") answers on admin port ${config.adminPort}`;
      throw new Error(
        `envoy was not ready within ${options.readyTimeoutMs ?? 60_000} ms${other} (log: ${options.logFile})`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    pid: child.pid ?? -1,
    url,
    adminUrl,
    process: child,
    exited,
    async stats(filter) {
      const text = (await adminGet(`${adminUrl}/stats`)) ?? "";
      const out = new Map<string, number>();
      for (const line of text.split("\n")) {
        const i = line.lastIndexOf(": ");
        if (i < 0) continue;
        const name = line.slice(0, i);
        const value = Number(line.slice(i + 2));
        if (!Number.isFinite(value) || (filter !== undefined && !filter.test(name))) continue;
        out.set(name, value);
      }
      return out;
    },
    async stop(graceMs = 5000) {
      if (gone !== undefined) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}
