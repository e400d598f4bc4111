/**
 * Child-process supervision for `switchyard up` and `switchyard bench`: every child is started from this package's
 * own CLI, its output goes to a log file, and stopAll() ends them all (SIGTERM, then SIGKILL after a grace period)
 * so Ctrl-C never leaves a simulator or gateway behind.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

/**
 * The CLI entry next to this module: dist/cli.js when compiled; when running from source (tests under vitest)
 * the package's built dist/cli.js if present (`npm test` builds first), else src/cli.ts under tsx.
 */
export function cliEntry(): string {
  const here = fileURLToPath(import.meta.url);
  if (!here.endsWith(".ts")) return fileURLToPath(new URL("../cli.js", import.meta.url));
  const built = fileURLToPath(new URL("../../dist/cli.js", import.meta.url));
  return existsSync(built) ? built : fileURLToPath(new URL("../cli.ts", import.meta.url));
}

/** The parent-death watchdog next to the entry (dist/local/parent-watch.js, or the .ts source under tsx). */
function parentWatch(entry: string): string {
  const ext = entry.endsWith(".ts") ? ".ts" : ".js";
  return pathToFileURL(join(dirname(entry), "local", `parent-watch${ext}`)).href;
}

export interface Child {
  readonly name: string;
  readonly process: ChildProcess;
  readonly logFile: string;
  /** Resolves with the exit code (or signal name) when the child exits. */
  readonly exited: Promise<number | string>;
}

export class Supervisor {
  readonly #children: Child[] = [];
  #stopping = false;

  constructor(readonly logDir: string) {}

  get stopping(): boolean {
    return this.#stopping;
  }

  /** Starts `switchyard <args…>` as a child. */
  start(name: string, args: readonly string[], env: NodeJS.ProcessEnv = {}): Child {
    const entry = cliEntry();
    const execArgv = [...(entry.endsWith(".ts") ? ["--import", "tsx"] : []), "--import", parentWatch(entry)];
    return this.startProgram(name, process.execPath, [...execArgv, entry, ...args], env);
  }

  /** Starts any executable as a supervised child (e.g. llm-d-inference-sim for `switchyard bench`). */
  startProgram(name: string, file: string, args: readonly string[], env: NodeJS.ProcessEnv = {}): Child {
    const logFile = join(this.logDir, `${name}.log`);
    const log = createWriteStream(logFile, { flags: "w" });
    const child = spawn(file, args, {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ...env },
    });
    child.stdout?.pipe(log, { end: false });
    child.stderr?.pipe(log, { end: false });
    const exited = new Promise<number | string>((resolve) => {
      child.once("exit", (code, signal) => {
        log.end();
        resolve(code ?? signal ?? "unknown");
      });
      // A missing or non-executable file emits "error" and never "exit"; unhandled, it would crash the parent.
      child.once("error", (err) => {
        log.end();
        resolve(`spawn failed: ${err.message}`);
      });
    });
    const entryRecord: Child = { name, process: child, logFile, exited };
    this.#children.push(entryRecord);
    return entryRecord;
  }

  children(): readonly Child[] {
    return this.#children;
  }

  /** Last lines of a child's log, for error messages. */
  tail(child: Child, lines = 15): string {
    try {
      return readFileSync(child.logFile, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
    } catch {
      return "";
    }
  }

  /** Children that have not exited yet. */
  running(): Child[] {
    return this.#children.filter((c) => c.process.exitCode === null && c.process.signalCode === null);
  }

  /** SIGKILLs every running child at once (a second Ctrl-C: the user does not want to wait for draining). */
  killAll(): void {
    this.#stopping = true;
    for (const c of this.running()) c.process.kill("SIGKILL");
  }

  /** SIGTERM to every running child, SIGKILL to those still running after `graceMs`; resolves when all exited. */
  async stopAll(graceMs = 5000): Promise<void> {
    this.#stopping = true;
    const running = this.running();
    for (const c of running) c.process.kill("SIGTERM");
    const timer = setTimeout(() => {
      for (const c of running)
        if (c.process.exitCode === null && c.process.signalCode === null) c.process.kill("SIGKILL");
    }, graceMs);
    await Promise.all(running.map((c) => c.exited));
    clearTimeout(timer);
  }
}

/** Polls `check` until it resolves truthy or the deadline passes. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false>,
  timeoutMs: number,
  intervalMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${(lastError as Error).message}` : ""}`,
      );
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
