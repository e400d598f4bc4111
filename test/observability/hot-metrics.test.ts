import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { HotCounter, HotGauge, HotHistogram } from "../../src/observability/hot-metrics.js";

const BUCKETS = [0.001, 0.01, 0.1, 1];

/** The same updates through prom-client and through the hot metrics must expose byte-identical text. */
describe("hot metrics", () => {
  it("exposes exactly what prom-client exposes for the same updates", async () => {
    const ref = new Registry();
    const hot = new Registry();
    const labelNames = ["model_name", "target_model_name"] as const;
    const refH = new Histogram({ name: "h_seconds", help: "h", labelNames, buckets: BUCKETS, registers: [ref] });
    const hotH = new HotHistogram({ name: "h_seconds", help: "h", labelNames, buckets: BUCKETS, registers: [hot] });
    const refC = new Counter({ name: "c_total", help: "c", labelNames: ["status"], registers: [ref] });
    const hotC = new HotCounter({ name: "c_total", help: "c", labelNames: ["status"], registers: [hot] });
    const refG = new Gauge({ name: "g", help: "g", labelNames: ["model_name"], registers: [ref] });
    const hotG = new HotGauge({ name: "g", help: "g", labelNames: ["model_name"], registers: [hot] });
    const refU = new Histogram({ name: "u", help: "unlabelled", buckets: BUCKETS, registers: [ref] });
    const hotU = new HotHistogram({ name: "u", help: "unlabelled", buckets: BUCKETS, registers: [hot] });

    // Before any update: label-less series exist at zero, labelled ones do not exist yet.
    expect(await hot.metrics()).toBe(await ref.metrics());

    const a = { model_name: "m", target_model_name: "t" };
    const b = { model_name: 'm"x\\', target_model_name: "t\n2" };
    const child = hotH.labels(a);
    for (const v of [0.0005, 0.001, 0.05, 0.5, 2, 1]) {
      refH.observe(a, v);
      child.observe(v);
    }
    refH.observe(b, 0.02);
    hotH.observe(b, 0.02);
    refC.inc({ status: "success" });
    refC.inc({ status: "success" }, 2);
    refC.inc({ status: "failure" }, 0);
    hotC.labels({ status: "success" }).inc();
    hotC.inc({ status: "success" }, 2);
    hotC.inc({ status: "failure" }, 0);
    refG.inc({ model_name: "m" });
    refG.inc({ model_name: "m" });
    refG.dec({ model_name: "m" });
    refG.set({ model_name: "n" }, 7);
    const g = hotG.labels({ model_name: "m" });
    g.inc();
    g.inc();
    g.dec();
    hotG.set({ model_name: "n" }, 7);
    refU.observe(3);
    hotU.observe(3);

    expect(await hot.metrics()).toBe(await ref.metrics());
    // JSON (prom-client's `get()` shape) too, apart from prom-client's always-empty exemplar slots.
    const noExemplars = (metrics: unknown) =>
      JSON.parse(JSON.stringify(metrics, (k, v) => (k === "exemplar" ? undefined : v)));
    expect(noExemplars(await hot.getMetricsAsJSON())).toEqual(noExemplars(await ref.getMetricsAsJSON()));

    // reset(): labelled series and the label-less histogram disappear; label-less counters/gauges return to 0.
    for (const m of [refH, refC, refG, refU]) m.reset();
    for (const m of [hotH, hotC, hotG, hotU]) m.reset();
    const refUc = new Counter({ name: "uc_total", help: "unlabelled counter", registers: [ref] });
    const hotUc = new HotCounter({ name: "uc_total", help: "unlabelled counter", registers: [hot] });
    refUc.inc(5);
    hotUc.inc(5);
    refUc.reset();
    hotUc.reset();
    expect(await hot.metrics()).toBe(await ref.metrics());
  });

  it("exports a series only once it has been updated, and keeps counting through reset()", async () => {
    const r = new Registry();
    const h = new HotHistogram({ name: "x", help: "x", labelNames: ["k"], buckets: [1], registers: [r] });
    const asked = h.labels({ k: "a" });
    expect(await r.metrics()).not.toContain('k="a"');
    asked.observe(0.5);
    expect(await r.metrics()).toContain('x_count{k="a"} 1');
    h.reset();
    expect(await r.metrics()).not.toContain('k="a"');
    asked.observe(2);
    expect(await r.metrics()).toContain('x_bucket{le="1",k="a"} 0');
    expect(await r.metrics()).toContain('x_count{k="a"} 1');
  });

  it("rejects bad configuration and labels with precise messages", () => {
    expect(() => new HotCounter({ name: "bad-name", help: "" })).toThrow(/invalid metric name "bad-name"/);
    expect(() => new HotHistogram({ name: "h", help: "", buckets: [1, 1] })).toThrow(/strictly increasing/);
    expect(() => new HotHistogram({ name: "h", help: "", labelNames: ["le"], buckets: [1] })).toThrow(/reserved/);
    const c = new HotCounter({ name: "c", help: "", labelNames: ["a"] });
    expect(() => c.labels({ b: "x" } as never)).toThrow(/unknown label "b"/);
    expect(() => c.inc({ a: "x" }, -1)).toThrow(/non-negative/);
  });

  it("ignores non-finite observations instead of poisoning _sum", async () => {
    const r = new Registry();
    const h = new HotHistogram({ name: "y", help: "y", buckets: [1], registers: [r] });
    h.observe(Number.NaN);
    h.observe(Number.POSITIVE_INFINITY);
    h.observe(0.5);
    expect(await r.metrics()).toContain("y_sum 0.5");
    expect(await r.metrics()).toContain("y_count 1");
  });
});
