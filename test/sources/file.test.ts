import { spawn } from "node:child_process";
import { cp, mkdtemp, rename, rm, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ConfigError } from "../../src/common/errors.js";
import { Datastore } from "../../src/datastore/datastore.js";
import { FileSource, type FileSourceOptions, type FileSourceReport } from "../../src/sources/file.js";

const FIXTURES = fileURLToPath(new URL("../fixtures/resources/", import.meta.url));
const BASIC = join(FIXTURES, "basic");
// Generous upper bound for watcher-driven reloads on a loaded machine; never an assertion about speed.
const WAIT = { timeout: 20_000, interval: 25 };

function podYaml(name: string, ip: string, extra = ""): string {
  return `apiVersion: v1
kind: Pod
metadata:
  name: ${name}
  labels:
    app: vllm
${extra}status:
  podIP: ${ip}
  conditions:
    - type: Ready
      status: "True"
`;
}

function poolYaml(ports: (number | string)[]): string {
  return `apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata:
  name: vllm-pool
spec:
  selector:
    matchLabels:
      app: vllm
  targetPorts:
${ports.map((p) => `    - number: ${p}`).join("\n")}
`;
}

let dir: string;
let datastore: Datastore;
let sources: FileSource[];
let reports: FileSourceReport[];

function source(over: Partial<FileSourceOptions> = {}): FileSource {
  const s = new FileSource({
    path: dir,
    datastore,
    onReport: (r) => reports.push(r),
    // Deterministic by default: tests call reload(); watcher and poll tests opt in.
    watch: false,
    pollIntervalMs: 0,
    debounceMs: 10,
    ...over,
  });
  sources.push(s);
  return s;
}

function endpointKeys(): string[] {
  return datastore.endpoints().map((e) => e.key);
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "switchyard-file-"));
  datastore = new Datastore({ poolName: "vllm-pool", poolNamespace: "default" });
  sources = [];
  reports = [];
});

afterEach(async () => {
  for (const s of sources) await s.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("FileSource loading", () => {
  it("loads a directory of YAML and JSON manifests, skipping dot-files and other extensions", async () => {
    await cp(BASIC, dir, { recursive: true });
    const report = await source().start();
    expect(report.files.map((f) => f.slice(dir.length + 1))).toEqual([
      "00-pool.yaml",
      "10-models.yaml",
      "20-pods.json",
    ]);
    expect(report.rejected).toEqual([]);
    expect(report.accepted).toMatchObject({ pools: 1, models: 2, objectives: 1, rewrites: 1, pods: 2, endpoints: 2 });
    expect(datastore.synced()).toBe(true);
    expect(endpointKeys()).toEqual(["127.0.1.1:8000", "127.0.1.2:8000"]);
    expect(datastore.model("llama-3-8b")?.criticality).toBe("Critical");
    expect(datastore.model("food-review")?.targetModels).toEqual([
      { name: "food-review-1", weight: 90 },
      { name: "food-review-2", weight: 10 },
    ]);
    expect(datastore.objective("batch")?.priority).toBe(-1);
    expect(datastore.resolveRewrite("gpt-4o")?.targets).toEqual([{ modelRewrite: "llama-3-8b", weight: 1 }]);
    expect(datastore.pool()?.origin).toBe(join(dir, "00-pool.yaml#1"));
  });

  it("loads a single file and typed lists whose items omit kind", async () => {
    const file = join(dir, "all.yml");
    await writeFile(
      file,
      `${poolYaml([8000, 8001])}---
apiVersion: v1
kind: PodList
items:
  - metadata: { name: a, labels: { app: vllm } }
    status: { podIP: 10.1.0.1, conditions: [{ type: Ready, status: "True" }] }
`,
    );
    await source({ path: file }).start();
    expect(datastore.endpoints().map((e) => e.name)).toEqual(["a-rank-0", "a-rank-1"]);
  });

  it("rejects start() with a ConfigError when the path does not exist", async () => {
    const missing = join(dir, "nope");
    await expect(source({ path: missing }).start()).rejects.toThrow(ConfigError);
    await expect(new FileSource({ path: missing, datastore }).start()).rejects.toThrow(missing);
  });

  it("validates options", () => {
    expect(() => new FileSource({ path: "", datastore })).toThrow(ConfigError);
    expect(() => new FileSource({ path: dir, datastore, pollIntervalMs: -1 })).toThrow("pollIntervalMs");
  });
});

describe("FileSource invalid documents", () => {
  it("names file, document index and field, and keeps the last good version of that object", async () => {
    const poolFile = join(dir, "pool.yaml");
    const podsFile = join(dir, "pods.yaml");
    await writeFile(poolFile, poolYaml([8000]));
    await writeFile(podsFile, podYaml("a", "10.0.0.1"));
    const s = source();
    await s.start();
    expect(endpointKeys()).toEqual(["10.0.0.1:8000"]);

    // Break the pool (2nd document now) and add a pod in the same reload: the pod applies, the old pool stays.
    await writeFile(poolFile, `${podYaml("b", "10.0.0.2")}---\n${poolYaml([8000, 70000])}`);
    const report = (await s.reload())!;
    const invalid = report.rejected.filter((r) => r.reason === "Invalid");
    expect(invalid).toHaveLength(1);
    expect(invalid[0]).toMatchObject({ kind: "InferencePool", name: "default/vllm-pool", origin: `${poolFile}#2` });
    expect(invalid[0]!.message).toBe(
      `${poolFile}: document 2 (line 13): InferencePool default/vllm-pool: spec.targetPorts[1].number: must be an integer 1..65535, got number 70000; keeping its last good version`,
    );
    expect(datastore.pool()?.targetPorts).toEqual([8000]);
    expect(endpointKeys()).toEqual(["10.0.0.1:8000", "10.0.0.2:8000"]);

    // Fixing it applies the new version.
    await writeFile(poolFile, poolYaml([8000, 8001]));
    await s.reload();
    expect(datastore.pool()?.targetPorts).toEqual([8000, 8001]);
    expect(endpointKeys()).toEqual(["10.0.0.1:8000", "10.0.0.1:8001"]);
  });

  it("leaves an object that never had a good version absent", async () => {
    await writeFile(join(dir, "pool.yaml"), poolYaml([8000]));
    await writeFile(
      join(dir, "models.yaml"),
      `apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: { name: broken }
spec: { modelName: m, criticality: Urgent, poolRef: { name: vllm-pool } }
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: { name: fine }
spec: { modelName: ok, poolRef: { name: vllm-pool } }
`,
    );
    const report = await source().start();
    expect(datastore.model("m")).toBeUndefined();
    expect(datastore.model("ok")).toBeDefined();
    expect(report.rejected).toHaveLength(1);
    expect(report.rejected[0]!.message).toContain(
      "models.yaml: document 1 (line 1): InferenceModel default/broken: spec.criticality",
    );
    expect(report.rejected[0]!.message).toMatch(/not loaded$/);
  });

  it("keeps the whole file's last good objects on a YAML syntax error; other files keep working", async () => {
    const poolFile = join(dir, "pool.yaml");
    const podsFile = join(dir, "pods.yaml");
    await writeFile(poolFile, poolYaml([8000]));
    await writeFile(podsFile, podYaml("a", "10.0.0.1"));
    const s = source();
    await s.start();

    await writeFile(poolFile, `${poolYaml([9000])}---\nkind: [unclosed\n`);
    await writeFile(podsFile, `${podYaml("a", "10.0.0.1")}---\n${podYaml("b", "10.0.0.2")}`);
    const report = (await s.reload())!;
    expect(report.rejected).toHaveLength(1);
    expect(report.rejected[0]).toMatchObject({ kind: "File", name: poolFile, reason: "Invalid" });
    expect(report.rejected[0]!.message).toMatch(
      new RegExp(
        `^${poolFile.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: document 2 \\(line \\d+\\): YAML syntax error at line \\d+, column \\d+: `,
      ),
    );
    expect(report.rejected[0]!.message).toContain("keeping the file's last good 1 object(s)");
    expect(datastore.pool()?.targetPorts).toEqual([8000]);
    expect(endpointKeys()).toEqual(["10.0.0.1:8000", "10.0.0.2:8000"]);
  });

  it("treats an unidentifiable document like a syntax error", async () => {
    const poolFile = join(dir, "pool.yaml");
    await writeFile(poolFile, poolYaml([8000]));
    const s = source();
    await s.start();
    await writeFile(poolFile, poolYaml([8001]).replace("kind: InferencePool", "kind: InferencePol"));
    const report = (await s.reload())!;
    expect(report.rejected[0]!.message).toContain('kind: unsupported kind "InferencePol"');
    expect(report.rejected[0]!.message).toContain("document 1 (line 1)");
    expect(datastore.pool()?.targetPorts).toEqual([8000]);
  });

  it("removes the objects of a deleted file, and reports cross-file duplicates (first file wins)", async () => {
    await writeFile(join(dir, "a-pool.yaml"), poolYaml([8000]));
    await writeFile(join(dir, "b-pool.yaml"), poolYaml([9000]));
    await writeFile(join(dir, "pods.yaml"), podYaml("a", "10.0.0.1"));
    const s = source();
    const first = await s.start();
    expect(datastore.pool()?.targetPorts).toEqual([8000]);
    expect(first.rejected).toEqual([expect.objectContaining({ reason: "Duplicate", kind: "InferencePool" })]);
    expect(first.rejected[0]!.message).toContain("already defined in");

    await unlink(join(dir, "a-pool.yaml"));
    await s.reload();
    expect(datastore.pool()?.targetPorts).toEqual([9000]);
    await unlink(join(dir, "b-pool.yaml"));
    await s.reload();
    expect(datastore.synced()).toBe(false);
    expect(datastore.endpoints()).toEqual([]);
  });

  it("keeps everything when the configured file itself disappears", async () => {
    const file = join(dir, "all.yaml");
    await writeFile(file, `${poolYaml([8000])}---\n${podYaml("a", "10.0.0.1")}`);
    const s = source({ path: file });
    await s.start();
    await unlink(file);
    expect(await s.reload()).toBeUndefined();
    expect(endpointKeys()).toEqual(["10.0.0.1:8000"]);
  });
});

describe("FileSource reloading", () => {
  it("hot-reloads a directory on change through fs.watch", async () => {
    await writeFile(join(dir, "pool.yaml"), poolYaml([8000]));
    await writeFile(join(dir, "pods.yaml"), podYaml("a", "10.0.0.1"));
    await source({ watch: true }).start();
    const a = datastore.endpointByKey("10.0.0.1:8000");
    await writeFile(join(dir, "pods.yaml"), `${podYaml("a", "10.0.0.1")}---\n${podYaml("b", "10.0.0.2")}`);
    await vi.waitFor(() => expect(endpointKeys()).toEqual(["10.0.0.1:8000", "10.0.0.2:8000"]), WAIT);
    // The unchanged pod kept its endpoint object across the reload.
    expect(datastore.endpointByKey("10.0.0.1:8000")).toBe(a);
    await writeFile(join(dir, "more.yaml"), podYaml("c", "10.0.0.3"));
    await vi.waitFor(() => expect(endpointKeys()).toContain("10.0.0.3:8000"), WAIT);
  });

  it("follows a single file replaced by rename, as editors and ConfigMap updates do", async () => {
    const file = join(dir, "all.yaml");
    await writeFile(file, `${poolYaml([8000])}---\n${podYaml("a", "10.0.0.1")}`);
    await source({ path: file, watch: true }).start();
    for (const ip of ["10.0.0.7", "10.0.0.8"]) {
      const tmp = join(dir, `.all.yaml.${ip}.tmp`);
      await writeFile(tmp, `${poolYaml([8000])}---\n${podYaml("a", ip)}`);
      await rename(tmp, file);
      await vi.waitFor(() => expect(endpointKeys()).toEqual([`${ip}:8000`]), WAIT);
    }
  });

  it("picks up changes by stat polling when fs.watch is off", async () => {
    await writeFile(join(dir, "pool.yaml"), poolYaml([8000]));
    await writeFile(join(dir, "pods.yaml"), podYaml("a", "10.0.0.1"));
    await source({ watch: false, pollIntervalMs: 20 }).start();
    await writeFile(join(dir, "pods.yaml"), podYaml("a", "10.0.0.1").replace("10.0.0.1", "10.0.0.2"));
    await vi.waitFor(() => expect(endpointKeys()).toEqual(["10.0.0.2:8000"]), WAIT);
    expect(reports.length).toBeGreaterThanOrEqual(2);
  });

  it("stop() closes every watcher", async () => {
    await cp(BASIC, dir, { recursive: true });
    const count = () => process.getActiveResourcesInfo().filter((r) => r === "FSEventWrap").length;
    const before = count();
    const file = source({ path: join(dir, "00-pool.yaml"), watch: true, pollIntervalMs: 50 });
    const directory = source({ watch: true, pollIntervalMs: 50 });
    await file.start();
    await directory.start();
    // File mode watches the file and its directory; directory mode watches the directory.
    expect(count()).toBe(before + 3);
    await file.stop();
    await directory.stop();
    expect(count()).toBe(before);
    // No reload runs after stop, even when the files change.
    const applied = reports.length;
    await writeFile(join(dir, "20-pods.json"), "{}");
    await directory.reload();
    expect(reports.length).toBe(applied);
    expect(endpointKeys()).toEqual(["127.0.1.1:8000", "127.0.1.2:8000"]);
  });

  it("lets the process exit on its own after stop()", async () => {
    await cp(BASIC, dir, { recursive: true });
    const child = spawn(process.execPath, ["--import", "tsx", join(FIXTURES, "stop-child.ts"), dir], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString();
    });
    try {
      const code = await new Promise<number | null>((resolve) => child.on("exit", (c) => resolve(c)));
      expect(err).toBe("");
      expect(code).toBe(0);
      expect(JSON.parse(out)).toEqual({ endpoints: 2, during: 1, after: 0 });
    } finally {
      child.kill();
    }
  });
});

describe("FileSource under in-place rewrites", () => {
  const podsYaml = (n: number) =>
    [poolYaml([8000]), ...Array.from({ length: n }, (_, i) => podYaml(`p${i}`, `10.0.0.${i + 1}`))].join("---\n");

  it("keeps a momentarily empty file's objects; `kind: List` with `items: []` empties it on purpose", async () => {
    const file = join(dir, "all.yaml");
    await writeFile(file, podsYaml(3));
    const outcomes: string[] = [];
    const s = source({ path: file, onOutcome: (o) => outcomes.push(o) });
    await s.start();
    expect(endpointKeys()).toHaveLength(3);
    await writeFile(file, "");
    await s.reload();
    expect(endpointKeys()).toHaveLength(3);
    expect(outcomes).toContain("kept_empty");
    await writeFile(file, "# only a comment\n---\n");
    await s.reload();
    expect(endpointKeys()).toHaveLength(3);
    await writeFile(file, "apiVersion: v1\nkind: List\nitems: []\n");
    await s.reload();
    expect(endpointKeys()).toHaveLength(0);
    expect(datastore.pool()).toBeUndefined();
  });

  it("never empties the pool while the file is truncated and rewritten in two halves, over and over", async () => {
    const file = join(dir, "all.yaml");
    await writeFile(file, podsYaml(3));
    const s = source({ path: file, watch: true, pollIntervalMs: 50, debounceMs: 5 });
    await s.start();
    let low = 3;
    let samples = 0;
    const sampler = setInterval(() => {
      samples++;
      low = Math.min(low, endpointKeys().length);
    }, 2);
    try {
      const { open } = await import("node:fs/promises");
      for (let round = 0; round < 40; round++) {
        const text = podsYaml(3) + (round % 2 === 0 ? "# even\n" : "");
        const h = await open(file, "r+");
        await h.truncate(0);
        await new Promise((r) => setTimeout(r, 3));
        const cut = text.indexOf("kind: Pod") + 5; // mid-document: the first half alone is a valid, smaller file
        await h.write(text.slice(0, cut), 0);
        await new Promise((r) => setTimeout(r, 5 + (round % 4) * 5));
        await h.write(text.slice(cut), Buffer.byteLength(text.slice(0, cut)));
        await h.close();
        await new Promise((r) => setTimeout(r, 10 + (round % 3) * 20));
      }
      // The last complete version (4 pods) must be applied once the writer stops.
      await writeFile(file, podsYaml(4));
      await vi.waitFor(() => expect(endpointKeys()).toHaveLength(4), WAIT);
    } finally {
      clearInterval(sampler);
    }
    expect(samples).toBeGreaterThan(0);
    expect(low).toBe(3);
  });

  it("refuses a file over maxBytes and keeps its last good objects", async () => {
    const file = join(dir, "all.yaml");
    await writeFile(file, podsYaml(2));
    const outcomes: string[] = [];
    const s = source({ path: file, maxBytes: 2000, onOutcome: (o) => outcomes.push(o) });
    await s.start();
    await writeFile(file, podsYaml(30));
    await s.reload();
    expect(endpointKeys()).toHaveLength(2);
    expect(outcomes).toContain("too_large");
  });
});

describe("ParserThread", () => {
  it("parses in a worker thread exactly as on the main thread, errors included", async () => {
    const { ParserThread } = await import("../../src/sources/file-parse-client.js");
    const { parseManifestText } = await import("../../src/sources/file-parse.js");
    const { silentLogger } = await import("../../src/observability/logger.js");
    const parser = new ParserThread(silentLogger);
    try {
      const texts = [
        [
          poolYaml([8000]),
          ...Array.from({ length: 450 }, (_, i) => podYaml(`p${i}`, `10.0.${i >> 8}.${i & 255}`)),
        ].join("---\n"),
        `${poolYaml([8000])}---\n${podYaml("bad", "not-an-ip")}`,
        "a: [unclosed\n",
        "",
      ];
      for (const text of texts)
        expect(await parser.parse("/f.yaml", text, "default")).toEqual(parseManifestText("/f.yaml", text, "default"));
    } finally {
      await parser.close();
    }
  });
});
