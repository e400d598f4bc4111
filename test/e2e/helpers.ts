/**
 * Shared pieces of the end-to-end tests: real `switchyard` child processes (through the same Supervisor `switchyard
 * up` uses), their JSON log lines, and the "nothing is left running" checks.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { type Child, type Supervisor, waitFor } from "../../src/local/children.js";
import { POOL_NAMESPACE, type SimPod, simArgs } from "../../src/local/stack.js";

export const DIST_CLI = new URL("../../dist/cli.js", import.meta.url);

/** The e2e tests run the compiled CLI, as `switchyard up` does; a missing build is a setup error, not a test failure. */
export function requireBuild(): void {
  if (!existsSync(DIST_CLI)) throw new Error("dist/cli.js is missing: run `npm run build` before the e2e tests");
}

/** A random port in the dynamic range for "same port on different addresses" (pods), retried on collision. */
export function randomPort(): number {
  return 20_000 + Math.floor(Math.random() * 40_000);
}

/** Parsed JSON log lines of a child (pino writes one object per line). */
export function logRecords(child: Child): Record<string, unknown>[] {
  let text: string;
  try {
    text = readFileSync(child.logFile, "utf8");
  } catch {
    return [];
  }
  const out: Record<string, unknown>[] = [];
  for (const line of text.split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // A line still being written; the next poll sees it whole.
    }
  }
  return out;
}

/** Waits for the child's log line with this `msg`; fails fast (with the log tail) when the child exits first. */
export async function waitForLog(
  sup: Supervisor,
  child: Child,
  msg: string | RegExp,
  timeoutMs = 20_000,
): Promise<Record<string, unknown>> {
  let exited: number | string | undefined;
  void child.exited.then((code) => {
    exited = code;
  });
  return waitFor(
    `${child.name} to log "${msg}"`,
    async () => {
      const hit = logRecords(child).find((r) =>
        typeof msg === "string" ? r.msg === msg : typeof r.msg === "string" && msg.test(r.msg),
      );
      if (hit) return hit;
      if (exited !== undefined) throw new ChildExited(child, exited, sup.tail(child));
      return undefined;
    },
    timeoutMs,
    50,
  ).catch((err: unknown) => {
    // waitFor wraps the last error in its timeout message; surface an early exit as itself.
    if (exited !== undefined) throw new ChildExited(child, exited, sup.tail(child));
    throw err;
  });
}

export class ChildExited extends Error {
  override readonly name = "ChildExited";
  constructor(
    readonly child: Child,
    readonly code: number | string,
    readonly tail: string,
  ) {
    super(`${child.name} exited (${code}) before it was ready:\n${tail}`);
  }
}

/**
 * Starts one `switchyard sim` child per pod, all on one port (like a pod's targetPort), picking a random port and
 * retrying the whole fleet when any address:port is taken by another test file.
 */
export async function startSims(
  sup: Supervisor,
  makePods: (port: number) => SimPod[],
  extraArgs: readonly string[] = [],
  attempts = 6,
): Promise<{ pods: SimPod[]; children: Child[] }> {
  let lastError: unknown;
  for (let attempt = 0; attempt < attempts; attempt++) {
    const pods = makePods(randomPort());
    const children = pods.map((pod) =>
      sup.start(`${pod.name}-try${attempt}`, ["sim", ...simArgs(pod, extraArgs)], {
        POD_NAME: pod.name,
        POD_NAMESPACE: POOL_NAMESPACE,
      }),
    );
    try {
      await Promise.all(children.map((c) => waitForLog(sup, c, /^simulator listening/)));
      return { pods, children };
    } catch (err) {
      lastError = err;
      for (const c of children) if (c.process.exitCode === null && c.process.signalCode === null) c.process.kill();
      await Promise.all(children.map((c) => c.exited));
      if (!(err instanceof ChildExited) || !/EADDRINUSE/.test(err.tail)) throw err;
    }
  }
  throw lastError;
}

/** True while a process with this pid exists (signal 0 only checks; ESRCH means gone). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== "ESRCH";
  }
}

/** Can we listen on host:port right now? (A leftover process would hold it: EADDRINUSE.) */
export function portFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** Live children of `pid`, from /proc (Linux): the pids `switchyard up` spawned. */
export function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // Field 4 is the ppid; the command name (field 2) may hold spaces, so count from the closing parenthesis.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[1]) === pid) out.push(Number(entry));
    } catch {
      // The process exited while we listed /proc.
    }
  }
  return out;
}

export interface Reply {
  readonly status: number;
  readonly headers: Headers;
  readonly text: string;
}

/** POSTs JSON and reads the whole answer. */
export async function post(url: string, body: unknown, signal?: AbortSignal): Promise<Reply> {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    signal: signal ?? AbortSignal.timeout(20_000),
  });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

/** The `data:` payloads of an SSE body, in order. */
export function sseData(text: string): string[] {
  return text
    .split("\n")
    .filter((l) => l.startsWith("data: "))
    .map((l) => l.slice("data: ".length));
}

/** A prompt of about `tokens` tokens (the simulator counts 4 characters per token) that shares no prefix block. */
export function uniquePrompt(tokens: number, tag: string): string {
  const head = `${tag} ${Math.random().toString(36).slice(2)} `;
  return (head + "lorem ipsum dolor sit amet ".repeat(Math.ceil((tokens * 4) / 27))).slice(0, tokens * 4);
}
