/**
 * Worker-thread entry of the file source's parser (file-parse.ts). Results go back in chunks, one per request of
 * the main thread, so that it deserializes a bounded amount per event-loop turn: one message with 20k pods takes
 * ~200 ms to clone, and Node delivers every message already queued on a port in the same turn.
 */
import { parentPort } from "node:worker_threads";
import { parseManifestText } from "./file-parse.js";

export interface ParseJob {
  readonly id: number;
  readonly file: string;
  readonly text: string;
  readonly defaultNamespace: string;
  readonly chunk: number;
}

/** The main thread is ready for the next chunk of job `id`. */
export interface NextChunk {
  readonly id: number;
  readonly next: true;
}

export type ParseReply =
  | { readonly id: number; readonly entries: unknown[] }
  | { readonly id: number; readonly done: true; readonly wholeFile?: string; readonly documents: number }
  | { readonly id: number; readonly done: true; readonly error: string };

const port = parentPort;
/** Parsed jobs waiting for the main thread to pull their next chunk. */
const pending = new Map<number, { out: ReturnType<typeof parseManifestText>; at: number; chunk: number }>();

function sendNext(id: number): void {
  const job = pending.get(id);
  if (job === undefined || port === null) return;
  const { out, at, chunk } = job;
  if (at < out.entries.length) {
    job.at = at + chunk;
    port.postMessage({ id, entries: out.entries.slice(at, at + chunk) } satisfies ParseReply);
    return;
  }
  pending.delete(id);
  port.postMessage({
    id,
    done: true,
    documents: out.documents,
    ...(out.wholeFile === undefined ? {} : { wholeFile: out.wholeFile }),
  } satisfies ParseReply);
}

port?.on("message", (msg: ParseJob | NextChunk) => {
  if ("next" in msg) {
    sendNext(msg.id);
    return;
  }
  try {
    pending.set(msg.id, { out: parseManifestText(msg.file, msg.text, msg.defaultNamespace), at: 0, chunk: msg.chunk });
    sendNext(msg.id);
  } catch (err) {
    port.postMessage({ id: msg.id, done: true, error: (err as Error).message ?? String(err) } satisfies ParseReply);
  }
});
