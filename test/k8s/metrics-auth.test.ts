/**
 * --metrics-endpoint-auth against a REAL kube-apiserver (test/helpers/kube-apiserver.ts): the EPP runs as a
 * ServiceAccount with the minimal Role plus the chart's review rules, scrapers present real ServiceAccount tokens,
 * and RBAC decides, as for GIE's controller-runtime metrics filter (docs/security.md).
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { type ApiObject, KubeApiServer } from "../helpers/kube-apiserver.js";
import { describeWithTools } from "../helpers/tools.js";
import { type CapturedEpp, crdFiles, minimalRole, poolManifest, startKubeEpp } from "./helpers.js";

const RBAC = "rbac.authorization.k8s.io/v1";

describeWithTools(["etcd", "kube-apiserver"], "metrics endpoint auth against a real kube-apiserver", (tools) => {
  let kube: KubeApiServer;
  let epp: CapturedEpp | undefined;
  const tokens: Record<string, string> = {};

  async function token(sa: string): Promise<string> {
    const r = (await kube.request("POST", `/api/v1/namespaces/default/serviceaccounts/${sa}/token`, {
      apiVersion: "authentication.k8s.io/v1",
      kind: "TokenRequest",
      spec: { expirationSeconds: 3600 },
    })) as { status: { token: string } };
    return r.status.token;
  }

  function clusterGrant(name: string, sa: string, rules: unknown[]): ApiObject[] {
    return [
      { apiVersion: RBAC, kind: "ClusterRole", metadata: { name }, rules },
      {
        apiVersion: RBAC,
        kind: "ClusterRoleBinding",
        metadata: { name },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name },
        subjects: [{ kind: "ServiceAccount", name: sa, namespace: "default" }],
      },
    ];
  }

  beforeAll(async () => {
    kube = await KubeApiServer.start({ etcd: tools.etcd, kubeApiserver: tools["kube-apiserver"] });
    await kube.applyCrdFiles(crdFiles());
    await kube.apply(poolManifest("auth-pool", { app: "auth" }, 8000));
    const eppKubeconfig = await kube.serviceAccountKubeconfig("epp", { rules: minimalRole() });
    await kube.apply([
      // What the chart grants the EPP when monitoring.prometheus.auth.enabled is true.
      ...clusterGrant("epp-auth", "epp", [
        { apiGroups: ["authentication.k8s.io"], resources: ["tokenreviews"], verbs: ["create"] },
        { apiGroups: ["authorization.k8s.io"], resources: ["subjectaccessreviews"], verbs: ["create"] },
      ]),
      { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: "prometheus", namespace: "default" } },
      ...clusterGrant("metrics-reader", "prometheus", [{ nonResourceURLs: ["/metrics"], verbs: ["get"] }]),
      { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: "nobody", namespace: "default" } },
    ]);
    tokens.prometheus = await token("prometheus");
    tokens.nobody = await token("nobody");
    epp = await startKubeEpp(eppKubeconfig, [
      ...["--pool-name", "auth-pool", "--pool-namespace", "default"],
      "--metrics-endpoint-auth=true",
    ]);
  }, 180_000);

  afterAll(async () => {
    await epp?.stop();
    await kube?.close();
  }, 60_000);

  const get = (path: string, bearer?: string) =>
    fetch(
      `http://127.0.0.1:${epp!.epp.metricsPort}${path}`,
      bearer ? { headers: { authorization: `Bearer ${bearer}` } } : {},
    );

  it("refuses a scrape without a token (401) and with a forged one (401)", async () => {
    expect((await get("/metrics")).status).toBe(401);
    expect((await get("/metrics", "not-a-real-token")).status).toBe(401);
  });

  it("refuses a real ServiceAccount that RBAC does not allow (403)", async () => {
    expect((await get("/metrics", tokens.nobody)).status).toBe(403);
    // The metrics reader may get /metrics, not /debug/endpoints.
    expect((await get("/debug/endpoints", tokens.prometheus)).status).toBe(403);
  });

  it("serves the ServiceAccount bound to get /metrics", async () => {
    const res = await get("/metrics", tokens.prometheus);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toContain("switchyard_metrics_requests_refused_total");
    expect(text).toMatch(/switchyard_metrics_requests_refused_total\{status="403"\} [1-9]/);
  });
});
