/** Resource files: mutated manifests never crash the parser or the datastore, and an apply is all or nothing. */
import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { Datastore } from "../../src/datastore/datastore.js";
import type { ResourceSet } from "../../src/datastore/types.js";
import { parseManifestText } from "../../src/sources/file-parse.js";
import { cases, forCases } from "./helpers.js";

const DIR = new URL("../fixtures/resources/basic/", import.meta.url);
const TEXTS = readdirSync(DIR)
  .filter((f) => f.endsWith(".yaml") || f.endsWith(".json"))
  .map((f) => readFileSync(new URL(f, DIR), "utf8"));
const ALL = TEXTS.join("\n---\n");

describe("fuzz: resource files", () => {
  it("parses into objects or file-level errors, and the datastore accepts whatever parsed", async () => {
    const ds = new Datastore({ poolName: "vllm-llama3-8b-instruct", poolNamespace: "default" });
    await forCases("resource file", cases(400), (g) => {
      const text = g.mutate(g.bool(0.5) ? ALL : g.pick(TEXTS));
      const out = parseManifestText("/fuzz.yaml", text, "default");
      expect(out.entries.length + (out.wholeFile ? 1 : 0) + out.documents).toBeGreaterThanOrEqual(0);
      const set = { pools: [], models: [], objectives: [], rewrites: [], pods: [] } as {
        -readonly [K in keyof ResourceSet]: ResourceSet[K][number][];
      };
      for (const e of out.entries) {
        if (!("ok" in e)) continue;
        const o = e.ok;
        if (o.kind === "InferencePool") set.pools.push(o.spec);
        else if (o.kind === "InferenceModel") set.models.push(o.spec);
        else if (o.kind === "InferenceObjective") set.objectives.push(o.spec);
        else if (o.kind === "InferenceModelRewrite") set.rewrites.push(o.spec);
        else set.pods.push(o.spec);
      }
      const report = ds.apply(set);
      expect(report.accepted.endpoints).toBe(ds.endpoints().length);
      for (const e of ds.endpoints()) expect(e.key).toMatch(/:\d+$/);
    });
  });
});
