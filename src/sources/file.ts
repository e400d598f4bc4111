/**
 * Resource discovery from Kubernetes-style manifests on disk: a file, or a directory of `.yaml` / `.yml` / `.json`
 * files (non-recursive, sorted by name, dot-files ignored so editor swap files and a ConfigMap mount's `..data`
 * machinery are skipped). This is the static mode GIE lacks (docs/design/api-resources.md §7): the same manifests you
 * would `kubectl apply`, without an API server.
 *
 * Reload rules, chosen so that a bad edit never takes a working pool down:
 *  - an invalid document is rejected with `<file>: document <n> (line <l>): <Kind> <ns>/<name>: <field>: <problem>`
 *    and the last good version of THAT object (kind/namespace/name) stays in force; if it never had one it is absent;
 *  - a YAML syntax error, or an invalid document that cannot even be identified, keeps the whole file's last good
 *    objects, since we cannot tell which objects the broken text was meant to define;
 *  - a removed file removes its objects (that is how you delete), but if the configured path itself disappears the
 *    last good state is kept: that is almost always an editor's atomic replace in progress.
 *
 * All file I/O happens in the reload handler, never on the request path. fs.watch drives reloads (debounced, on the
 * path and on its directory, because editors replace files by rename) and a slow unref'd stat poll backs it up,
 * because fs.watch misses events on network file systems, some container mounts and across inode replacement.
 */
import { type FSWatcher, watch } from "node:fs";
import { readdir, readFile, stat } from "node:fs/promises";
import { basename, dirname, extname, join } from "node:path";
import { type Document, LineCounter, parseAllDocuments } from "yaml";
import { ConfigError } from "../common/errors.js";
import type { ApplyReport, Datastore, RejectedObject } from "../datastore/datastore.js";
import type { ResourceSet } from "../datastore/types.js";
import { type Logger, silentLogger } from "../observability/logger.js";
import { type NormalizedObject, normalizeObject, ResourceError, SUPPORTED_API_VERSIONS } from "./normalize.js";

/** Default stat-poll period; slow on purpose, fs.watch is the fast path. */
export const DEFAULT_FILE_POLL_INTERVAL_MS = 2_000;
/** Default quiet period after the last fs event before reloading (editors write in several steps). */
export const DEFAULT_FILE_DEBOUNCE_MS = 100;

const EXTENSIONS: ReadonlySet<string> = new Set([".yaml", ".yml", ".json"]);

export interface FileSourceOptions {
  /** A manifest file, or a directory of manifests (non-recursive). */
  readonly path: string;
  readonly datastore: Datastore;
  /** Default: silent. */
  readonly logger?: Logger;
  /** Called after every load with the datastore's report plus the file-level rejections. */
  readonly onReport?: (report: FileSourceReport) => void;
  /** Stat-poll period in ms; 0 disables polling. Default 2000. */
  readonly pollIntervalMs?: number;
  /** Debounce for fs.watch events in ms. Default 100. */
  readonly debounceMs?: number;
  /** Use fs.watch; set false on file systems without change notification (NFS, some FUSE). Default true. */
  readonly watch?: boolean;
}

export interface FileSourceReport extends ApplyReport {
  /** Manifest files read in this load, in apply order. */
  readonly files: readonly string[];
}

interface FileState {
  /** Objects by `kind/namespace/name`, in document order. */
  readonly objects: Map<string, NormalizedObject>;
}

interface ParsedFile {
  readonly objects: Map<string, NormalizedObject>;
  readonly rejected: RejectedObject[];
}

function objectKey(kind: string, namespace: string, name: string): string {
  return `${kind}/${namespace}/${name}`;
}

function errorCode(err: unknown): string | undefined {
  return typeof err === "object" && err !== null && "code" in err ? String((err as { code: unknown }).code) : undefined;
}

function checkMs(value: number | undefined, fallback: number, field: string, min: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > 3_600_000) {
    throw new ConfigError(`must be an integer ${min}..3600000 (ms), got ${String(value)}`, undefined, field);
  }
  return value;
}

export class FileSource {
  readonly path: string;
  readonly #datastore: Datastore;
  readonly #logger: Logger;
  readonly #onReport: ((report: FileSourceReport) => void) | undefined;
  readonly #pollIntervalMs: number;
  readonly #debounceMs: number;
  readonly #useWatch: boolean;

  #isDirectory = false;
  #started = false;
  #stopped = false;
  #files = new Map<string, FileState>();
  #watchers: FSWatcher[] = [];
  #debounceTimer: NodeJS.Timeout | undefined;
  #pollTimer: NodeJS.Timeout | undefined;
  #polling = false;
  #signature = "";
  #running: Promise<FileSourceReport | undefined> | undefined;
  #again = false;

  constructor(options: FileSourceOptions) {
    if (typeof options?.path !== "string" || options.path === "") {
      throw new ConfigError("must be a non-empty path", undefined, "path");
    }
    this.path = options.path;
    this.#datastore = options.datastore;
    this.#logger = options.logger ?? silentLogger;
    this.#onReport = options.onReport;
    this.#pollIntervalMs = checkMs(options.pollIntervalMs, DEFAULT_FILE_POLL_INTERVAL_MS, "pollIntervalMs", 0);
    this.#debounceMs = checkMs(options.debounceMs, DEFAULT_FILE_DEBOUNCE_MS, "debounceMs", 0);
    this.#useWatch = options.watch ?? true;
  }

  /** Loads once and starts watching. Rejects with ConfigError only when the path does not exist or is unreadable. */
  async start(): Promise<FileSourceReport> {
    if (this.#started) throw new Error("FileSource already started");
    this.#started = true;
    let info: Awaited<ReturnType<typeof stat>>;
    try {
      info = await stat(this.path);
    } catch (err) {
      throw new ConfigError(`cannot read resources: ${(err as Error).message}`, this.path);
    }
    if (!info.isDirectory() && !info.isFile()) throw new ConfigError("not a file or directory", this.path);
    this.#isDirectory = info.isDirectory();
    // Watch before the first read so an edit made during it is not missed.
    if (this.#useWatch) this.#watch();
    let report: FileSourceReport | undefined;
    try {
      report = await this.reload();
    } catch (err) {
      await this.stop();
      throw err;
    }
    if (report === undefined) {
      if (this.#stopped) throw new Error("FileSource was stopped during start()");
      await this.stop();
      throw new ConfigError("disappeared while loading", this.path);
    }
    if (this.#pollIntervalMs > 0) {
      this.#pollTimer = setInterval(() => void this.#poll(), this.#pollIntervalMs);
      // The fs.watch handles (or the server using this source) keep the process alive, never the fallback poll.
      this.#pollTimer.unref();
    }
    return report;
  }

  /** Closes every watcher and timer; an in-flight reload finishes but is not applied. */
  async stop(): Promise<void> {
    this.#stopped = true;
    const watchers = this.#watchers;
    this.#watchers = [];
    clearTimeout(this.#debounceTimer);
    clearInterval(this.#pollTimer);
    this.#debounceTimer = undefined;
    this.#pollTimer = undefined;
    await Promise.all(
      watchers.map(
        (w) =>
          new Promise<void>((resolve) => {
            w.once("close", resolve);
            w.close();
          }),
      ),
    );
    // libuv frees a closed handle in the loop's close phase, which follows this turn's check phase: an immediate
    // queued from inside an immediate runs on the next turn, after it. Then "stopped" means nothing is left.
    if (watchers.length > 0) await new Promise<void>((resolve) => setImmediate(() => setImmediate(resolve)));
    await this.#running?.catch(() => undefined);
  }

  /**
   * Re-reads everything now and applies it. Concurrent calls coalesce into at most one extra run. Resolves
   * undefined when stopped or when the configured path is gone (the last good state is kept).
   */
  reload(): Promise<FileSourceReport | undefined> {
    if (this.#running !== undefined) {
      this.#again = true;
      return this.#running;
    }
    const run = async (): Promise<FileSourceReport | undefined> => {
      let report: FileSourceReport | undefined;
      do {
        this.#again = false;
        report = await this.#load();
      } while (this.#again && !this.#stopped);
      return report;
    };
    this.#running = run().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  #watch(): void {
    const base = basename(this.path);
    const onEvent = (_event: string, filename: string | Buffer | null) => {
      this.#schedule(filename === null ? undefined : String(filename));
    };
    const add = (target: string, filter?: string) => {
      try {
        const w = watch(target, (event, filename) => {
          // In file mode the directory watcher only cares about our file, plus the `..data` symlink swap by which
          // the kubelet updates a mounted ConfigMap.
          const f = filename === null ? undefined : String(filename);
          if (filter !== undefined && f !== undefined && f !== filter && !f.startsWith("..")) return;
          onEvent(event, filename);
        });
        w.on("error", (err) => {
          // The watched inode went away (file replaced or deleted): drop this watcher, the others and the poll remain.
          this.#logger.debug({ err, path: target }, "file watcher closed");
          w.close();
          this.#watchers = this.#watchers.filter((x) => x !== w);
        });
        this.#watchers.push(w);
      } catch (err) {
        // ENOSPC (inotify limit) and friends: polling still works, just slower.
        this.#logger.warn({ err, path: target }, "fs.watch unavailable; relying on polling");
      }
    };
    add(this.path);
    if (!this.#isDirectory) add(dirname(this.path), base);
  }

  #schedule(_filename?: string): void {
    if (this.#stopped) return;
    clearTimeout(this.#debounceTimer);
    this.#debounceTimer = setTimeout(() => {
      this.#debounceTimer = undefined;
      void this.reload().catch((err: unknown) =>
        this.#logger.error({ err, path: this.path }, "resource reload failed"),
      );
    }, this.#debounceMs);
    this.#debounceTimer.unref();
  }

  async #poll(): Promise<void> {
    if (this.#polling || this.#stopped) return;
    this.#polling = true;
    try {
      const files = await this.#listFiles();
      const signature = files === undefined ? "missing" : await this.#computeSignature(files);
      if (signature !== this.#signature) this.#schedule();
    } catch (err) {
      this.#logger.debug({ err, path: this.path }, "resource poll failed");
    } finally {
      this.#polling = false;
    }
  }

  async #computeSignature(files: readonly string[]): Promise<string> {
    const parts: string[] = [];
    for (const f of files) {
      try {
        const s = await stat(f);
        parts.push(`${f}\0${s.ino}\0${s.size}\0${s.mtimeMs}`);
      } catch {
        parts.push(`${f}\0gone`);
      }
    }
    return parts.join("\n");
  }

  /** The manifest files, sorted; undefined when the configured path no longer exists. */
  async #listFiles(): Promise<string[] | undefined> {
    if (!this.#isDirectory) {
      try {
        return (await stat(this.path)).isFile() ? [this.path] : undefined;
      } catch {
        return undefined;
      }
    }
    let names: string[];
    try {
      names = await readdir(this.path);
    } catch {
      return undefined;
    }
    const files: string[] = [];
    for (const name of names.sort()) {
      if (name.startsWith(".") || !EXTENSIONS.has(extname(name).toLowerCase())) continue;
      const full = join(this.path, name);
      try {
        // stat (not lstat): ConfigMap mounts expose files as symlinks into `..data/`.
        if ((await stat(full)).isFile()) files.push(full);
      } catch {
        // Vanished between readdir and stat; the next event or poll will see the final state.
      }
    }
    return files;
  }

  async #load(): Promise<FileSourceReport | undefined> {
    if (this.#stopped) return undefined;
    const files = await this.#listFiles();
    if (files === undefined) {
      this.#signature = "missing";
      this.#logger.warn({ path: this.path }, "resource path is gone; keeping the last loaded resources");
      return undefined;
    }
    this.#signature = await this.#computeSignature(files);
    const rejected: RejectedObject[] = [];
    const nextFiles = new Map<string, FileState>();
    for (const file of files) {
      const previous = this.#files.get(file);
      let text: string;
      try {
        text = await readFile(file, "utf8");
      } catch (err) {
        if (errorCode(err) === "ENOENT") continue; // deleted since listing: its objects go
        rejected.push(fileLevel(file, `cannot read: ${(err as Error).message}; keeping its last good objects`));
        if (previous !== undefined) nextFiles.set(file, previous);
        continue;
      }
      const parsed = this.#parse(file, text, previous);
      rejected.push(...parsed.rejected);
      nextFiles.set(file, { objects: parsed.objects });
    }
    if (this.#stopped) return undefined;
    this.#files = nextFiles;

    // One object per kind/namespace/name across files: the first file in sorted order wins.
    const seen = new Map<string, NormalizedObject>();
    const set = { pools: [], models: [], objectives: [], rewrites: [], pods: [] } as {
      -readonly [K in keyof ResourceSet]: ResourceSet[K][number][];
    };
    for (const state of nextFiles.values()) {
      for (const [key, obj] of state.objects) {
        const first = seen.get(key);
        if (first !== undefined) {
          rejected.push({
            kind: obj.kind,
            name: `${obj.spec.namespace}/${obj.spec.name}`,
            reason: "Duplicate",
            message: `${obj.spec.origin}: ${obj.kind} ${obj.spec.namespace}/${obj.spec.name} is already defined in ${first.spec.origin}; ignored`,
            ...(obj.spec.origin === undefined ? {} : { origin: obj.spec.origin }),
          });
          continue;
        }
        seen.set(key, obj);
        switch (obj.kind) {
          case "InferencePool":
            set.pools.push(obj.spec);
            break;
          case "InferenceModel":
            set.models.push(obj.spec);
            break;
          case "InferenceObjective":
            set.objectives.push(obj.spec);
            break;
          case "InferenceModelRewrite":
            set.rewrites.push(obj.spec);
            break;
          case "Pod":
            set.pods.push(obj.spec);
            break;
        }
      }
    }
    for (const r of rejected) this.#logger.warn({ reason: r.reason, origin: r.origin }, r.message);
    const applied = this.#datastore.apply(set);
    const report: FileSourceReport = { ...applied, rejected: [...rejected, ...applied.rejected], files };
    this.#logger.debug({ path: this.path, files: files.length, accepted: report.accepted }, "resources loaded");
    try {
      this.#onReport?.(report);
    } catch (err) {
      this.#logger.error({ err }, "onReport callback threw");
    }
    return report;
  }

  #parse(file: string, text: string, previous: FileState | undefined): ParsedFile {
    const rejected: RejectedObject[] = [];
    const keepWholeFile = (message: string): ParsedFile => {
      const kept = previous?.objects.size ?? 0;
      rejected.push(
        fileLevel(
          file,
          `${message}; ${kept > 0 ? `keeping the file's last good ${kept} object(s)` : "no objects loaded"}`,
        ),
      );
      return { objects: previous?.objects ?? new Map(), rejected };
    };
    const lineCounter = new LineCounter();
    let docs: Document.Parsed[];
    try {
      docs = [...parseAllDocuments(text, { lineCounter, prettyErrors: true, uniqueKeys: true })];
    } catch (err) {
      return keepWholeFile(`YAML parse failed: ${(err as Error).message.split("\n")[0]}`);
    }
    const objects = new Map<string, NormalizedObject>();
    for (let d = 0; d < docs.length; d++) {
      const doc = docs[d]!;
      const startOffset = doc.contents?.range[0] ?? doc.range[0];
      const where = `document ${d + 1} (line ${lineCounter.linePos(startOffset).line})`;
      const syntax = doc.errors[0];
      if (syntax !== undefined) {
        const pos = syntax.linePos?.[0];
        const at = pos === undefined ? "" : ` at line ${pos.line}, column ${pos.col}`;
        const msg = syntax.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "");
        return keepWholeFile(`${where}: YAML syntax error${at}: ${msg}`);
      }
      let value: unknown;
      try {
        value = doc.toJS({ maxAliasCount: 100 });
      } catch (err) {
        return keepWholeFile(`${where}: ${(err as Error).message.split("\n")[0]}`);
      }
      if (value === null || value === undefined) continue; // empty document, e.g. a trailing `---`
      const items = listItems(value);
      const entries =
        items === undefined
          ? [{ raw: value, origin: `${file}#${d + 1}`, label: where }]
          : items.map((raw, i) => ({ raw, origin: `${file}#${d + 1}.items[${i}]`, label: `${where} items[${i}]` }));
      for (const { raw, origin, label } of entries) {
        let obj: NormalizedObject;
        try {
          obj = normalizeObject(raw, origin, { defaultNamespace: this.#datastore.poolNamespace });
        } catch (err) {
          if (!(err instanceof ResourceError)) throw err;
          const identified = err.name !== "" && Object.hasOwn(SUPPORTED_API_VERSIONS, err.kind);
          const what = identified ? `${err.kind} ${err.namespace}/${err.name}` : err.kind || "object";
          if (!identified) return keepWholeFile(`${label}: ${what}: ${err.message}`);
          const key = objectKey(err.kind, err.namespace, err.name);
          const lastGood = previous?.objects.get(key);
          if (lastGood !== undefined && !objects.has(key)) objects.set(key, lastGood);
          rejected.push({
            kind: err.kind,
            name: `${err.namespace}/${err.name}`,
            reason: "Invalid",
            message: `${file}: ${label}: ${what}: ${err.message}; ${lastGood === undefined ? "not loaded" : "keeping its last good version"}`,
            origin,
          });
          continue;
        }
        const key = objectKey(obj.kind, obj.spec.namespace, obj.spec.name);
        const dup = objects.get(key);
        if (dup !== undefined) {
          rejected.push({
            kind: obj.kind,
            name: `${obj.spec.namespace}/${obj.spec.name}`,
            reason: "Duplicate",
            message: `${file}: ${label}: ${obj.kind} ${obj.spec.namespace}/${obj.spec.name} is already defined in ${dup.spec.origin}; ignored`,
            origin,
          });
          continue;
        }
        objects.set(key, obj);
      }
    }
    return { objects, rejected };
  }
}

/** `kind: List` (kubectl output) or `kind: <X>List` (raw API lists, whose items omit apiVersion/kind). */
function listItems(value: unknown): unknown[] | undefined {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  const v = value as Record<string, unknown>;
  const kind = v["kind"];
  if (typeof kind !== "string" || !kind.endsWith("List") || !Array.isArray(v["items"])) return undefined;
  const itemKind = kind === "List" ? undefined : kind.slice(0, -"List".length);
  return v["items"].map((item: unknown) => {
    if (itemKind === undefined || typeof item !== "object" || item === null || Array.isArray(item)) return item;
    const it = item as Record<string, unknown>;
    return { apiVersion: v["apiVersion"], kind: itemKind, ...it };
  });
}

function fileLevel(file: string, message: string): RejectedObject {
  return { kind: "File", name: file, reason: "Invalid", message: `${file}: ${message}`, origin: file };
}
