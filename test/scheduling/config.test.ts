import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError } from "../../src/common/errors.js";
import { registeredPluginTypes, registerPluginType } from "../../src/common/registry.js";
import { isMetricsDataSource, isMetricsExtractor, registerDataLayerPlugins } from "../../src/datalayer/extractor.js";
import { defaultPickerConfig, instantiatePlugins, loadPickerConfig } from "../../src/scheduling/config.js";
import type { MaxScorePicker } from "../../src/scheduling/plugins/pickers.js";
import type { UtilizationDetector } from "../../src/scheduling/plugins/utilization-detector.js";
import { createPluginHandle, registerPlugin } from "../../src/scheduling/registry.js";
import { createScheduler } from "../../src/scheduling/scheduler.js";
import type { Scorer } from "../../src/scheduling/types.js";

const HEAD = "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n";
const load = (body: string, file?: string) => loadPickerConfig({ text: HEAD + body, ...(file ? { file } : {}) });

function errorOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error("expected a ConfigError");
}

const dir = mkdtempSync(join(tmpdir(), "sy-sched-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("defaults", () => {
  it("no config: the predictive profile (own load, predicted TTFT, prefix affinity, KV, LoRA)", () => {
    for (const config of [defaultPickerConfig(), loadPickerConfig(), loadPickerConfig({ text: "", file: "" })]) {
      expect(config.schedulingProfiles).toHaveLength(1);
      expect(config.schedulingProfiles[0]!.name).toBe("predictive");
      expect(config.schedulingProfiles[0]!.plugins.map((p) => [p.pluginRef, p.weight])).toEqual([
        ["served-model-filter", 1],
        ["predicted-latency-scorer", 3],
        ["prefix-cache-scorer", 2],
        ["inflight-load-scorer", 1],
        ["kv-cache-utilization-scorer", 1],
        ["lora-affinity-scorer", 1],
        ["max-score-picker", 1],
      ]);
    }
  });

  it("GIE's default profile by name: served-model filter, queue ×2, kv ×2, lora ×1, max-score-picker, utilization-detector", () => {
    for (const config of [
      loadPickerConfig({ builtin: "gie" }),
      loadPickerConfig({ text: "", file: "", builtin: "gie" }),
    ]) {
      expect(config.plugins.map((p) => p.type)).toEqual([
        "served-model-filter",
        "queue-scorer",
        "kv-cache-utilization-scorer",
        "lora-affinity-scorer",
        "max-score-picker",
        "utilization-detector",
      ]);
      expect(config.schedulingProfiles).toHaveLength(1);
      expect(config.schedulingProfiles[0]!.plugins.map((p) => [p.pluginRef, p.weight])).toEqual([
        ["served-model-filter", 1],
        ["queue-scorer", 2],
        ["kv-cache-utilization-scorer", 2],
        ["lora-affinity-scorer", 1],
        ["max-score-picker", 1],
      ]);
      expect(config.saturationDetector).toEqual({ pluginRef: "utilization-detector" });
      expect(config.warnings).toEqual([]);
    }
    const set = instantiatePlugins(loadPickerConfig({ builtin: "gie" }), createPluginHandle({ seed: 1 }));
    expect((set.profiles[0]!.picker as MaxScorePicker).maxNumOfEndpoints).toBe(1);
    const d = set.saturationDetector as UtilizationDetector;
    expect(d.params).toEqual({
      queueDepthThreshold: 5,
      kvCacheUtilThreshold: 0.8,
      metricsStalenessThresholdMs: 200,
      headroom: 0,
    });
  });

  it("a config with only other sections keeps the default profile and returns the sections raw", () => {
    const config = load(`featureGates: [flowControl]
flowControl:
  maxRequests: 10
budgets: { tenants: [a] }
autoscaling: 3
`);
    expect(config.schedulingProfiles[0]!.plugins.map((p) => p.pluginRef)).toContain("lora-affinity-scorer");
    expect(config.featureGates).toEqual(["flowControl"]);
    expect(config.sections).toEqual({ flowControl: { maxRequests: 10 }, budgets: { tenants: ["a"] }, autoscaling: 3 });
  });

  it("plugins without profiles: one default profile with every filter, scorer and picker at weight 1", () => {
    const config = load(`plugins:
  - type: low-queue-filter
  - type: queue-scorer
  - type: utilization-detector
    parameters: { queueDepthThreshold: 9 }
  - type: random-picker
  - type: metrics-data-source
`);
    expect(config.schedulingProfiles[0]!.name).toBe("default");
    expect(config.schedulingProfiles[0]!.plugins.map((p) => [p.pluginRef, p.weight])).toEqual([
      ["low-queue-filter", 1],
      ["queue-scorer", 1],
      ["random-picker", 1],
    ]);
    // The configured utilization-detector becomes the saturation detector.
    expect(config.saturationDetector.pluginRef).toBe("utilization-detector");
    const set = instantiatePlugins(config, createPluginHandle());
    expect((set.saturationDetector as UtilizationDetector).params.queueDepthThreshold).toBe(9);
  });

  it("adds max-score-picker to a profile without a picker; weight defaults to 1; name defaults to type", () => {
    const config = load(`plugins:
  - type: queue-scorer
  - name: kv
    type: kv-cache-utilization-scorer
schedulingProfiles:
  - name: p
    plugins:
      - pluginRef: queue-scorer
      - pluginRef: kv
        weight: 0
`);
    expect(config.plugins.map((p) => p.name)).toEqual([
      "queue-scorer",
      "kv",
      "max-score-picker",
      "utilization-detector",
    ]);
    expect(config.schedulingProfiles[0]!.plugins.map((p) => [p.pluginRef, p.weight])).toEqual([
      ["queue-scorer", 1],
      ["kv", 0],
      ["max-score-picker", 1],
    ]);
  });

  it("several profiles: all validated, the first runs, with a warning", () => {
    const config = load(`plugins:
  - type: queue-scorer
  - type: random-picker
schedulingProfiles:
  - name: first
    plugins: [{ pluginRef: queue-scorer }]
  - name: second
    plugins: [{ pluginRef: random-picker }]
`);
    expect(config.warnings).toEqual([
      'schedulingProfiles: 2 profiles configured; the single-profile handler runs only the first ("first")',
    ]);
    expect(createScheduler(config, createPluginHandle()).profile).toBe("first");
  });

  it("accepts llm-d's apiVersion, GIE's recorded plugin types and the kv-cache-scorer alias", () => {
    const config = loadPickerConfig({
      text: `apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
  - type: single-profile-handler
  - type: kv-cache-scorer
  - type: prefix-cache-scorer
    parameters: { hashBlockSize: 64, maxPrefixBlocksToMatch: 256, lruCapacityPerServer: 31250 }
  - type: max-score-picker
    parameters: { maxNumOfEndpoints: 1 }
  - type: metrics-data-source
    parameters: { path: /metrics }
schedulingProfiles:
  - name: default
    plugins:
      - pluginRef: kv-cache-scorer
        weight: 1
      - pluginRef: prefix-cache-scorer
        weight: 3
      - pluginRef: max-score-picker
`,
    });
    expect(config.apiVersion).toBe("llm-d.ai/v1alpha1");
    const handle = createPluginHandle();
    createScheduler(config, handle);
    expect((handle.plugin("metrics-data-source") as unknown as { parameters: unknown }).parameters).toEqual({
      path: "/metrics",
    });
  });

  it("v1.0 inline saturationDetector thresholds create the detector", () => {
    const config = load(`saturationDetector:
  queueDepthThreshold: 8
  kvCacheUtilThreshold: 0.9
  metricsStalenessThreshold: 1s
`);
    const handle = createPluginHandle();
    const d = instantiatePlugins(config, handle).saturationDetector as UtilizationDetector;
    expect(d.params).toMatchObject({
      queueDepthThreshold: 8,
      kvCacheUtilThreshold: 0.9,
      metricsStalenessThresholdMs: 1000,
    });
    // Scorers read the detector's staleness threshold.
    expect(handle.metricsStalenessMs).toBe(1000);
  });

  it("loads YAML from a file, and names the file in errors", () => {
    const good = join(dir, "good.yaml");
    writeFileSync(good, `${HEAD}plugins:\n  - type: queue-scorer\n`);
    expect(loadPickerConfig({ file: good }).file).toBe(good);
    const bad = join(dir, "bad.yaml");
    writeFileSync(bad, `${HEAD}plugins:\n  - type: nope-scorer\n`);
    const err = errorOf(() => loadPickerConfig({ file: bad }));
    expect(err.message).toMatch(
      new RegExp(`^${bad.replaceAll(".", "\\.")}: plugins\\[0\\]\\.type: unknown plugin type "nope-scorer" \\(known: `),
    );
    expect(err.file).toBe(bad);
    expect(err.field).toBe("plugins[0].type");
    const missing = join(dir, "missing.yaml");
    expect(errorOf(() => loadPickerConfig({ file: missing })).message).toMatch(
      new RegExp(`^${missing.replaceAll(".", "\\.")}: cannot read config file: ENOENT`),
    );
  });
});

describe("validation errors name the field path", () => {
  const cases: [string, string, string][] = [
    [
      "wrong apiVersion",
      "apiVersion: v1\nkind: EndpointPickerConfig\n",
      'apiVersion: must be "inference.networking.x-k8s.io/v1alpha1" or "llm-d.ai/v1alpha1", got "v1"',
    ],
    [
      "wrong kind",
      "apiVersion: llm-d.ai/v1alpha1\nkind: Config\n",
      'kind: must be "EndpointPickerConfig", got "Config"',
    ],
    [
      "not a mapping",
      "- a\n- b\n",
      "(root): must be a mapping with apiVersion and kind EndpointPickerConfig, got a list",
    ],
    ["invalid YAML", "a: [1,\n", "invalid YAML: …"],
    ["duplicate YAML keys", "a: 1\na: 2\n", "invalid YAML: Map keys must be unique…"],
    ["two documents", "a: 1\n---\nb: 2\n", "expected one YAML document, found 2"],
    ["plugins not a list", `${HEAD}plugins: {}\n`, "plugins: must be a list, got a mapping"],
    ["plugin without type", `${HEAD}plugins:\n  - name: x\n`, "plugins[0].type: is required"],
    [
      "unknown plugin field",
      `${HEAD}plugins:\n  - type: queue-scorer\n    params: {}\n`,
      "plugins[0].params: unknown field (expected one of: name, type, parameters)",
    ],
    [
      "duplicate plugin names",
      `${HEAD}plugins:\n  - type: queue-scorer\n  - type: kv-cache-utilization-scorer\n    name: queue-scorer\n`,
      'plugins[1].name: duplicate plugin name "queue-scorer" (also plugins[0])',
    ],
    [
      "bad picker parameter",
      `${HEAD}plugins:\n  - type: queue-scorer\n  - type: kv-cache-utilization-scorer\n  - type: max-score-picker\n    parameters:\n      maxNumOfEndpoints: 0\n`,
      "plugins[2].parameters.maxNumOfEndpoints: must be an integer >= 1, got 0",
    ],
    [
      "parameters not a mapping",
      `${HEAD}plugins:\n  - type: max-score-picker\n    parameters: 3\n`,
      "plugins[0].parameters: must be a mapping, got 3",
    ],
    [
      "unknown parameter",
      `${HEAD}plugins:\n  - type: queue-scorer\n    parameters: { foo: 1 }\n`,
      "plugins[0].parameters.foo: unknown parameter (this plugin takes no parameters)",
    ],
    [
      "bad duration",
      `${HEAD}plugins:\n  - type: utilization-detector\n    parameters: { metricsStalenessThreshold: 200 }\n`,
      'plugins[0].parameters.metricsStalenessThreshold: must be a duration such as "200ms" or "1s", got 200',
    ],
    [
      "dangling pluginRef",
      `${HEAD}plugins:\n  - type: queue-scorer\nschedulingProfiles:\n  - name: p\n    plugins:\n      - pluginRef: queue-scorer\n      - pluginRef: foo\n`,
      'schedulingProfiles[0].plugins[1].pluginRef: unknown plugin "foo" (not defined under plugins)',
    ],
    [
      "negative weight",
      `${HEAD}plugins:\n  - type: queue-scorer\nschedulingProfiles:\n  - name: p\n    plugins:\n      - pluginRef: queue-scorer\n        weight: -1\n`,
      "schedulingProfiles[0].plugins[0].weight: must be a number >= 0, got -1",
    ],
    [
      "string weight",
      `${HEAD}plugins:\n  - type: queue-scorer\nschedulingProfiles:\n  - name: p\n    plugins:\n      - pluginRef: queue-scorer\n        weight: "2"\n`,
      'schedulingProfiles[0].plugins[0].weight: must be a number >= 0, got "2"',
    ],
    [
      "profile without name",
      `${HEAD}schedulingProfiles:\n  - plugins: []\n`,
      "schedulingProfiles[0].name: is required",
    ],
    [
      "duplicate profile names",
      `${HEAD}plugins:\n  - type: queue-scorer\nschedulingProfiles:\n  - name: p\n  - name: p\n`,
      'schedulingProfiles[1].name: duplicate profile name "p" (also schedulingProfiles[0])',
    ],
    [
      "plugin listed twice",
      `${HEAD}plugins:\n  - type: queue-scorer\nschedulingProfiles:\n  - name: p\n    plugins: [{ pluginRef: queue-scorer }, { pluginRef: queue-scorer }]\n`,
      'schedulingProfiles[0].plugins[1].pluginRef: plugin "queue-scorer" is already listed in profile "p" (schedulingProfiles[0].plugins[0])',
    ],
    [
      "two pickers",
      `${HEAD}plugins:\n  - type: random-picker\n  - type: max-score-picker\nschedulingProfiles:\n  - name: p\n    plugins: [{ pluginRef: random-picker }, { pluginRef: max-score-picker }]\n`,
      'schedulingProfiles[0].plugins[1].pluginRef: profile "p" already has picker "random-picker" (schedulingProfiles[0].plugins[0])',
    ],
    [
      "not a scheduling plugin",
      `${HEAD}plugins:\n  - type: metrics-data-source\nschedulingProfiles:\n  - name: p\n    plugins: [{ pluginRef: metrics-data-source }]\n`,
      'schedulingProfiles[0].plugins[0].pluginRef: plugin "metrics-data-source" (type metrics-data-source) is not a filter, scorer or picker',
    ],
    [
      "dangling saturation detector",
      `${HEAD}saturationDetector:\n  pluginRef: nope\n`,
      'saturationDetector.pluginRef: unknown plugin "nope" (not defined under plugins)',
    ],
    [
      "detector of the wrong kind",
      `${HEAD}plugins:\n  - type: queue-scorer\nsaturationDetector:\n  pluginRef: queue-scorer\n`,
      'saturationDetector.pluginRef: plugin "queue-scorer" (type queue-scorer) is not a saturation detector',
    ],
    [
      "bad inline threshold",
      `${HEAD}saturationDetector:\n  kvCacheUtilThreshold: 1.5\n`,
      "saturationDetector.kvCacheUtilThreshold: must be a number > 0 and <= 1, got 1.5",
    ],
    [
      "feature gate not a string",
      `${HEAD}featureGates: [flowControl, 3]\n`,
      "featureGates[1]: must be a non-empty string, got 3",
    ],
  ];

  it.each(cases)("%s", (_label, text, message) => {
    const err = errorOf(() => loadPickerConfig({ text }));
    // A trailing "…" marks a prefix (the YAML library's wording follows); everything else is exact.
    if (message.endsWith("…")) expect(err.message.startsWith(message.slice(0, -1))).toBe(true);
    else expect(err.message).toBe(message);
    // The file, when given, prefixes the same message.
    expect(errorOf(() => loadPickerConfig({ text, file: "/etc/epp.yaml" })).message).toBe(
      `/etc/epp.yaml: ${err.message}`,
    );
  });

  it("rejects an empty document", () => {
    expect(errorOf(() => loadPickerConfig({ text: "# only a comment\n" })).message).toBe(
      "empty config: expected apiVersion and kind EndpointPickerConfig",
    );
  });

  it("warns (without failing) on headroom above 1", () => {
    const config = load(`plugins:
  - type: utilization-detector
    parameters: { headroom: 1.5 }
`);
    expect(config.warnings).toEqual([
      "plugins[0]: parameters.headroom: 1.5 is above 1.0; the filter will let almost everything through",
    ]);
  });
});

describe("registry", () => {
  it("custom plugin types register before loading; duplicates are refused unless replaced", () => {
    defaultPickerConfig(); // built-ins are registered by the first load
    registerPlugin(
      "test-config-scorer",
      (name) =>
        ({
          typedName: { type: "test-config-scorer", name },
          category: "Balance",
          score: (_s, _r, eps) => eps.map(() => 1),
        }) satisfies Scorer,
    );
    expect(() => registerPlugin("test-config-scorer", () => ({ typedName: { type: "x", name: "x" } }))).toThrow(
      'plugin type "test-config-scorer" is already registered',
    );
    expect(() => registerPlugin("queue-scorer", () => ({ typedName: { type: "x", name: "x" } }))).toThrow();
    const config = load("plugins:\n  - type: test-config-scorer\n    name: mine\n");
    expect(config.schedulingProfiles[0]!.plugins.map((p) => p.pluginRef)).toEqual(["mine", "max-score-picker"]);
  });

  it("shares one set of instances per handle and refuses a second config on it", () => {
    const config = defaultPickerConfig();
    const handle = createPluginHandle();
    const a = instantiatePlugins(config, handle);
    expect(instantiatePlugins(config, handle)).toBe(a);
    expect(createScheduler(config, handle).pluginSet).toBe(a);
    expect(() => instantiatePlugins(defaultPickerConfig(), handle)).toThrow("already holds plugins of another config");
  });
});

describe("one registry for every plugin kind", () => {
  it("refuses a duplicate type, and replacing a type with one of another kind", () => {
    const factory = (name: string) => ({ typedName: { type: "test-dup-scorer", name } });
    registerPlugin("test-dup-scorer", factory);
    expect(() => registerPlugin("test-dup-scorer", factory)).toThrow(
      'plugin type "test-dup-scorer" is already registered (scheduling)',
    );
    registerPluginType("fairness-policy", "test-kind-policy", factory);
    expect(() => registerPlugin("test-kind-policy", factory, { replace: true })).toThrow(
      'plugin type "test-kind-policy" is registered as a fairness-policy plugin, not a scheduling plugin',
    );
    expect(registeredPluginTypes("fairness-policy")).toContain("test-kind-policy");
    expect(registeredPluginTypes("scheduling")).not.toContain("test-kind-policy");
  });

  it("validates a metrics extractor's parameters with the scheduling plugins, naming the field", () => {
    registerDataLayerPlugins();
    const config = load(`plugins:
  - type: queue-scorer
  - type: core-metrics-extractor
    parameters:
      engineConfigs:
        - {name: vllm, queuedRequestsSpec: "my_queue"}
`);
    const extractor = instantiatePlugins(config, createPluginHandle()).plugins.find(isMetricsExtractor);
    expect(extractor?.engines.get("vllm")?.queued?.name).toBe("my_queue");
    expect(
      errorOf(() => load(`plugins:\n  - type: core-metrics-extractor\n    parameters: {engineConfig: []}\n`)).field,
    ).toBe("plugins[0].parameters.engineConfig");
    expect(
      errorOf(() =>
        load(`plugins:
  - type: core-metrics-extractor
    parameters: {defaultEngine: nope}
`),
      ).message,
    ).toMatch(/^plugins\[0\]\.parameters\.defaultEngine: defaultEngine "nope" not found/);
    // GIE's metrics-data-source: validated here too, applied by the scraper.
    const source = instantiatePlugins(
      load(`plugins:\n  - type: metrics-data-source\n    parameters: {scheme: https, path: /x/metrics, port: 9400}\n`),
      createPluginHandle(),
    ).plugins.find(isMetricsDataSource);
    expect(source).toMatchObject({ scheme: "https", path: "/x/metrics", insecureSkipVerify: true, port: 9400 });
    for (const [params, field] of [
      ["{scheme: ftp}", "scheme"],
      ["{path: metrics}", "path"],
      ["{port: 70000}", "port"],
      ["{insecureSkipVerify: maybe}", "insecureSkipVerify"],
      ["{interval: 1s}", "interval"],
    ] as const)
      expect(errorOf(() => load(`plugins:\n  - type: metrics-data-source\n    parameters: ${params}\n`)).field).toBe(
        `plugins[0].parameters.${field}`,
      );
    // A metrics extractor is not a scheduling plugin: a profile cannot slot it.
    expect(
      errorOf(() =>
        load(`plugins:
  - type: core-metrics-extractor
schedulingProfiles:
  - name: p
    plugins: [{pluginRef: core-metrics-extractor}]
`),
      ).message,
    ).toContain("is not a filter, scorer or picker");
  });
});
