/**
 * --metrics-endpoint-auth in Kubernetes mode: /metrics and /debug/* need a bearer token that a TokenReview accepts
 * and a SubjectAccessReview allows to `get` the path, as GIE's controller-runtime metrics filter does. The reviews
 * go through client-node to a loopback fake of those two API endpoints; pods and the pool come from the fake API
 * server the Kubernetes-mode tests use.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningEpp, startEpp } from "../../src/cli/epp.js";
import { silentLogger } from "../../src/observability/logger.js";
import { kubernetesReviewApi } from "../../src/observability/scrape-auth.js";
import { loadKubeConfig } from "../../src/sources/kubernetes.js";
import { LOOPBACK_EPP_FLAGS } from "../helpers/epp-harness.js";
import { FakeApiServer, poolObject } from "../helpers/fake-apiserver.js";
import { total } from "./helpers.js";

/** Tokens the fake knows: who they are, and which non-resource paths they may get. */
const TOKENS: Record<string, { user: string; groups: string[]; paths: string[] }> = {
  "prometheus-token": {
    user: "system:serviceaccount:monitoring:prometheus",
    groups: ["system:serviceaccounts"],
    paths: ["/metrics"],
  },
  "debugger-token": { user: "alice", groups: ["sre"], paths: ["/metrics", "/debug/endpoints"] },
  "nobody-token": { user: "mallory", groups: [], paths: [] },
};

class FakeReviews {
  readonly tokenReviews: string[] = [];
  readonly accessReviews: { user: string; path: string; verb: string }[] = [];
  #server!: Server;
  url = "";

  async start(): Promise<void> {
    this.#server = createServer((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => {
        body += c.toString();
      });
      req.on("end", () => {
        const o = JSON.parse(body || "{}");
        const reply = (x: unknown) => res.writeHead(201, { "content-type": "application/json" }).end(JSON.stringify(x));
        if (req.method === "POST" && req.url?.startsWith("/apis/authentication.k8s.io/v1/tokenreviews")) {
          const token = o.spec?.token as string;
          this.tokenReviews.push(token);
          const t = TOKENS[token];
          reply({
            ...o,
            status: t
              ? { authenticated: true, user: { username: t.user, groups: t.groups } }
              : { authenticated: false },
          });
          return;
        }
        if (req.method === "POST" && req.url?.startsWith("/apis/authorization.k8s.io/v1/subjectaccessreviews")) {
          const { user, nonResourceAttributes: n } = o.spec;
          this.accessReviews.push({ user, path: n.path, verb: n.verb });
          const t = Object.values(TOKENS).find((x) => x.user === user);
          reply({ ...o, status: { allowed: n.verb === "get" && (t?.paths.includes(n.path) ?? false) } });
          return;
        }
        res.writeHead(404).end();
      });
    });
    await new Promise<void>((r) => this.#server.listen(0, "127.0.0.1", r));
    this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  kubeconfig(dir: string): string {
    const file = join(dir, "reviews.kubeconfig");
    writeFileSync(
      file,
      JSON.stringify({
        apiVersion: "v1",
        kind: "Config",
        clusters: [{ name: "r", cluster: { server: this.url, "insecure-skip-tls-verify": true } }],
        users: [{ name: "epp", user: { token: "epp-own-token" } }],
        contexts: [{ name: "r", context: { cluster: "r", user: "epp" } }],
        "current-context": "r",
      }),
    );
    return file;
  }

  close(): Promise<void> {
    return new Promise((r) => this.#server.close(() => r()));
  }
}

describe("metrics endpoint authentication and authorization (Kubernetes mode)", () => {
  let api: FakeApiServer;
  let reviews: FakeReviews;
  let epp: RunningEpp;
  let dir: string;
  let base: string;

  beforeAll(async () => {
    api = await FakeApiServer.start();
    api.create(poolObject("auth-pool", { namespace: "team-a", matchLabels: { app: "x" }, ports: [8000] }));
    reviews = new FakeReviews();
    await reviews.start();
    dir = mkdtempSync(join(tmpdir(), "switchyard-auth-"));
    const kubeconfig = await api.writeKubeconfig(dir, "team-a");
    epp = await startEpp(
      [
        ...["--pool-name", "auth-pool", "--pool-namespace", "team-a", "--kubeconfig", kubeconfig],
        ...LOOPBACK_EPP_FLAGS,
        "--metrics-endpoint-auth=true",
      ],
      // The reviews go to their own fake through client-node, exactly as they would to the API server.
      { logger: silentLogger, reviewApi: kubernetesReviewApi(loadKubeConfig(reviews.kubeconfig(dir))) },
    );
    base = `http://127.0.0.1:${epp.metricsPort}`;
  });
  afterAll(async () => {
    await epp?.stop(100);
    await api?.close();
    await reviews?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const get = (path: string, token?: string) =>
    fetch(`${base}${path}`, token ? { headers: { authorization: `Bearer ${token}` } } : {});

  it("answers 401 without a token or with one the TokenReview rejects", async () => {
    expect((await get("/metrics")).status).toBe(401);
    expect((await get("/metrics", "forged")).status).toBe(401);
    expect((await get("/debug/endpoints")).status).toBe(401);
    expect(reviews.tokenReviews).toContain("forged");
  });

  it("answers 403 to an authenticated user the SubjectAccessReview does not allow", async () => {
    expect((await get("/metrics", "nobody-token")).status).toBe(403);
    expect((await get("/debug/endpoints", "prometheus-token")).status).toBe(403);
    expect(reviews.accessReviews).toContainEqual({ user: "mallory", path: "/metrics", verb: "get" });
  });

  it("serves an allowed scraper, and caches the reviews", async () => {
    const res = await get("/metrics", "prometheus-token");
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toContain("inference_pool_ready_pods");
    expect(total(text, "switchyard_metrics_requests_refused_total", { status: "401" })).toBeGreaterThanOrEqual(3);
    expect(total(text, "switchyard_metrics_requests_refused_total", { status: "403" })).toBeGreaterThanOrEqual(2);
    const before = reviews.tokenReviews.length + reviews.accessReviews.length;
    for (let i = 0; i < 5; i++) expect((await get("/metrics", "prometheus-token")).status).toBe(200);
    expect(reviews.tokenReviews.length + reviews.accessReviews.length).toBe(before);
    expect((await get("/debug/endpoints", "debugger-token")).status).toBe(200);
  });

  it("keeps /healthz open for probes", async () => {
    expect((await get("/healthz")).status).toBe(200);
  });
});

describe("metrics server switches", () => {
  it("serves no /debug/* unless --enable-debug-endpoints, can bind elsewhere, and can be turned off", async () => {
    const api = await FakeApiServer.start();
    api.create(poolObject("p", { namespace: "team-a", matchLabels: { app: "x" }, ports: [8000] }));
    const dir = mkdtempSync(join(tmpdir(), "switchyard-auth-"));
    const kubeconfig = await api.writeKubeconfig(dir, "team-a");
    const common = ["--pool-name", "p", "--pool-namespace", "team-a", "--kubeconfig", kubeconfig];
    const plain = ["--secure-serving=false", "--host", "127.0.0.1", "--grpc-port", "0", "--grpc-health-port", "0"];
    try {
      const a = await startEpp(
        [...common, ...plain, "--metrics-bind-address", "127.0.0.1:0", "--metrics-endpoint-auth=false"],
        {
          logger: silentLogger,
        },
      );
      try {
        expect((await fetch(`http://127.0.0.1:${a.metricsPort}/metrics`)).status).toBe(200);
        expect((await fetch(`http://127.0.0.1:${a.metricsPort}/debug/endpoints`)).status).toBe(404);
      } finally {
        await a.stop(100);
      }
      const b = await startEpp([...common, ...plain, "--metrics-bind-address", "0"], { logger: silentLogger });
      try {
        expect(b.metricsPort).toBe(0);
      } finally {
        await b.stop(100);
      }
    } finally {
      await api.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
