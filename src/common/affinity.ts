/**
 * CPU affinity for the EPP's threads (`--pin-threads`; docs/design/model-servers.md §9, "A core for the request
 * path"). Linux only, best effort.
 *
 * Why: at 1,000 pods the scrape worker keeps most of a core busy. On a small box (2 cores in the measurements),
 * neither running it on another thread nor lowering its priority stopped it from delaying requests: the main thread
 * did no scrape work at all (records not even posted) and request p99 still rose by more than 1 ms. With the
 * request thread alone on one CPU and every other thread on the rest, p99 at 1,000 pods came within 0.6 ms of
 * 8 pods (bench/README.md, "A core for the request path").
 *
 * Node has no affinity API, so this runs util-linux's `taskset -pc <cpus> <tid>` once per thread: at start-up, never
 * on the request path. A thread inherits the affinity of the thread that creates it, so threads made after the
 * sweep (a restarted scrape worker) pin themselves with the plan they are given.
 */
import { execFile, execFileSync } from "node:child_process";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { stat } from "node:fs/promises";

/** The external command (util-linux). */
export const TASKSET = "taskset";
/** What to install when it is missing, for the one log line that says so. */
export const TASKSET_INSTALL_HINT = "install util-linux (apt-get install util-linux; apk add util-linux)";
/** Highest CPU number accepted in a CPU list; a longer list is refused rather than expanded. */
const MAX_CPU = 4095;

/** Which CPUs the request thread and every other thread run on. */
export interface ThreadPlan {
  readonly requestCpu: number;
  readonly otherCpus: readonly number[];
}

/** Parses a kernel CPU list ("0-3,6,8-9") into sorted, distinct CPU numbers; undefined if it is not one. */
export function parseCpuList(text: string): number[] | undefined {
  const trimmed = text.trim();
  if (trimmed === "") return undefined;
  const out = new Set<number>();
  for (const part of trimmed.split(",")) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (m === null) return undefined;
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    if (hi < lo || hi > MAX_CPU) return undefined;
    for (let c = lo; c <= hi; c++) out.add(c);
  }
  return [...out].sort((a, b) => a - b);
}

/** The inverse of parseCpuList, with runs written as ranges: [0,1,2,5] → "0-2,5". */
export function formatCpuList(cpus: readonly number[]): string {
  const sorted = [...new Set(cpus)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    parts.push(i === j ? String(sorted[i]) : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(",");
}

/** The CPUs this process may run on (`Cpus_allowed_list` of /proc/self/status), or undefined off Linux. */
export function allowedCpus(statusText?: string): number[] | undefined {
  let text = statusText;
  if (text === undefined) {
    try {
      text = readFileSync("/proc/self/status", "utf8");
    } catch {
      return undefined;
    }
  }
  const m = /^Cpus_allowed_list:\s*(\S+)\s*$/m.exec(text);
  return m === null ? undefined : parseCpuList(m[1]!);
}

/**
 * The request thread gets the first allowed CPU, every other thread the rest. A string says why there is no plan.
 */
export function planThreads(allowed: readonly number[] | undefined): ThreadPlan | string {
  if (allowed === undefined) return "the allowed CPUs are unknown (not Linux, or /proc is not mounted)";
  if (allowed.length < 2)
    return `the process may run on ${allowed.length === 0 ? "no CPU" : `CPU ${allowed[0]} only`}: nothing to separate`;
  return { requestCpu: allowed[0]!, otherCpus: allowed.slice(1) };
}

/** This thread's kernel id (Linux), or undefined. */
export function threadId(): number | undefined {
  try {
    const tid = Number(readlinkSync("/proc/thread-self").split("/").pop());
    return Number.isInteger(tid) && tid > 0 ? tid : undefined;
  } catch {
    return undefined;
  }
}

/** The kernel ids of this process's threads. */
export function processThreadIds(): number[] {
  try {
    return readdirSync("/proc/self/task")
      .map(Number)
      .filter((t) => Number.isInteger(t) && t > 0);
  } catch {
    return [];
  }
}

/** The CPUs a thread may run on, read back from /proc (for checks and tests). */
export function threadCpus(pid: number, tid: number): number[] | undefined {
  try {
    return allowedCpus(readFileSync(`/proc/${pid}/task/${tid}/status`, "utf8"));
  } catch {
    return undefined;
  }
}

function tasksetArgs(tid: number, cpus: readonly number[]): string[] {
  return ["-pc", formatCpuList(cpus), String(tid)];
}

/** Why taskset failed, in one line: missing, or its own message. */
function describe(err: unknown): string {
  const e = err as { code?: string; stderr?: Buffer | string; message?: string };
  if (e.code === "ENOENT") return `${TASKSET} not found: ${TASKSET_INSTALL_HINT}`;
  const stderr = e.stderr === undefined ? "" : String(e.stderr).trim();
  return stderr !== "" ? stderr : (e.message ?? String(err));
}

/** Pins one thread, synchronously (a worker's own thread at its start). Returns an error line, or undefined. */
export function pinThreadSync(tid: number, cpus: readonly number[]): string | undefined {
  try {
    execFileSync(TASKSET, tasksetArgs(tid, cpus), { stdio: ["ignore", "ignore", "pipe"], timeout: 5000 });
    return undefined;
  } catch (err) {
    return describe(err);
  }
}

function pinThread(tid: number, cpus: readonly number[]): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile(TASKSET, tasksetArgs(tid, cpus), { timeout: 5000 }, (err) => resolve(err ? describe(err) : undefined));
  });
}

export interface PinReport {
  readonly requestTid: number;
  /** Threads pinned to the other CPUs. */
  readonly others: number;
  /** Threads that could not be pinned (gone since listed, refused), with why. */
  readonly failures: readonly { readonly tid: number; readonly error: string }[];
}

/**
 * Pins the calling thread (the request path's) to `plan.requestCpu` and every other thread of the process to
 * `plan.otherCpus`. libuv's thread pool is started first, so its threads exist and go to the other CPUs instead of
 * inheriting the request CPU when first used later.
 */
export async function pinThreads(plan: ThreadPlan): Promise<PinReport> {
  const requestTid = threadId();
  if (requestTid === undefined) throw new Error("this thread's id is unknown (not Linux, or /proc is not mounted)");
  await stat(process.execPath).catch(() => undefined);
  const others = processThreadIds().filter((t) => t !== requestTid);
  // The other threads first: should the request thread's own pin then fail, they are at least off its CPU.
  const results = await Promise.all(others.map((t) => pinThread(t, plan.otherCpus)));
  const failures: { tid: number; error: string }[] = [];
  results.forEach((error, i) => {
    // A thread that ended since it was listed is not a failure.
    if (error !== undefined && threadAlive(others[i]!)) failures.push({ tid: others[i]!, error });
  });
  const own = await pinThread(requestTid, [plan.requestCpu]);
  if (own !== undefined) throw new Error(`the request thread could not be pinned: ${own}`);
  return { requestTid, others: others.length - failures.length, failures };
}

/** Whether the thread still exists. */
function threadAlive(tid: number): boolean {
  try {
    readlinkSync(`/proc/self/task/${tid}/exe`);
    return true;
  } catch {
    return false;
  }
}
