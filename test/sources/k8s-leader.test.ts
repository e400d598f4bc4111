import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { LeaderElector, type LeaderElectorOptions, leaseNameFor } from "../../src/sources/leader.js";
import { FakeApiServer } from "../helpers/fake-apiserver.js";

const NS = "infra";
const LEASE = leaseNameFor(NS, "pool");
const WAIT = { timeout: 15_000, interval: 20 };

let server: FakeApiServer;
let dir: string;
let kubeconfig: string;
const electors: LeaderElector[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "sy-lease-"));
  server = await FakeApiServer.start();
  kubeconfig = await server.writeKubeconfig(dir);
});

afterEach(async () => {
  for (const e of electors.splice(0)) await e.stop();
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

interface Tracked {
  readonly elector: LeaderElector;
  readonly events: string[];
}

function elector(identity: string, extra: Partial<LeaderElectorOptions> = {}): Tracked {
  const events: string[] = [];
  const e = new LeaderElector({
    kubeconfig,
    namespace: NS,
    leaseName: LEASE,
    identity,
    // Short but valid durations (the lease carries whole seconds).
    leaseDurationMs: 1000,
    renewDeadlineMs: 800,
    retryPeriodMs: 100,
    onStartedLeading: () => events.push("started"),
    onStoppedLeading: () => events.push("stopped"),
    ...extra,
  });
  electors.push(e);
  return { elector: e, events };
}

interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  leaseTransitions?: number;
  renewTime?: string;
  acquireTime?: string;
}

function lease(): { spec: LeaseSpec; rv: string } | undefined {
  const l = server.get("coordination.k8s.io/v1", "Lease", NS, LEASE);
  return l ? { spec: (l.spec ?? {}) as LeaseSpec, rv: l.metadata.resourceVersion ?? "" } : undefined;
}

describe("LeaderElector", () => {
  it("uses GIE's lease name", () => {
    expect(leaseNameFor("ns1", "my-pool")).toBe("epp-ns1-my-pool.gateway-api-inference-extension.sigs.k8s.io");
  });

  it("elects one leader, renews, and hands over on release", async () => {
    const a = elector("a");
    a.elector.start();
    await vi.waitFor(() => expect(a.elector.isLeader).toBe(true), WAIT);
    expect(a.events).toEqual(["started"]);
    expect(lease()?.spec).toMatchObject({ holderIdentity: "a", leaseDurationSeconds: 1, leaseTransitions: 0 });
    // MicroTime on the wire: RFC 3339 with microseconds.
    expect(lease()?.spec.renewTime).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/);

    const b = elector("b");
    b.elector.start();
    // Renewal: the record keeps changing while a holds it, and b never takes over.
    const firstRenew = lease()?.spec.renewTime;
    await vi.waitFor(() => expect(lease()?.spec.renewTime).not.toBe(firstRenew), WAIT);
    const secondRenew = lease()?.spec.renewTime;
    await vi.waitFor(() => expect(lease()?.spec.renewTime).not.toBe(secondRenew), WAIT);
    await vi.waitFor(() => expect(b.elector.leader).toBe("a"), WAIT);
    expect(b.elector.isLeader).toBe(false);
    expect(lease()?.spec.holderIdentity).toBe("a");

    await a.elector.stop();
    expect(a.events).toEqual(["started", "stopped"]);
    expect(a.elector.isLeader).toBe(false);
    await vi.waitFor(() => expect(b.elector.isLeader).toBe(true), WAIT);
    expect(b.events).toEqual(["started"]);
    expect(lease()?.spec).toMatchObject({ holderIdentity: "b", leaseTransitions: 1 });
    // The release was written (empty holder) before b acquired.
    const puts = server.requests.filter((r) => r.method === "PUT" && r.path.endsWith(`/leases/${LEASE}`));
    expect(puts.length).toBeGreaterThan(0);
  });

  it("steps down when another holder takes the lease, and re-acquires once that lease expires", async () => {
    const a = elector("a");
    a.elector.start();
    await vi.waitFor(() => expect(a.elector.isLeader).toBe(true), WAIT);
    server.modify("coordination.k8s.io/v1", "Lease", NS, LEASE, (o) => {
      const spec = o.spec as LeaseSpec;
      spec.holderIdentity = "intruder";
      spec.renewTime = new Date().toISOString();
    });
    await vi.waitFor(() => expect(a.events).toEqual(["started", "stopped"]), WAIT);
    expect(a.elector.leader).toBe("intruder");
    // The intruder never renews: after its 1 s lease passes on a's clock, a takes over again.
    await vi.waitFor(() => expect(a.events).toEqual(["started", "stopped", "started"]), WAIT);
    expect(lease()?.spec).toMatchObject({ holderIdentity: "a", leaseTransitions: 1 });
  });

  it("only one of several concurrent candidates wins", async () => {
    const cs = ["x", "y", "z"].map((id) => elector(id));
    for (const c of cs) c.elector.start();
    await vi.waitFor(() => expect(cs.filter((c) => c.elector.isLeader)).toHaveLength(1), WAIT);
    const holder = lease()?.spec.holderIdentity;
    // Keep observing for a few renewals: the winner stays the only leader.
    const rv = Number(lease()?.rv);
    await vi.waitFor(() => expect(Number(lease()?.rv)).toBeGreaterThan(rv + 3), WAIT);
    expect(cs.filter((c) => c.elector.isLeader).map((c) => c.elector.identity)).toEqual([holder]);
  });

  it("keeps leading through an API-server outage (5xx) while nobody can take the lease; the standby does not take over when it returns", async () => {
    const a = elector("a");
    a.elector.start();
    await vi.waitFor(() => expect(a.elector.isLeader).toBe(true), WAIT);
    const b = elector("b");
    b.elector.start();
    await vi.waitFor(() => expect(b.elector.leader).toBe("a"), WAIT);
    server.failNext(Number.POSITIVE_INFINITY, (r) => r.path.includes("/leases"));
    const failed = () => server.requests.filter((r) => r.path.includes("/leases") && r.status === 500).length;
    // 30 failed attempts at a 100 ms retry period span well over the 800 ms renew deadline and the 1 s lease.
    await vi.waitFor(() => expect(failed()).toBeGreaterThan(30), WAIT);
    expect(a.events).toEqual(["started"]);
    expect(a.elector.isLeader).toBe(true);
    expect(b.elector.isLeader).toBe(false);
    server.heal();
    // Both are back on the API: several renewals by a, and b never acquires.
    const rv = Number(lease()?.rv);
    await vi.waitFor(() => expect(Number(lease()?.rv)).toBeGreaterThan(rv + 5), WAIT);
    expect(lease()?.spec.holderIdentity).toBe("a");
    expect(a.events).toEqual(["started"]);
    expect(b.events).toEqual([]);
  });

  it("without holdThroughOutage, or when renewals are refused (403), gives up leadership after the deadline", async () => {
    const a = elector("a", { holdThroughOutage: false });
    a.elector.start();
    await vi.waitFor(() => expect(a.elector.isLeader).toBe(true), WAIT);
    server.failNext(Number.POSITIVE_INFINITY, (r) => r.path.includes("/leases"));
    await vi.waitFor(() => expect(a.events).toEqual(["started", "stopped"]), WAIT);
    server.heal();
    await vi.waitFor(() => expect(a.elector.isLeader).toBe(true), WAIT);

    const b = elector("b");
    b.elector.start();
    await vi.waitFor(() => expect(b.elector.leader).toBe("a"), WAIT);
    await a.elector.stop();
    await vi.waitFor(() => expect(b.elector.isLeader).toBe(true), WAIT);
    server.forbid("coordination.k8s.io/v1/leases");
    await vi.waitFor(() => expect(b.events).toEqual(["started", "stopped"]), WAIT);
  });

  it("a standby that could not read the lease does not take it on its first read after an outage", async () => {
    // b's view: a's record, then an outage longer than the lease, then b can read again while a cannot yet write.
    // Judged by "unchanged since I last saw it change", the record looks expired and b would take it at once; b
    // must restart its clock instead, so the leader's renewal (when it gets through) wins.
    const kcA = await server.writeKubeconfig(dir, "default", "token-a");
    const kcB = await server.writeKubeconfig(dir, "default", "token-b");
    const timing = { leaseDurationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 100 };
    const a = elector("a", { kubeconfig: kcA, ...timing });
    a.elector.start();
    await vi.waitFor(() => expect(a.elector.isLeader).toBe(true), WAIT);
    const b = elector("b", { kubeconfig: kcB, ...timing });
    b.elector.start();
    await vi.waitFor(() => expect(b.elector.leader).toBe("a"), WAIT);
    const leaseReqs = (token: string, status: number) =>
      server.requests.filter((r) => r.path.includes("/leases") && r.token === token && r.status === status).length;
    server.failNext(Number.POSITIVE_INFINITY, (r) => r.path.includes("/leases"));
    // More than the 3 s lease on b's side: 40 failed attempts at >= 100 ms each.
    await vi.waitFor(() => expect(leaseReqs("token-b", 500)).toBeGreaterThan(40), { ...WAIT, timeout: 30_000 });
    // Only a's requests keep failing now.
    server.failNext(Number.POSITIVE_INFINITY, (r) => r.path.includes("/leases") && r.token === "token-a");
    const readsBefore = leaseReqs("token-b", 200);
    await vi.waitFor(() => expect(leaseReqs("token-b", 200)).toBeGreaterThan(readsBefore + 3), WAIT);
    expect(b.elector.isLeader).toBe(false);
    server.heal();
    const rv = Number(lease()?.rv);
    await vi.waitFor(() => expect(Number(lease()?.rv)).toBeGreaterThan(rv + 2), WAIT);
    expect(lease()?.spec.holderIdentity).toBe("a");
    expect(b.events).toEqual([]);
    expect(a.events).toEqual(["started"]);
  });

  it("a standby whose reads fail now and then still takes over from a leader that stopped renewing", async () => {
    // a is cut off (every lease request fails), and one of b's lease reads (GETs) in two fails. Expiry is measured from
    // when b last saw the record change, as client-go does: short blind spells must not restart that clock, or b
    // would wait for as long as the API server stays flaky.
    const kcA = await server.writeKubeconfig(dir, "default", "token-a");
    const kcB = await server.writeKubeconfig(dir, "default", "token-b");
    const a = elector("a", { kubeconfig: kcA });
    a.elector.start();
    await vi.waitFor(() => expect(a.elector.isLeader).toBe(true), WAIT);
    const b = elector("b", { kubeconfig: kcB });
    b.elector.start();
    await vi.waitFor(() => expect(b.elector.leader).toBe("a"), WAIT);
    let bReads = 0;
    server.failNext(
      Number.POSITIVE_INFINITY,
      (r) =>
        r.path.includes("/leases") &&
        (r.token === "token-a" || (r.token === "token-b" && r.method === "GET" && bReads++ % 2 === 0)),
    );
    await vi.waitFor(() => expect(b.elector.isLeader).toBe(true), WAIT);
    expect(lease()?.spec.holderIdentity).toBe("b");
    // It did see failures on the way (the flakiness was real).
    expect(server.requests.some((r) => r.token === "token-b" && r.status === 500)).toBe(true);
  });

  it("validates its timing invariants", () => {
    const base = { kubeconfig, namespace: NS, leaseName: LEASE };
    expect(() => new LeaderElector({ ...base, leaseDurationMs: 1500 })).toThrow(/whole seconds/);
    expect(() => new LeaderElector({ ...base, leaseDurationMs: 2000, renewDeadlineMs: 2000 })).toThrow(
      /renewDeadlineMs/,
    );
    expect(
      () => new LeaderElector({ ...base, leaseDurationMs: 2000, renewDeadlineMs: 1000, retryPeriodMs: 900 }),
    ).toThrow(/retryPeriodMs/);
    expect(() => new LeaderElector({ ...base, namespace: "" })).toThrow(/namespace/);
  });
});
