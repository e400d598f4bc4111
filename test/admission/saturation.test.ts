import { describe, expect, it } from "vitest";
import { SHED_MESSAGE, shouldShed } from "../../src/admission/shedding.js";
import { SwitchyardError } from "../../src/common/errors.js";
import type { Criticality } from "../../src/datastore/types.js";
import {
  createPluginHandle,
  createScheduler,
  instantiatePlugins,
  loadPickerConfig,
  UtilizationDetector,
  type UtilizationDetectorParams,
} from "../../src/scheduling/index.js";
import { endpoint, metrics } from "../scheduling/helpers.js";

/** A standalone utilization-detector (no config), as the scheduler builds it by default. */
const createUtilizationDetector = (params: Partial<UtilizationDetectorParams> = {}) =>
  new UtilizationDetector("utilization-detector", params);

const NOW = 50_000;
const ep = (q: number, kv: number, age = 0) =>
  endpoint("10.9.0.1", metrics({ waitingQueueSize: q, kvCacheUsagePercent: kv }, NOW - age));

describe("utilization-detector saturation() (GIE v1.5 mean)", () => {
  const d = createUtilizationDetector();

  it("is the mean over endpoints of max(q/Q, kv/KV)", () => {
    expect(d.saturation([ep(0, 0)], NOW)).toBe(0);
    expect(d.saturation([ep(5, 0)], NOW)).toBe(1);
    expect(d.saturation([ep(1, 0.4)], NOW)).toBeCloseTo(0.5, 12); // max(0.2, 0.5)
    expect(d.saturation([ep(4, 0.2), ep(0, 0.4)], NOW)).toBeCloseTo((0.8 + 0.5) / 2, 12);
  });

  it("counts stale or missing metrics as 1.0 and an empty pool as 1.0", () => {
    expect(d.saturation([ep(0, 0, 201), ep(0, 0)], NOW)).toBe(0.5);
    expect(d.saturation([ep(0, 0, 200)], NOW)).toBe(0); // exactly at the threshold is fresh
    expect(d.saturation([endpoint("10.9.0.2"), ep(0, 0)], NOW)).toBe(0.5);
    expect(d.saturation([], NOW)).toBe(1);
  });

  it("does not cap one overloaded endpoint's term", () => {
    expect(d.saturation([ep(50, 0), ep(0, 0)], NOW)).toBe(5);
  });
});

describe("utilization-detector isSaturated() (shedding contract)", () => {
  const d = createUtilizationDetector();

  it("is false while one endpoint has fresh metrics with queue < Q and KV < KV", () => {
    expect(d.isSaturated([ep(4, 0.79)], NOW)).toBe(false);
    expect(d.isSaturated([ep(9, 0.9), ep(0, 0.1)], NOW)).toBe(false);
  });

  it("is true at or above either threshold, when stale, and for zero endpoints", () => {
    expect(d.isSaturated([ep(5, 0)], NOW)).toBe(true);
    expect(d.isSaturated([ep(0, 0.8)], NOW)).toBe(true);
    expect(d.isSaturated([ep(0, 0, 201)], NOW)).toBe(true);
    expect(d.isSaturated([endpoint("10.9.0.3")], NOW)).toBe(true);
    expect(d.isSaturated([], NOW)).toBe(true);
  });

  it("differs from the mean where GIE sheds a pool that still has a healthy endpoint", () => {
    const pool = [ep(0, 0, 10_000), ep(9, 0.5), ep(0, 0.6)]; // (1 + 1.8 + 0.75) / 3 ≈ 1.18
    expect(d.saturation(pool, NOW)).toBeGreaterThanOrEqual(1);
    expect(d.isSaturated(pool, NOW)).toBe(false);
  });

  it("honours custom thresholds", () => {
    const custom = createUtilizationDetector({
      queueDepthThreshold: 10,
      kvCacheUtilThreshold: 0.95,
      metricsStalenessThresholdMs: 1000,
    });
    expect(custom.isSaturated([ep(9, 0.94, 900)], NOW)).toBe(false);
    expect(custom.saturation([ep(5, 0.19, 900)], NOW)).toBeCloseTo(0.5, 12);
  });
});

describe("config-selected detector", () => {
  it("saturationDetector.pluginRef points at a utilization-detector with custom thresholds, shared with the scheduler", () => {
    const config = loadPickerConfig({
      text: `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
  - type: queue-scorer
  - name: strict
    type: utilization-detector
    parameters:
      queueDepthThreshold: 2
      kvCacheUtilThreshold: 0.5
      metricsStalenessThreshold: 1s
      headroom: 0.1
saturationDetector:
  pluginRef: strict
`,
    });
    const handle = createPluginHandle();
    const scheduler = createScheduler(config, handle);
    const d = instantiatePlugins(config, handle).saturationDetector as UtilizationDetector;
    expect(d).toBe(handle.plugin("strict"));
    expect(scheduler.pluginSet.saturationDetector).toBe(d);
    expect(d.params).toEqual({
      queueDepthThreshold: 2,
      kvCacheUtilThreshold: 0.5,
      metricsStalenessThresholdMs: 1000,
      headroom: 0.1,
    });
    expect(d.isSaturated([ep(2, 0)], NOW)).toBe(true);
    expect(d.isSaturated([ep(1, 0.49, 999)], NOW)).toBe(false);
    expect(handle.metricsStalenessMs).toBe(1000);
  });
});

describe("shouldShed", () => {
  const rows: [Criticality, number, boolean, boolean][] = [
    // criticality, priority, saturated, shed?
    ["Critical", 0, true, false],
    ["Critical", -5, true, false],
    ["Critical", 0, false, false],
    ["Standard", 0, true, false],
    ["Standard", 3, true, false],
    ["Standard", -1, true, true],
    ["Standard", -1, false, false],
    ["Sheddable", 0, true, true],
    ["Sheddable", -1, true, true],
    ["Sheddable", 0, false, false],
  ];

  it.each(rows)("%s priority %d saturated=%s → shed=%s", (criticality, priority, saturated, shed) => {
    const err = shouldShed({ criticality, priority }, saturated);
    if (!shed) {
      expect(err).toBeUndefined();
      return;
    }
    expect(err).toBeInstanceOf(SwitchyardError);
    expect(err!.code).toBe("SY_SHED");
    expect(err!.status).toBe(429);
    expect(err!.message).toBe(SHED_MESSAGE);
    expect(err!.bodyText).toBe("inference error: ResourceExhausted - system saturated, sheddable request dropped");
  });
});
