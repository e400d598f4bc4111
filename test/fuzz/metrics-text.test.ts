/** Metric texts: mutated real expositions never crash extraction and never yield numbers a scheduler could misuse. */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { EngineRegistry, extractMetrics, MetricsExtractionError } from "../../src/datalayer/engines.js";
import { cases, forCases } from "./helpers.js";

const DIR = new URL("../fixtures/metrics/", import.meta.url);
// Every exposition under the folder, the captured real-server texts in its subfolders included.
const FIXTURES = readdirSync(DIR, { recursive: true, withFileTypes: true })
  .filter((e) => e.isFile() && e.name.endsWith(".txt"))
  .map((e) => readFileSync(join(e.parentPath, e.name), "utf8"));
const registry = new EngineRegistry();

describe("fuzz: model-server metric texts", () => {
  it("extracts plausible numbers or refuses with MetricsExtractionError, for every engine mapping", async () => {
    await forCases("metric text", cases(1500), (g) => {
      const text = g.bool(0.1) ? g.bytes(g.int(0, 2000)).toString("latin1") : g.mutate(g.pick(FIXTURES));
      const engine = g.pick(registry.names());
      const mapping =
        registry.resolve({ engine, labels: {} } as never) ?? registry.resolve({ engine: "vllm", labels: {} } as never)!;
      try {
        const m = extractMetrics(mapping, text, 1, "/metrics", g.pick([4, 256]));
        for (const v of [m.waitingQueueSize, m.runningRequestsSize, m.kvCacheUsagePercent])
          expect(Number.isFinite(v) && v >= 0, `value ${v}`).toBe(true);
        expect(m.kvCacheUsagePercent).toBeLessThanOrEqual(1);
      } catch (err) {
        expect(err).toBeInstanceOf(MetricsExtractionError);
      }
    });
  });
});
