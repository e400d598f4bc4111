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
import { ConfigError } from "../common/errors.js";
import { type ApplyReport, type Datastore, logRejected, type RejectedObject } from "../datastore/datastore.js";
import { type Logger, silentLogger } from "../observability/logger.js";
import { type ParseOutcome, parseManifestText } from "./file-parse.js";
import { ParserThread } from "./file-parse-client.js";
import { addToResourceSet, emptyResourceSet, type NormalizedObject } from "./normalize.js";

/** Default stat-poll period; slow on purpose, fs.watch is the fast path. */
export const DEFAULT_FILE_POLL_INTERVAL_MS = 2_000;
/** Default quiet period after the last fs event before reloading (editors write in several steps). */
export const DEFAULT_FILE_DEBOUNCE_MS = 100;
/** Default of `--resources-max-bytes`: a larger manifest file is refused (its last good objects stay). */
export const DEFAULT_RESOURCES_MAX_BYTES = 64 * 1024 * 1024;
/** Main-thread work per event-loop turn while a reload is merged and applied (docs/security.md). */
const SLICE_MS = 2;

/** What became of one reload; counted by the owner (`switchyard_resource_reloads_total{outcome}`). */
export type ReloadOutcome = "applied" | "kept_changing" | "kept_empty" | "kept_invalid" | "too_large" | "path_missing";

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
  /** Largest manifest file read, in bytes. Default 64 MiB. */
  readonly maxBytes?: number;
  /** Parse in a worker thread (default true); false parses on the calling thread. */
  readonly parseThread?: boolean;
  /** Called once per reload (and once per file kept for a reason other than "applied"). */
  readonly onOutcome?: (outcome: ReloadOutcome) => void;
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

/** Resolves on the next event-loop turn, after pending I/O (requests) has been served. */
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** `kind: List` with `items: []`: the one way a file says "I define nothing" on purpose (docs/security.md). */
function isExplicitlyEmpty(text: string): boolean {
  return /^\s*kind:\s*["']?List["']?\s*$/m.test(text) && /^\s*items:\s*\[\s*\]\s*$/m.test(text);
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
  readonly #maxBytes: number;
  readonly #parser: ParserThread | undefined;
  readonly #onOutcome: ((outcome: ReloadOutcome) => void) | undefined;

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
    this.#maxBytes = options.maxBytes ?? DEFAULT_RESOURCES_MAX_BYTES;
    if (!Number.isInteger(this.#maxBytes) || this.#maxBytes < 1)
      throw new ConfigError(`must be a positive integer, got ${String(options.maxBytes)}`, undefined, "maxBytes");
    this.#parser = options.parseThread === false ? undefined : new ParserThread(this.#logger);
    this.#onOutcome = options.onOutcome;
  }

  #outcome(outcome: ReloadOutcome): void {
    try {
      this.#onOutcome?.(outcome);
    } catch (err) {
      this.#logger.error({ err }, "onOutcome callback threw");
    }
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
    await this.#parser?.close();
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
      this.#outcome("path_missing");
      return undefined;
    }
    const signature = await this.#computeSignature(files);
    this.#signature = signature;
    const rejected: RejectedObject[] = [];
    const nextFiles = new Map<string, FileState>();
    for (const file of files) {
      const previous = this.#files.get(file);
      const keep = (message: string, outcome: ReloadOutcome) => {
        const kept = previous?.objects.size ?? 0;
        rejected.push(
          fileLevel(
            file,
            `${message}; ${kept > 0 ? `keeping the file's last good ${kept} object(s)` : "no objects loaded"}`,
          ),
        );
        if (previous !== undefined) nextFiles.set(file, previous);
        this.#outcome(outcome);
      };
      let size: number;
      try {
        size = (await stat(file)).size;
      } catch (err) {
        if (errorCode(err) === "ENOENT") continue; // deleted since listing: its objects go
        keep(`cannot read: ${(err as Error).message}`, "kept_invalid");
        continue;
      }
      if (size > this.#maxBytes) {
        keep(`${size} bytes is over --resources-max-bytes (${this.#maxBytes})`, "too_large");
        continue;
      }
      let text: string;
      try {
        text = await readFile(file, "utf8");
      } catch (err) {
        if (errorCode(err) === "ENOENT") continue;
        keep(`cannot read: ${(err as Error).message}`, "kept_invalid");
        continue;
      }
      let outcome: ParseOutcome;
      try {
        outcome = this.#parser
          ? await this.#parser.parse(file, text, this.#datastore.poolNamespace)
          : parseManifestText(file, text, this.#datastore.poolNamespace);
      } catch (err) {
        if (this.#stopped) return undefined;
        keep(`cannot parse: ${(err as Error).message}`, "kept_invalid");
        continue;
      }
      if (outcome.wholeFile !== undefined) {
        keep(outcome.wholeFile, "kept_invalid");
        continue;
      }
      // A file being rewritten in place is empty for a moment; "no objects" must be said on purpose.
      if (outcome.documents === 0 && (previous?.objects.size ?? 0) > 0 && !isExplicitlyEmpty(text)) {
        keep(
          "file is empty (being rewritten?). To remove its objects delete the file or write `kind: List` with `items: []`",
          "kept_empty",
        );
        continue;
      }
      const parsed = await this.#merge(file, outcome, previous);
      rejected.push(...parsed.rejected);
      nextFiles.set(file, { objects: parsed.objects });
    }
    if (this.#stopped) return undefined;
    // A file that changed while it was read and parsed may have been read half-written (truncate, then write):
    // apply nothing, keep the last good view, and read it again once it is quiet.
    if (this.#started && this.#files.size > 0 && (await this.#computeSignature(files)) !== signature) {
      this.#logger.debug({ path: this.path }, "resources changed while loading; reading them again");
      this.#outcome("kept_changing");
      this.#signature = "";
      this.#schedule();
      return undefined;
    }
    this.#files = nextFiles;

    // One object per kind/namespace/name across files: the first file in sorted order wins.
    const seen = new Map<string, NormalizedObject>();
    const set = emptyResourceSet();
    let sliceStart = performance.now();
    for (const state of nextFiles.values()) {
      for (const [key, obj] of state.objects) {
        if (performance.now() - sliceStart > SLICE_MS) {
          await nextTurn();
          sliceStart = performance.now();
        }
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
        addToResourceSet(set, obj);
      }
    }
    if (this.#stopped) return undefined;
    logRejected(this.#logger, rejected);
    const applied = await this.#datastore.applyInSlices(set, SLICE_MS);
    const report: FileSourceReport = { ...applied, rejected: [...rejected, ...applied.rejected], files };
    this.#logger.debug({ path: this.path, files: files.length, accepted: report.accepted }, "resources loaded");
    this.#outcome("applied");
    try {
      this.#onReport?.(report);
    } catch (err) {
      this.#logger.error({ err }, "onReport callback threw");
    }
    return report;
  }

  /** Joins a parsed file with its last good objects, a few milliseconds of work per event-loop turn. */
  async #merge(file: string, outcome: ParseOutcome, previous: FileState | undefined): Promise<ParsedFile> {
    const rejected: RejectedObject[] = [];
    const objects = new Map<string, NormalizedObject>();
    let sliceStart = performance.now();
    for (const entry of outcome.entries) {
      if (performance.now() - sliceStart > SLICE_MS) {
        await nextTurn();
        sliceStart = performance.now();
      }
      if ("invalid" in entry) {
        const e = entry.invalid;
        const key = objectKey(e.kind, e.namespace, e.name);
        const lastGood = previous?.objects.get(key);
        if (lastGood !== undefined && !objects.has(key)) objects.set(key, lastGood);
        rejected.push({
          kind: e.kind,
          name: `${e.namespace}/${e.name}`,
          reason: "Invalid",
          message: `${file}: ${e.message}; ${lastGood === undefined ? "not loaded" : "keeping its last good version"}`,
          origin: e.origin,
        });
        continue;
      }
      const obj = entry.ok;
      const key = objectKey(obj.kind, obj.spec.namespace, obj.spec.name);
      const dup = objects.get(key);
      if (dup !== undefined) {
        rejected.push({
          kind: obj.kind,
          name: `${obj.spec.namespace}/${obj.spec.name}`,
          reason: "Duplicate",
          message: `${file}: ${entry.label}: ${obj.kind} ${obj.spec.namespace}/${obj.spec.name} is already defined in ${dup.spec.origin}; ignored`,
          origin: entry.origin,
        });
        continue;
      }
      objects.set(key, obj);
    }
    return { objects, rejected };
  }
}

function fileLevel(file: string, message: string): RejectedObject {
  return { kind: "File", name: file, reason: "Invalid", message: `${file}: ${message}`, origin: file };
}
