/**
 * grpc.health.v1.Health, as GIE serves it on :9003 (docs/design/api-resources.md §8). Envoy health-checks the EPP with
 * the service name `envoy.service.ext_proc.v3.ExternalProcessor`; Kubernetes probes use `liveness` / `readiness`
 * (or `inference-extension` in GIE's single-replica chart).
 *
 * - `liveness` is always SERVING: an unsynced or passive replica is alive, restarting it helps nobody.
 * - Without leader election every other name is SERVING iff the datastore has synced (GIE: any name works, which
 *   the chart's `inference-extension` probe relies on).
 * - With leader election `readiness`, `""` and the ext_proc name are SERVING iff synced and leader (active-passive:
 *   prefix-cache state is per replica); any other name answers SERVICE_UNKNOWN, as GIE does.
 * - Watch is UNIMPLEMENTED (GIE too); probes and Envoy only use Check.
 */
import * as grpc from "@grpc/grpc-js";
import { hostPort } from "../common/address.js";
import { EXT_PROC_SERVICE, HEALTH_SERVICE_LIVENESS, HEALTH_SERVICE_READINESS } from "../common/constants.js";
import { ConfigError } from "../common/errors.js";
import { healthService } from "./proto.js";

export const ServingStatus = { UNKNOWN: 0, SERVING: 1, NOT_SERVING: 2, SERVICE_UNKNOWN: 3 } as const;
export type ServingStatusValue = (typeof ServingStatus)[keyof typeof ServingStatus];

const LEADER_GATED: ReadonlySet<string> = new Set(["", HEALTH_SERVICE_READINESS, EXT_PROC_SERVICE]);

export interface HealthStateOptions {
  /** Leader election is on: readiness also requires leadership. Default false. */
  readonly leaderElection?: boolean;
}

/** The mutable readiness inputs; shared by the health server and (optionally) the ext_proc server. */
export class HealthState {
  readonly leaderElection: boolean;
  #synced = false;
  #leader = false;

  constructor(options: HealthStateOptions = {}) {
    this.leaderElection = options.leaderElection ?? false;
  }

  setSynced(synced: boolean): void {
    this.#synced = synced;
  }

  setLeader(leader: boolean): void {
    this.#leader = leader;
  }

  get synced(): boolean {
    return this.#synced;
  }

  get leader(): boolean {
    return this.#leader;
  }

  /** The answer for one service name. */
  status(service: string): ServingStatusValue {
    if (service === HEALTH_SERVICE_LIVENESS) return ServingStatus.SERVING;
    if (!this.leaderElection) return this.#synced ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
    if (!LEADER_GATED.has(service)) return ServingStatus.SERVICE_UNKNOWN;
    return this.#synced && this.#leader ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
  }
}

interface HealthCheckRequest {
  service?: string;
}

interface HealthCheckResponse {
  status: number;
}

/** Handlers for `grpc.health.v1.Health`, to add to any grpc-js server. */
export function healthImplementation(state: HealthState): grpc.UntypedServiceImplementation {
  return {
    Check(
      call: grpc.ServerUnaryCall<HealthCheckRequest, HealthCheckResponse>,
      callback: grpc.sendUnaryData<HealthCheckResponse>,
    ) {
      callback(null, { status: state.status(call.request?.service ?? "") });
    },
    Watch(call: grpc.ServerWritableStream<HealthCheckRequest, HealthCheckResponse>) {
      call.emit("error", { code: grpc.status.UNIMPLEMENTED, details: "Watch is not implemented; use Check" });
    },
  };
}

export function addHealthService(server: grpc.Server, state: HealthState): void {
  server.addService(healthService().service, healthImplementation(state));
}

export interface HealthServerOptions extends HealthStateOptions {
  /** Default "0.0.0.0". */
  readonly host?: string;
  /** Default 9003 (GIE's --grpc-health-port); 0 picks a free port. */
  readonly port?: number;
  /** Share a state object (e.g. with the ext_proc server's healthOnSamePort); default: a new one. */
  readonly state?: HealthState;
}

export interface HealthServer {
  readonly state: HealthState;
  setSynced(synced: boolean): void;
  setLeader(leader: boolean): void;
  start(): Promise<{ port: number }>;
  stop(): Promise<void>;
}

/** Formats `host:port` for grpc-js, bracketing IPv6 literals. */
export function bindAddress(host: string, port: number): string {
  return hostPort(host, port);
}

export function checkPort(name: string, port: number): void {
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ConfigError(`must be an integer port 0..65535, got ${String(port)}`, undefined, name);
  }
}

export function createHealthServer(options: HealthServerOptions = {}): HealthServer {
  const host = options.host ?? "0.0.0.0";
  const port = options.port ?? 9003;
  checkPort("port", port);
  const state = options.state ?? new HealthState(options);
  let server: grpc.Server | undefined;
  return {
    state,
    setSynced: (synced) => state.setSynced(synced),
    setLeader: (leader) => state.setLeader(leader),
    start() {
      if (server !== undefined) return Promise.reject(new Error("health server already started"));
      const s = new grpc.Server();
      server = s;
      addHealthService(s, state);
      return new Promise((resolve, reject) => {
        s.bindAsync(bindAddress(host, port), grpc.ServerCredentials.createInsecure(), (err, bound) => {
          if (err) {
            server = undefined;
            reject(new Error(`health server cannot listen on ${bindAddress(host, port)}: ${err.message}`));
          } else resolve({ port: bound });
        });
      });
    },
    stop() {
      const s = server;
      server = undefined;
      if (s === undefined) return Promise.resolve();
      return new Promise((resolve) => {
        // Probes are unary and short; a brief grace keeps a probe in flight from seeing a reset.
        const timer = setTimeout(() => s.forceShutdown(), 1000);
        s.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    },
  };
}
