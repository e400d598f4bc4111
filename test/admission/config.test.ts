import { describe, expect, it } from "vitest";
import { parseAdmissionConfig, parseByteQuantity } from "../../src/admission/config.js";
import { ConfigError } from "../../src/common/errors.js";
import { loadPickerConfig } from "../../src/scheduling/index.js";

const HEAD = "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n";
const parse = (yaml: string) => parseAdmissionConfig(loadPickerConfig({ text: HEAD + yaml, file: "epp.yaml" }));

function fieldOf(yaml: string): string | undefined {
  try {
    parse(yaml);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).field;
  }
  throw new Error("expected a ConfigError");
}

describe("admission config", () => {
  it("defaults: no budgets, flow control off, recommend-only autoscaling", () => {
    const c = parse("");
    expect(c.admission.budgets).toEqual([]);
    expect(c.admission.defaultMaxTokens).toBe(256);
    expect(c.flowControl.enabled).toBe(false);
    expect(c.flowControl.defaultRequestTTLMs).toBe(30_000);
    expect(c.flowControl.defaultPriorityBand.maxBytes).toBe(1_000_000_000);
    expect(c.autoscaling.configured).toBe(false);
    expect(c.autoscaling.scaleDownStabilizationMs).toBe(300_000);
  });

  it("reads budgets, the tenant header and GIE's flowControl field names", () => {
    const c = parse(`
admission:
  tenantHeader: X-Tenant
  defaultMaxTokens: 100
  budgets:
    - {name: per-tenant, tenant: "*", tokensPerMinute: 1000, requestsPerMinute: 10}
    - {name: llama, model: llama, tokensPerMinute: 5000}
flowControl:
  maxRequests: 50
  maxBytes: 1Mi
  defaultRequestTTL: 1500ms
  defaultPriorityBand: {maxRequests: 20}
  priorityBands:
    - {priority: 5, maxBytes: "2k", fairnessPolicyRef: global-strict-fairness-policy}
`);
    expect(c.admission.tenantHeader).toBe("x-tenant");
    expect(c.admission.budgets.map((b) => [b.name, b.model, b.tenant, b.tokensPerMinute, b.requestsPerMinute])).toEqual(
      [
        ["per-tenant", undefined, "*", 1000, 10],
        ["llama", "llama", undefined, 5000, undefined],
      ],
    );
    expect(c.flowControl).toMatchObject({
      enabled: true,
      maxRequests: 50,
      maxBytes: 1024 * 1024,
      defaultRequestTTLMs: 1500,
      fairness: "global-strict",
    });
    expect(c.flowControl.defaultPriorityBand).toEqual({ maxRequests: 20, maxBytes: 1_000_000_000 });
    // A listed band inherits unspecified limits from the default band.
    expect(c.flowControl.priorityBands.get(5)).toEqual({ maxRequests: 20, maxBytes: 2000 });
  });

  it("enables flow control by feature gate alone", () => {
    expect(parse("featureGates: [flowControl]\n").flowControl.enabled).toBe(true);
  });

  it("accepts the utilisation target as a fraction or a percentage", () => {
    expect(parse("autoscaling: {targetGpuCacheUtilization: 75}\n").autoscaling.targetGpuCacheUtilization).toBe(0.75);
    expect(parse("autoscaling: {targetGpuCacheUtilization: 0.6}\n").autoscaling.targetGpuCacheUtilization).toBe(0.6);
    expect(parse("autoscaling: {scaleDownStabilizationWindow: 2m}\n").autoscaling.scaleDownStabilizationMs).toBe(
      120_000,
    );
  });

  it("rejects bad input with the exact field path", () => {
    expect(fieldOf("admission: {budgets: [{name: a}]}\n")).toBe("admission.budgets[0]");
    expect(fieldOf("admission: {budgets: [{name: a, tokensPerMinute: 0}]}\n")).toBe(
      "admission.budgets[0].tokensPerMinute",
    );
    expect(fieldOf("admission: {budgets: [{name: a, rpm: 3}]}\n")).toBe("admission.budgets[0].rpm");
    expect(fieldOf("admission: {budgets: [{name: a, requestsPerMinute: 1}, {name: a, requestsPerMinute: 2}]}\n")).toBe(
      "admission.budgets[1].name",
    );
    expect(fieldOf("admission: {tenantHeader: 'bad header'}\n")).toBe("admission.tenantHeader");
    expect(fieldOf("flowControl: {defaultRequestTTL: 30}\n")).toBe("flowControl.defaultRequestTTL");
    expect(fieldOf("flowControl: {maxBytes: lots}\n")).toBe("flowControl.maxBytes");
    expect(fieldOf("flowControl: {priorityBands: [{priority: 1}, {priority: 1}]}\n")).toBe(
      "flowControl.priorityBands[1].priority",
    );
    expect(fieldOf("flowControl: {priorityBands: [{priority: 1, orderingPolicyRef: edf-ordering-policy}]}\n")).toBe(
      "flowControl.priorityBands[0].orderingPolicyRef",
    );
    expect(fieldOf("autoscaling: {minReplicas: 5, maxReplicas: 2}\n")).toBe("autoscaling.maxReplicas");
    expect(fieldOf("autoscaling: {targetGpuCacheUtilization: 150}\n")).toBe("autoscaling.targetGpuCacheUtilization");
    expect(fieldOf("budgets: []\n")).toBe("budgets");
  });

  it("names the file in the message", () => {
    expect(() => parse("flowControl: {maxRequests: -1}\n")).toThrow(/^epp\.yaml: flowControl\.maxRequests: /);
  });

  it("parses Kubernetes byte quantities", () => {
    expect(parseByteQuantity("1Gi")).toBe(1024 ** 3);
    expect(parseByteQuantity("500M")).toBe(500_000_000);
    expect(parseByteQuantity(42)).toBe(42);
    expect(parseByteQuantity("1.5Ki")).toBe(1536);
    expect(parseByteQuantity("-1")).toBeUndefined();
    expect(parseByteQuantity("1 GB")).toBeUndefined();
  });
});

describe("flow-control policies from the plugin registry", () => {
  it("accepts the registered policies as GIE config plugins and as references", () => {
    const c = parse(`plugins:
  - type: global-strict-fairness-policy
  - type: fcfs-ordering-policy
  - type: static-usage-limit-policy
flowControl:
  usageLimitPolicyPluginRef: static-usage-limit-policy
  defaultPriorityBand: {fairnessPolicyRef: global-strict-fairness-policy, orderingPolicyRef: fcfs-ordering-policy}
`);
    expect(c.flowControl.fairness).toBe("global-strict");
  });

  it("checks references against the registry, by kind, naming the field", () => {
    expect(() => parse("flowControl: {defaultPriorityBand: {fairnessPolicyRef: fcfs-ordering-policy}}\n")).toThrow(
      /^epp\.yaml: flowControl\.defaultPriorityBand\.fairnessPolicyRef: must be one of global-strict-fairness-policy, round-robin-fairness-policy(, [^,]+)*, got "fcfs-ordering-policy"$/,
    );
    expect(() => parse("flowControl: {usageLimitPolicyPluginRef: round-robin-fairness-policy}\n")).toThrow(
      'flowControl.usageLimitPolicyPluginRef: only "static-usage-limit-policy" is supported (dispatch gates on the saturation detector), got "round-robin-fairness-policy"',
    );
  });
});
