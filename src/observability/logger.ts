/**
 * The root pino logger. JSON to stdout by default; a readable single-line form when stdout is a TTY.
 * Prompt text and credentials never reach a log line: `redact` removes the header fields that carry them,
 * and callers log body-derived facts (model, sizes), never the body.
 */
import { type LevelWithSilent, type Logger, pino } from "pino";

export type { Logger } from "pino";

export const REDACT_PATHS = [
  "headers.authorization",
  'headers["proxy-authorization"]',
  'headers["x-api-key"]',
  'headers["api-key"]',
  "headers.cookie",
  "*.headers.authorization",
  '*.headers["x-api-key"]',
  "prompt",
  "*.prompt",
  "messages",
  "*.messages",
];

export interface LoggerOptions {
  level?: LevelWithSilent;
  /** Human-readable lines instead of JSON; defaults to whether stdout is a TTY. */
  pretty?: boolean;
  /** Destination stream; defaults to async stdout. */
  destination?: NodeJS.WritableStream;
  name?: string;
  /**
   * The default stdout destination batches writes (4 KiB) so a busy EPP makes few syscalls; this timer writes out
   * whatever is pending, so a quiet EPP's lines are never held back longer (and a SIGKILL / OOM kill loses at most
   * this much). 0 writes every line synchronously. Default 200 ms (`--log-flush-interval`).
   */
  flushIntervalMs?: number;
}

export const DEFAULT_LOG_FLUSH_INTERVAL_MS = 200;

function prettyStream(): NodeJS.WritableStream {
  // A small in-process formatter: pino-pretty's worker transport is a dev dependency we do not ship.
  return {
    write(line: string) {
      try {
        const o = JSON.parse(line) as Record<string, unknown>;
        const { level, time, msg, pid: _pid, hostname: _h, name, ...rest } = o;
        const lvl = pino.levels.labels[level as number] ?? String(level);
        const t = new Date(time as number).toISOString().slice(11, 23);
        const extra = Object.keys(rest).length > 0 ? ` ${JSON.stringify(rest)}` : "";
        process.stdout.write(`${t} ${lvl.toUpperCase().padEnd(5)} ${name ? `[${name}] ` : ""}${msg ?? ""}${extra}\n`);
      } catch {
        process.stdout.write(line);
      }
      return true;
    },
  } as unknown as NodeJS.WritableStream;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const pretty = options.pretty ?? process.stdout.isTTY === true;
  const flushMs = options.flushIntervalMs ?? DEFAULT_LOG_FLUSH_INTERVAL_MS;
  let destination = options.destination ?? (pretty ? prettyStream() : undefined);
  if (destination === undefined) {
    const boom = pino.destination(flushMs === 0 ? { dest: 1, sync: true } : { dest: 1, sync: false, minLength: 4096 });
    if (flushMs > 0) {
      const timer = setInterval(() => {
        try {
          boom.flush();
        } catch {
          // Not ready yet or already closed: the next tick (or exit) writes it.
        }
      }, flushMs);
      timer.unref();
    }
    destination = boom as unknown as NodeJS.WritableStream;
  }
  return pino(
    {
      level: options.level ?? "info",
      redact: { paths: REDACT_PATHS, censor: "[redacted]" },
      base: options.name ? { name: options.name } : { pid: process.pid },
    },
    destination as pino.DestinationStream,
  );
}

/** A logger that drops everything; for tests and library use. */
export const silentLogger: Logger = pino({ level: "silent" });
