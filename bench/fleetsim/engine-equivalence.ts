/**
 * The simulator's engine under the real clock (timers, as `switchyard sim` runs it) and under the fleet simulation's
 * virtual clock, fed the same requests at the same arrival times: how far apart are the TTFTs?
 * docs/design/benchmarks.md §5.6. Usage: npx tsx bench/fleetsim/engine-equivalence.ts [requests] [rate req/s]
 */
import { H100_SCALED } from "../../src/bench/fleet.js";
import { quantile } from "../../src/bench/stats.js";
import { DEFAULT_WORKLOAD } from "../../src/bench/workload.js";
import { EventQueue } from "../../src/fleetsim/clock.js";
import { VirtualPod } from "../../src/fleetsim/pods.js";
import { prepareTrace } from "../../src/fleetsim/run.js";
import { fleet } from "../../src/local/stack.js";
import { Engine, type EngineRequest, REAL_CLOCK } from "../../src/sim/engine.js";

const n = Number(process.argv[2] ?? 120);
const rate = Number(process.argv[3] ?? 0.6);
const [spec] = fleet({ count: 1, addressPrefix: "10.0.0", port: 8000, loras: DEFAULT_WORKLOAD.loras, loraPods: 1 });
const trace = prepareTrace({ ...DEFAULT_WORKLOAD, seed: 7 }, n, H100_SCALED);
const arrivals: number[] = [];
let t = 0;
const reqs: EngineRequest[] = [];
for (let i = 0; i < n; i++) {
  t += (trace.get(i).gap * 1000) / rate;
  arrivals.push(t);
  reqs.push(trace.get(i).engine!);
}

/** Mean inter-token latency each engine actually produced (ms): real-clock timers that fire late show here. */
const itlMs: Record<string, number> = {};

function virtualTtfts(): number[] {
  const q = new EventQueue();
  const pod = new VirtualPod(spec!, H100_SCALED, q, 1);
  const out = new Array<number>(n).fill(Number.NaN);
  for (let i = 0; i < n; i++)
    q.at(arrivals[i]!, () =>
      pod.engine.submit(reqs[i]!, {
        onToken(s) {
          if (s.generated === 1) out[i] = q.now - arrivals[i]!;
        },
        onFinish() {},
      }),
    );
  q.run();
  itlMs.virtual = (1000 * pod.engine.stats.itl.sum) / pod.engine.stats.itl.count;
  return out;
}

async function realTtfts(): Promise<number[]> {
  const virtual = new VirtualPod(spec!, H100_SCALED, new EventQueue(), 1);
  const engine = new Engine(virtual.engine.options, REAL_CLOCK);
  const out = new Array<number>(n).fill(Number.NaN);
  const t0 = performance.now();
  let done = 0;
  // The engine's timers are unref'd (a listening server keeps `switchyard sim` alive); keep this process alive.
  const keepAlive = setInterval(() => {}, 1000);
  await new Promise<void>((resolve) => {
    for (let i = 0; i < n; i++)
      setTimeout(
        () => {
          const sent = performance.now();
          engine.submit(reqs[i]!, {
            onToken(s) {
              if (s.generated === 1) out[i] = performance.now() - sent;
            },
            onFinish() {
              if (++done === n) resolve();
            },
          });
        },
        arrivals[i]! - (performance.now() - t0),
      );
  });
  clearInterval(keepAlive);
  itlMs.real = (1000 * engine.stats.itl.sum) / engine.stats.itl.count;
  engine.close();
  return out;
}

const v = virtualTtfts();
const r = await realTtfts();
const sorted = (a: number[]) => [...a].sort((x, y) => x - y);
const pct = (a: number[]) => ["0.5", "0.9", "0.99"].map((q) => quantile(sorted(a), Number(q)).toFixed(0)).join(" / ");
const diffs = v.map((x, i) => Math.abs(x - r[i]!));
console.log(`${n} requests at ${rate} req/s on one 1x LoRA pod (${(arrivals[n - 1]! / 1000).toFixed(0)} s)`);
console.log(`mean ITL ms  real clock ${itlMs.real!.toFixed(2)}   virtual clock ${itlMs.virtual!.toFixed(2)}`);
console.log(`TTFT p50/p90/p99 ms  real clock ${pct(r)}   virtual clock ${pct(v)}`);
console.log(
  `|real − virtual| per request, ms: p50 ${quantile(sorted(diffs), 0.5).toFixed(1)}  p90 ${quantile(sorted(diffs), 0.9).toFixed(1)}  max ${Math.max(...diffs).toFixed(1)}`,
);
