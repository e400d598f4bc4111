/**
 * The shipped Envoy bootstraps (deploy/envoy/) rendered by src/local/envoy.ts: placeholders all filled, every
 * option applied where it belongs, and — with Envoy installed — accepted by `envoy --mode validate`.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { ConfigError } from "../../src/common/errors.js";
import { type EnvoyConfigOptions, fillPlaceholders, renderEnvoyConfig } from "../../src/local/envoy.js";
import { describeWithTools } from "../helpers/tools.js";

const BASE: EnvoyConfigOptions = { listenPort: 18080, adminPort: 19090, eppPort: 19002, accessLog: "/dev/null" };

/** Walks a parsed document; a missing step yields undefined. */
function dig(doc: unknown, ...path: (string | number)[]): unknown {
  let node = doc;
  for (const step of path) node = (node as Record<string | number, unknown> | undefined)?.[step];
  return node;
}

const HCM = ["static_resources", "listeners", 0, "filter_chains", 0, "filters", 0, "typed_config"] as const;
const names = (doc: unknown) => (dig(doc, ...HCM, "http_filters") as { name: string }[]).map((f) => f.name);

const VARIANTS: [string, EnvoyConfigOptions][] = [
  ["shipped defaults", BASE],
  [
    "TLS to the EPP, subset hint, fail-open",
    {
      ...BASE,
      eppTls: true,
      subsetHintHeader: "x-hint",
      fallbackEndpoint: "127.0.1.1:8000",
      failureModeAllow: true,
      requestBodyMode: "BUFFERED",
      responseBodyMode: "BUFFERED",
    },
  ],
  [
    "Envoy alone (baseline)",
    { ...BASE, baseline: { policy: "LEAST_REQUEST", endpoints: ["127.0.1.1:8000", "127.0.1.2:8000"] } },
  ],
  ["Envoy Gateway shape", { ...BASE, template: "envoy-gateway-like", requestBodyMode: "STREAMED" }],
];

describe("deploy/envoy rendering", () => {
  it("fills every placeholder and refuses a missing one", () => {
    const $ = "$";
    expect(fillPlaceholders(`a ${$}{X:-1} ${$}{Y}`, { Y: "2" })).toBe("a 1 2");
    expect(() => fillPlaceholders(`${$}{Z}`, {})).toThrow(ConfigError);
    for (const [, options] of VARIANTS) expect(renderEnvoyConfig(options)).not.toMatch(/\$\{/);
  });

  it("applies the options where Envoy reads them", () => {
    const doc = parse(renderEnvoyConfig(VARIANTS[1]![1])) as unknown;
    expect(names(doc)).toEqual([
      "envoy.filters.http.header_to_metadata",
      "envoy.filters.http.header_mutation",
      "envoy.filters.http.ext_proc",
      "envoy.filters.http.router",
    ]);
    expect(dig(doc, ...HCM, "http_filters", 2, "typed_config", "failure_mode_allow")).toBe(true);
    expect(dig(doc, ...HCM, "http_filters", 2, "typed_config", "processing_mode", "request_body_mode")).toBe(
      "BUFFERED",
    );
    expect(
      dig(doc, ...HCM, "route_config", "virtual_hosts", 0, "routes", 0, "request_headers_to_add", 0),
    ).toMatchObject({
      header: { key: "x-gateway-destination-endpoint", value: "127.0.1.1:8000" },
      append_action: "ADD_IF_ABSENT",
    });
    const clusters = dig(doc, "static_resources", "clusters") as {
      name: string;
      transport_socket?: { name: string };
    }[];
    expect(clusters.find((c) => c.name === "endpoint_picker")?.transport_socket?.name).toBe(
      "envoy.transport_sockets.tls",
    );
    const shipped = parse(renderEnvoyConfig(BASE)) as unknown;
    expect(dig(shipped, "layered_runtime", "layers", 0, "static_layer")).toEqual({
      "envoy.reloadable_features.ext_proc_graceful_grpc_close": true,
    });
    const alone = parse(renderEnvoyConfig(VARIANTS[2]![1])) as unknown;
    expect(names(alone)).toEqual(["envoy.filters.http.router"]);
    expect(dig(alone, ...HCM, "route_config", "virtual_hosts", 0, "routes", 0, "route", "cluster")).toBe(
      "baseline_pool",
    );
  });

  it("rejects an unknown body mode by name", () => {
    expect(() => renderEnvoyConfig({ ...BASE, requestBodyMode: "SOMETIMES" as never })).toThrow(/requestBodyMode/);
  });
});

describeWithTools(["envoy"], "deploy/envoy validated by Envoy", ({ envoy }) => {
  const dir = mkdtempSync(join(tmpdir(), "switchyard-envoy-validate-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  for (const [name, options] of VARIANTS) {
    it(`envoy --mode validate accepts: ${name}`, () => {
      const file = join(dir, `${name.replace(/\W+/g, "-")}.yaml`);
      writeFileSync(file, renderEnvoyConfig(options));
      const out = execFileSync(envoy, ["--mode", "validate", "-c", file, "--disable-hot-restart"], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "pipe"],
      });
      expect(out).toMatch(/configuration .* OK/);
    }, 60_000);
  }
});
