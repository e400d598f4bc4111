/**
 * Worker-thread entry of the file source's parser (file-parse.ts). Results go back in chunks so that the main
 * thread deserializes a bounded amount per event-loop turn: one message with 20k pods takes ~200 ms to clone.
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

export type ParseReply =
  | { readonly id: number; readonly entries: unknown[] }
  | { readonly id: number; readonly done: true; readonly wholeFile?: string; readonly documents: number }
  | { readonly id: number; readonly done: true; readonly error: string };

const port = parentPort;
port?.on("message", (job: ParseJob) => {
  try {
    const out = parseManifestText(job.file, job.text, job.defaultNamespace);
    for (let i = 0; i < out.entries.length; i += job.chunk)
      port.postMessage({ id: job.id, entries: out.entries.slice(i, i + job.chunk) } satisfies ParseReply);
    port.postMessage({
      id: job.id,
      done: true,
      documents: out.documents,
      ...(out.wholeFile === undefined ? {} : { wholeFile: out.wholeFile }),
    } satisfies ParseReply);
  } catch (err) {
    port.postMessage({ id: job.id, done: true, error: (err as Error).message ?? String(err) } satisfies ParseReply);
  }
});
