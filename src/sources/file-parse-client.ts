/**
 * Runs file-parse.ts in a worker thread for the file source, so reloading a large resources file never blocks the
 * request path (docs/security.md, "Resource files"). One worker per source, started on first use and kept: a
 * reload is rare, but starting a worker costs tens of ms of main-thread time.
 */
import { Worker } from "node:worker_threads";
import type { Logger } from "../observability/logger.js";
import { type ParsedEntry, type ParseOutcome, parseManifestText } from "./file-parse.js";
import type { NextChunk, ParseJob, ParseReply } from "./file-parse-worker.js";

/** Entries per message from the worker: ~200 normalized objects deserialize in about a millisecond. */
const CHUNK = 200;

interface Pending {
  readonly entries: ParsedEntry[];
  resolve(outcome: ParseOutcome): void;
  reject(err: Error): void;
}

export class ParserThread {
  readonly #logger: Logger;
  #worker: Worker | undefined;
  #failed = false;
  #nextId = 1;
  readonly #pending = new Map<number, Pending>();

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  parse(file: string, text: string, defaultNamespace: string): Promise<ParseOutcome> {
    const worker = this.#ensure();
    // Without a worker (it could not start) parsing still works, on the main thread, as before.
    if (worker === undefined) return Promise.resolve(parseManifestText(file, text, defaultNamespace));
    const id = this.#nextId++;
    return new Promise<ParseOutcome>((resolve, reject) => {
      this.#pending.set(id, { entries: [], resolve, reject });
      worker.postMessage({ id, file, text, defaultNamespace, chunk: CHUNK } satisfies ParseJob);
    });
  }

  async close(): Promise<void> {
    const w = this.#worker;
    this.#worker = undefined;
    this.#failAll(new Error("parser stopped"));
    await w?.terminate();
  }

  #ensure(): Worker | undefined {
    if (this.#worker !== undefined || this.#failed) return this.#worker;
    try {
      const w = spawn();
      w.unref();
      w.on("message", (reply: ParseReply) => this.#onReply(reply));
      w.on("error", (err) => {
        this.#logger.warn({ err }, "resource parser thread failed; restarting it on the next reload");
        this.#failAll(err);
        if (this.#worker === w) this.#worker = undefined;
      });
      w.on("exit", () => {
        this.#failAll(new Error("resource parser thread exited"));
        if (this.#worker === w) this.#worker = undefined;
      });
      this.#worker = w;
    } catch (err) {
      this.#failed = true;
      this.#logger.warn({ err }, "cannot start a resource parser thread; parsing on the main thread");
    }
    return this.#worker;
  }

  #onReply(reply: ParseReply): void {
    const p = this.#pending.get(reply.id);
    if (p === undefined) return;
    if ("entries" in reply) {
      for (const e of reply.entries) p.entries.push(e as ParsedEntry);
      // Pull the next chunk on a later turn, so requests run between chunks.
      const id = reply.id;
      setImmediate(() => this.#worker?.postMessage({ id, next: true } satisfies NextChunk));
      return;
    }
    this.#pending.delete(reply.id);
    if ("error" in reply) p.reject(new Error(reply.error));
    else
      p.resolve({
        entries: p.entries,
        documents: reply.documents,
        ...(reply.wholeFile === undefined ? {} : { wholeFile: reply.wholeFile }),
      });
  }

  #failAll(err: Error): void {
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
  }
}

function spawn(): Worker {
  const here = import.meta.url;
  if (here.endsWith(".js")) return new Worker(new URL("./file-parse-worker.js", here));
  // Running from TypeScript sources (tests, tsx): the worker needs the same loader to import a .ts entry.
  const entry = JSON.stringify(new URL("./file-parse-worker.ts", here).href);
  return new Worker(`import("tsx/esm/api").then(({ register }) => { register(); return import(${entry}); })`, {
    eval: true,
  });
}
