// Preloaded into the EPP under test (`node --import bench/reload/probe.mjs dist/cli.js epp …`) by
// bench/reload/run.ts. It measures, inside the EPP, how long its main thread goes without coming back to the event
// loop, two ways:
// - wall clock: perf_hooks.monitorEventLoopDelay (1 ms resolution), which on a shared, overloaded machine also
//   counts the time the thread waited for a CPU;
// - CPU time: a 1 ms timer reads the main thread's on-CPU nanoseconds (/proc/self/task/<pid>/schedstat, Linux) at
//   every tick; the largest increase between two ticks is the longest stretch of work the EPP did without letting
//   a timer (or a request) run, whatever else the machine was doing.
// It answers the bench over the IPC channel. It is bench-only: nothing in dist/ imports it, so the baseline build is
// measured the same way as the new one without changing either.
import { closeSync, openSync, readSync } from "node:fs";
import { monitorEventLoopDelay } from "node:perf_hooks";

const h = monitorEventLoopDelay({ resolution: 1 });
h.enable();

let fd;
try {
  fd = openSync(`/proc/self/task/${process.pid}/schedstat`, "r");
} catch {
  fd = undefined; // not Linux: CPU-time gaps are not measured
}
const buf = Buffer.alloc(128);
function cpuNs() {
  if (fd === undefined) return Number.NaN;
  const n = readSync(fd, buf, 0, buf.length, 0);
  return Number(buf.toString("latin1", 0, n).split(" ", 1)[0]);
}
/** CPU ms between consecutive ticks since the last reset. */
let gaps = [];
let last = cpuNs();
let lastWall = process.hrtime.bigint();
/** The largest gap since the last reset, with its wall-clock span (hrtime µs, the clock of --cpu-prof timestamps). */
let worst = { cpuMs: 0, fromUs: 0, toUs: 0 };
const ticker = setInterval(() => {
  const now = cpuNs();
  const wall = process.hrtime.bigint();
  const gap = (now - last) / 1e6;
  gaps.push(gap);
  if (gap > worst.cpuMs) worst = { cpuMs: gap, fromUs: Number(lastWall / 1000n), toUs: Number(wall / 1000n) };
  last = now;
  lastWall = wall;
  // Bounded: a forgotten reset must not grow the EPP's heap (a minute of ticks is 60k numbers).
  if (gaps.length > 600_000) gaps = gaps.slice(-300_000);
}, 1);
ticker.unref();

// The parent-death watchdog's idea (src/cli/parent-watch.ts): a bench killed with SIGKILL must not leave EPPs behind.
const parent = process.ppid;
const watchdog = setInterval(() => {
  if (process.ppid !== parent) process.kill(process.pid, "SIGTERM");
}, 500);
watchdog.unref();

function pct(sorted, p) {
  return sorted.length === 0
    ? Number.NaN
    : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

if (process.send !== undefined) {
  process.on("message", (m) => {
    if (m === null || typeof m !== "object" || typeof m.probe !== "string") return;
    if (m.probe === "reset") {
      h.reset();
      gaps = [];
      worst = { cpuMs: 0, fromUs: 0, toUs: 0 };
      last = cpuNs();
      lastWall = process.hrtime.bigint();
      process.send({ probe: "reset" });
    } else if (m.probe === "read") {
      const sorted = [...gaps].sort((a, b) => a - b);
      process.send({
        probe: "read",
        maxMs: h.max / 1e6,
        p99Ms: h.percentile(99) / 1e6,
        meanMs: h.mean / 1e6,
        cpuGapMaxMs: sorted.length === 0 ? Number.NaN : sorted[sorted.length - 1],
        cpuGapP999Ms: pct(sorted, 99.9),
        ticks: sorted.length,
        worstGap: worst,
      });
    }
  });
  // The IPC channel must not keep the EPP alive on its own: SIGTERM ends it as in production.
  process.channel?.unref();
}
process.once("exit", () => {
  if (fd !== undefined) closeSync(fd);
});
