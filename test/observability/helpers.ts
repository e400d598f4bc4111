/** Helpers shared by the observability tests: reading Prometheus exposition text and capturing pino output. */
import { Writable } from "node:stream";
import { createLogger, type Logger } from "../../src/observability/logger.js";

function parseValue(text: string): number {
  if (text === "+Inf") return Number.POSITIVE_INFINITY;
  if (text === "-Inf") return Number.NEGATIVE_INFINITY;
  return Number(text);
}

export interface Sample {
  readonly name: string;
  readonly labels: ReadonlyMap<string, string>;
  readonly value: number;
}

/** Every sample of exposition `text` (comments skipped). */
export function samples(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line.startsWith("#") || line.trim() === "") continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels = new Map<string, string>();
    for (const part of (m[3] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels.set(part[1]!, part[2]!);
    out.push({ name: m[1]!, labels, value: parseValue(m[4]!) });
  }
  return out;
}

/** The value of the first sample of `name` whose labels include `labels`; undefined when there is none. */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const s of samples(text))
    if (s.name === name && Object.entries(labels).every(([k, v]) => s.labels.get(k) === v)) return s.value;
  return undefined;
}

/** Sum of every sample of `name` whose labels include `labels` (0 when none). */
export function total(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const s of samples(text))
    if (s.name === name && Object.entries(labels).every(([k, v]) => s.labels.get(k) === v)) sum += s.value;
  return sum;
}

export interface CapturedLogger {
  readonly logger: Logger;
  /** Raw JSON lines written so far. */
  readonly lines: string[];
  /** Parsed lines. */
  records(): Record<string, unknown>[];
}

/** A real pino logger (with the production redaction rules) writing synchronously into memory. */
export function captureLogger(level: "trace" | "debug" | "info" | "warn" = "debug"): CapturedLogger {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString("utf8").split("\n")) if (line.trim() !== "") lines.push(line);
      done();
    },
  });
  const logger = createLogger({ level, pretty: false, destination });
  return { logger, lines, records: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}
