/**
 * Lease-based leader election (coordination.k8s.io/v1), compatible with controller-runtime's LeaseLock as GIE
 * uses it: same lease name, same record fields, same timing defaults, release on stop.
 *
 * Active-passive: GIE keeps prefix-cache state in memory, so only the leader reports ready
 * (docs/design/api-resources.md §8).
 *
 * Expiry is judged by client-go's rule: a lease is expired when its record has not CHANGED for leaseDuration as
 * measured on OUR clock since we first observed that record, never by comparing the remote `renewTime` with our
 * wall clock (clocks across nodes skew). Writes use resourceVersion optimistic concurrency, so two candidates can
 * never both win the same round.
 *
 * Where we differ from client-go (on purpose): when the leader sees another holder in the lease it steps down
 * at once instead of retrying until renewDeadline, and after losing leadership it becomes a candidate again
 * instead of exiting the process (controller-runtime exits; a restart would drop warm state for nothing).
 *
 * API-server outages (docs/kubernetes.md "Routing through an API-server outage"): a renewal that gets no answer
 * (connection refused, timeout) or a 5xx/429 does not end leadership, because while the API server cannot write
 * leases nobody can take this one over; the leader keeps serving until it READS another holder in the lease. A
 * renewal the server refuses (401/403, a Role problem) still ends leadership after renewDeadline. Symmetrically a
 * standby that could not read the lease for longer than leaseDuration (an outage, during which the leader could not
 * renew either) restarts its expiry clock on the next read, so when the API server comes back the leader's first
 * renewal wins instead of a standby that saw an "old" record. Shorter blind spells (a flaky API server failing
 * some reads) do not: expiry stays measured from when the record last changed, as client-go measures it, or a
 * standby would never take over from a dead leader while reads keep failing now and then. The cost: a leader cut off
 * from the API server alone keeps serving while a standby takes the lease, so both may be ready for the length
 * of that partition (routing stays correct; only prefix-cache affinity splits).
 */
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { CoordinationV1Api, type KubeConfig, type V1Lease, V1MicroTime } from "@kubernetes/client-node";
import { ConfigError } from "../common/errors.js";
import { type Logger, silentLogger } from "../observability/logger.js";
import { loadKubeConfig } from "./kubernetes.js";

/** controller-runtime defaults (exact). */
export const DEFAULT_LEASE_DURATION_MS = 15_000;
export const DEFAULT_RENEW_DEADLINE_MS = 10_000;
export const DEFAULT_RETRY_PERIOD_MS = 2_000;
/** client-go's wait.JitterUntil factor for candidates. */
const JITTER_FACTOR = 1.2;

/** GIE's leader-election ID for a pool (exact). */
export function leaseNameFor(namespace: string, poolName: string): string {
  return `epp-${namespace}-${poolName}.gateway-api-inference-extension.sigs.k8s.io`;
}

export interface LeaderElectorOptions {
  /** kubeconfig path or a loaded KubeConfig; default: in-cluster, else $KUBECONFIG / ~/.kube/config. */
  readonly kubeconfig?: string | KubeConfig;
  readonly namespace: string;
  /** Lease name; use `leaseNameFor(namespace, pool)` for GIE compatibility. */
  readonly leaseName: string;
  /** This candidate's identity (default `<hostname>_<uuid>`, as controller-runtime). */
  readonly identity?: string;
  /** How long a lease is valid without renewal (default 15 s; whole seconds on the wire). */
  readonly leaseDurationMs?: number;
  /** The leader steps down if it cannot renew for this long (default 10 s). */
  readonly renewDeadlineMs?: number;
  /** Pause between attempts (default 2 s; candidates add up to 20 % jitter). */
  readonly retryPeriodMs?: number;
  readonly onStartedLeading?: () => void;
  readonly onStoppedLeading?: () => void;
  /** Called when the observed holder changes (including to ourselves, or "" when released). */
  readonly onNewLeader?: (identity: string) => void;
  /**
   * Keep leadership while renewals get no answer or a 5xx (API server down) instead of stepping down after
   * renewDeadline (default true; see the file comment).
   */
  readonly holdThroughOutage?: boolean;
  readonly logger?: Logger;
  readonly random?: () => number;
}

function statusOf(err: unknown): number | undefined {
  const code = (err as { code?: unknown; statusCode?: unknown } | null)?.code;
  if (typeof code === "number") return code;
  const sc = (err as { statusCode?: unknown } | null)?.statusCode;
  return typeof sc === "number" ? sc : undefined;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message.split("\n")[0]! : String(err);
}

class TimeoutError extends Error {
  override readonly name = "TimeoutError";
}

/** No answer, or an answer that says the API server itself is unavailable: nobody can write the lease either. */
export function isOutage(err: unknown): boolean {
  const status = statusOf(err);
  if (status === undefined) return true;
  return status >= 500 || status === 429;
}

export class LeaderElector {
  readonly identity: string;
  readonly #api: CoordinationV1Api;
  readonly #namespace: string;
  readonly #leaseName: string;
  readonly #leaseDurationMs: number;
  readonly #renewDeadlineMs: number;
  readonly #retryPeriodMs: number;
  readonly #o: LeaderElectorOptions;
  readonly #logger: Logger;
  readonly #random: () => number;

  #leader = false;
  #observedHolder = "";
  #observedRecord = "";
  #observedAt = 0;
  #lastRenewAt = 0;
  /** When the current run of failed reads began (performance.now()); undefined while reads succeed. */
  #blindSince: number | undefined;
  /** The last attempt could not read the lease. */
  #blind = false;
  /** The leader is holding on through an outage (logged once per outage). */
  #holding = false;
  #stopped = false;
  #loop: Promise<void> | undefined;
  #wake: (() => void) | undefined;

  constructor(options: LeaderElectorOptions) {
    if (typeof options?.namespace !== "string" || options.namespace === "") {
      throw new ConfigError("namespace must be a non-empty string", undefined, "leader-election");
    }
    if (typeof options.leaseName !== "string" || options.leaseName === "") {
      throw new ConfigError("leaseName must be a non-empty string", undefined, "leader-election");
    }
    const lease = options.leaseDurationMs ?? DEFAULT_LEASE_DURATION_MS;
    const renew = options.renewDeadlineMs ?? DEFAULT_RENEW_DEADLINE_MS;
    const retry = options.retryPeriodMs ?? DEFAULT_RETRY_PERIOD_MS;
    // client-go's invariants: the leader must give up before others may take over, and retry within the deadline.
    if (!(lease >= 1000) || lease % 1000 !== 0) {
      throw new ConfigError(
        `leaseDurationMs must be whole seconds >= 1000, got ${lease}`,
        undefined,
        "leader-election",
      );
    }
    if (!(renew > 0 && renew < lease)) {
      throw new ConfigError(
        `renewDeadlineMs must be in (0, leaseDurationMs), got ${renew}`,
        undefined,
        "leader-election",
      );
    }
    if (!(retry > 0 && retry * JITTER_FACTOR < renew)) {
      throw new ConfigError(
        `retryPeriodMs × ${JITTER_FACTOR} must be < renewDeadlineMs, got ${retry}`,
        undefined,
        "leader-election",
      );
    }
    const kc = typeof options.kubeconfig === "object" ? options.kubeconfig : loadKubeConfig(options.kubeconfig);
    this.#api = kc.makeApiClient(CoordinationV1Api);
    this.#namespace = options.namespace;
    this.#leaseName = options.leaseName;
    this.#leaseDurationMs = lease;
    this.#renewDeadlineMs = renew;
    this.#retryPeriodMs = retry;
    this.#o = options;
    this.identity = options.identity ?? `${hostname()}_${randomUUID()}`;
    this.#logger = (options.logger ?? silentLogger).child({ component: "leader-election", lease: options.leaseName });
    this.#random = options.random ?? Math.random;
  }

  get isLeader(): boolean {
    return this.#leader;
  }

  /** Holder identity last seen in the lease ("" when none or released). */
  get leader(): string {
    return this.#observedHolder;
  }

  /** Starts campaigning in the background. Idempotent. */
  start(): void {
    if (this.#loop !== undefined || this.#stopped) return;
    this.#loop = this.#run();
  }

  /** Stops campaigning; a leader releases the lease so a standby takes over without waiting for expiry. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#wake?.();
    await this.#loop;
    if (this.#leader) {
      try {
        await this.#release();
      } catch (err) {
        this.#logger.warn({ err: message(err) }, "failed to release the lease; it will expire");
      }
      this.#setLeader(false);
    }
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      let ok = false;
      let outage = false;
      try {
        ok = await this.#withTimeout(this.#tryAcquireOrRenew());
      } catch (err) {
        outage = isOutage(err);
        if (!this.#blind) this.#blindSince = performance.now();
        this.#blind = true;
        if (!this.#holding) this.#logger.warn({ err: message(err), status: statusOf(err) }, "lease update failed");
      }
      if (this.#stopped) break;
      const now = performance.now();
      if (ok) {
        this.#lastRenewAt = now;
        if (this.#holding) this.#logger.info("lease renewed again after the API server outage");
        this.#holding = false;
        if (!this.#leader) this.#setLeader(true);
      } else if (this.#leader) {
        const lostToOther = this.#observedHolder !== "" && this.#observedHolder !== this.identity;
        const pastDeadline = now - this.#lastRenewAt >= this.#renewDeadlineMs;
        if (!lostToOther && pastDeadline && outage && this.#o.holdThroughOutage !== false) {
          if (!this.#holding) {
            this.#logger.warn(
              { sinceRenewMs: Math.round(now - this.#lastRenewAt) },
              "cannot renew the lease: API server unavailable; keeping leadership while nobody can take it over",
            );
          }
          this.#holding = true;
        } else if (lostToOther || pastDeadline) {
          this.#holding = false;
          this.#logger.warn(
            { holder: this.#observedHolder, sinceRenewMs: Math.round(now - this.#lastRenewAt) },
            "lost leadership",
          );
          this.#setLeader(false);
        }
      }
      const pause = this.#leader
        ? this.#retryPeriodMs
        : this.#retryPeriodMs * (1 + (JITTER_FACTOR - 1) * this.#random());
      await this.#sleep(pause);
    }
  }

  #setLeader(leader: boolean): void {
    if (this.#leader === leader) return;
    this.#leader = leader;
    this.#logger.info({ identity: this.identity }, leader ? "became leader" : "stopped leading");
    try {
      if (leader) this.#o.onStartedLeading?.();
      else this.#o.onStoppedLeading?.();
    } catch (err) {
      this.#logger.error({ err: message(err) }, "leader-election callback threw");
    }
  }

  #observe(lease: V1Lease | undefined): void {
    const spec = lease?.spec ?? {};
    const record = JSON.stringify([
      spec.holderIdentity ?? "",
      spec.leaseDurationSeconds,
      String(spec.acquireTime ?? ""),
      String(spec.renewTime ?? ""),
      spec.leaseTransitions,
    ]);
    const now = performance.now();
    // Blind for longer than a lease: the leader could not renew either, so the unchanged record proves nothing.
    const longBlind = this.#blind && now - (this.#blindSince ?? now) >= this.#leaseDurationMs;
    if (record !== this.#observedRecord || longBlind) {
      this.#observedRecord = record;
      this.#observedAt = now;
    }
    this.#blind = false;
    this.#blindSince = undefined;
    const holder = spec.holderIdentity ?? "";
    if (holder !== this.#observedHolder) {
      this.#observedHolder = holder;
      try {
        this.#o.onNewLeader?.(holder);
      } catch (err) {
        this.#logger.error({ err: message(err) }, "onNewLeader threw");
      }
    }
  }

  async #tryAcquireOrRenew(): Promise<boolean> {
    const now = new V1MicroTime(Date.now());
    const leaseDurationSeconds = this.#leaseDurationMs / 1000;
    let lease: V1Lease;
    try {
      lease = await this.#api.readNamespacedLease({ name: this.#leaseName, namespace: this.#namespace });
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
      try {
        const created = await this.#api.createNamespacedLease({
          namespace: this.#namespace,
          body: {
            apiVersion: "coordination.k8s.io/v1",
            kind: "Lease",
            metadata: { name: this.#leaseName, namespace: this.#namespace },
            spec: {
              holderIdentity: this.identity,
              leaseDurationSeconds,
              acquireTime: now,
              renewTime: now,
              leaseTransitions: 0,
            },
          },
        });
        this.#observe(created);
        return true;
      } catch (createErr) {
        // 409: another candidate created it first; we will read it next round.
        if (statusOf(createErr) === 409) return false;
        throw createErr;
      }
    }
    this.#observe(lease);
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? "";
    const durationMs = (spec.leaseDurationSeconds ?? leaseDurationSeconds) * 1000;
    if (holder !== "" && holder !== this.identity && this.#observedAt + durationMs > performance.now()) return false;
    const mine = holder === this.identity;
    try {
      const updated = await this.#api.replaceNamespacedLease({
        name: this.#leaseName,
        namespace: this.#namespace,
        body: {
          apiVersion: "coordination.k8s.io/v1",
          kind: "Lease",
          metadata: { ...lease.metadata, name: this.#leaseName, namespace: this.#namespace },
          spec: {
            holderIdentity: this.identity,
            leaseDurationSeconds,
            renewTime: now,
            acquireTime: mine && spec.acquireTime !== undefined ? spec.acquireTime : now,
            leaseTransitions: mine ? (spec.leaseTransitions ?? 0) : (spec.leaseTransitions ?? 0) + 1,
          },
        },
      });
      this.#observe(updated);
      return true;
    } catch (err) {
      // 409: someone else wrote the lease since our read (optimistic concurrency); not an error.
      if (statusOf(err) === 409) return false;
      throw err;
    }
  }

  async #release(): Promise<void> {
    const lease = await this.#withTimeout(
      this.#api.readNamespacedLease({ name: this.#leaseName, namespace: this.#namespace }),
    );
    if ((lease.spec?.holderIdentity ?? "") !== this.identity) return;
    const now = new V1MicroTime(Date.now());
    // client-go's release record: no holder, 1 s duration, so standbys take over on their next attempt.
    await this.#withTimeout(
      this.#api.replaceNamespacedLease({
        name: this.#leaseName,
        namespace: this.#namespace,
        body: {
          apiVersion: "coordination.k8s.io/v1",
          kind: "Lease",
          metadata: lease.metadata ?? { name: this.#leaseName, namespace: this.#namespace },
          spec: {
            holderIdentity: "",
            leaseDurationSeconds: 1,
            acquireTime: now,
            renewTime: now,
            leaseTransitions: lease.spec?.leaseTransitions ?? 0,
          },
        },
      }),
    );
    this.#logger.info({ identity: this.identity }, "released the lease");
  }

  /** A hung API call must not outlive the renew deadline, or the leader could not notice it lost the lease. */
  #withTimeout<T>(p: Promise<T>): Promise<T> {
    const ms = Math.max(1, Math.min(this.#renewDeadlineMs, this.#retryPeriodMs * 2));
    let timer: NodeJS.Timeout | undefined;
    // The late outcome of a timed-out call is dropped on purpose; without a handler it would be "unhandled".
    p.catch(() => undefined);
    return Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new TimeoutError(`lease request timed out after ${ms} ms`)), ms);
      }),
    ]).finally(() => clearTimeout(timer));
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    });
  }
}
