/**
 * `switchyard bench` (what `npm run bench` runs): the routing benchmark — switchyard vs round-robin vs
 * least-request on a simulated fleet, open-loop Poisson load swept across the measured capacity, modes interleaved.
 * Also hosts the benchmark's two worker roles, started by the benchmark itself as child processes:
 * `switchyard bench __sims <file>` (several simulators in one process) and `switchyard bench __load <job>` (the
 * load generator).
 */
import { mkdirSync, rmSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { H100_SCALED } from "../bench/fleet.js";
import { type LoadJob, runLoad } from "../bench/loadgen.js";
import { type BenchResults, checkTargets, writeReport } from "../bench/report.js";
import { type Backend, BenchRunner, MODE_ALIASES, type ModeId, PEER_MODES, type PeerTool } from "../bench/run.js";
import { runSimHost } from "../bench/sim-host.js";
import { DEFAULT_WORKLOAD } from "../bench/workload.js";
import { ConfigError } from "../common/errors.js";
import { checks, formatHelp, parseFlags } from "../common/flags.js";
import { findTool, SETUP_TOOLS_COMMAND } from "../common/tools.js";

const BACKENDS: readonly Backend[] = ["switchyard-sim", "llm-d-inference-sim"];

const FLAGS = {
  preset: {
    kind: "string",
    default: "",
    help: "peers = the peer-router comparison (bench/README.md): real Envoy, modes rr,lr,sy,gie,vca,vp2,sca, 85 % load, 3 reps, 2000 requests per stage, fleet 5× faster (2× with --backend llm-d-inference-sim, which writes one SSE event per token) (EPP scrapes scaled alike), 8 tokens per write (explicit flags still win)",
    check: (v: string) => (v === "" || v === "peers" ? undefined : "must be peers or empty"),
  },
  quick: {
    kind: "bool",
    default: false,
    help: "a ≤ 3 minute run: 4 pods, loads 50,85,110 %, 10 s stages, 3 s drain, 8 s capacity probe (explicit flags still win)",
  },
  backend: {
    kind: "string",
    default: "switchyard-sim",
    help: `model servers: ${BACKENDS.join(" or ")}`,
    check: (v: string) => (BACKENDS.includes(v as Backend) ? undefined : `must be ${BACKENDS.join(" or ")}`),
  },
  gateway: {
    kind: "string",
    default: "dev",
    help: "front door for every mode: dev (switchyard's gateway) or envoy (real Envoy: the shipped bootstrap for EPP modes, Envoy's own round-robin / least-request for rr / lr)",
    check: (v: string) => (v === "dev" || v === "envoy" ? undefined : "must be dev or envoy"),
  },
  "llmd-bin": {
    kind: "string",
    default: "",
    help: "llm-d-inference-sim executable (empty = search PATH, $GOPATH/bin, ~/go/bin)",
  },
  sims: {
    kind: "int",
    default: 8,
    help: "pods in the fleet (--quick: 4)",
    check: (v: number) => (v >= 1 && v <= 250 ? undefined : "must be 1..250"),
  },
  "sim-address-prefix": {
    kind: "string",
    default: "127.0.1",
    help: "simulators listen on <prefix>.1 … <prefix>.N (switchyard-sim backend)",
  },
  "sim-port": {
    kind: "int",
    default: 8000,
    help: "port every simulator listens on; llm-d-inference-sim pods use <port>…<port>+N−1 on 127.0.0.1",
    check: checks.port,
  },
  "sims-per-process": {
    kind: "int",
    default: 4,
    help: "simulators hosted per child process (switchyard-sim backend)",
    check: checks.positive,
  },
  modes: {
    kind: "list",
    default: ["rr", "lr", "sy"],
    help: "modes, interleaved in this order at every step: rr (round-robin), lr (least-request), sy (switchyard EPP, default profile), syr (switchyard, deploy/examples/profiles/recommended.yaml), gie (EPP with GIE v1.5's default profile), vca / vp2 (vllm-router cache_aware / power_of_two), sca (sglang-router cache_aware); the peers need `npm run setup:peers`",
  },
  "time-scale": {
    kind: "float",
    default: 1,
    help: "multiplier on every simulated latency: 0.1 = the fleet 10× faster, so a stage of bounded length holds 10× the requests (slowdowns are scale-free; latencies stay in wall ms)",
    check: checks.positive,
  },
  "stream-batch-tokens": {
    kind: "int",
    default: 1,
    help: "simulator tokens per socket write (still one SSE event per token; the first token is never held back)",
    check: checks.positive,
  },
  "min-requests": {
    kind: "int",
    default: 0,
    help: "send exactly this many requests in every measured stage, stretching it as needed (0 = --duration decides); 2000 puts ≥ 200 requests behind each p90",
    check: checks.nonNegative,
  },
  loads: {
    kind: "list",
    default: ["30", "50", "70", "85", "100", "110"],
    help: "offered load steps in % of the measured capacity (--quick: 50,85,110)",
  },
  steps: {
    kind: "int",
    default: 0,
    help: "use only this many load steps, evenly spaced over --loads (0 = all)",
    check: checks.nonNegative,
  },
  reps: { kind: "int", default: 1, help: "repetitions of every (mode, load) stage", check: checks.positive },
  duration: {
    kind: "duration",
    default: 40_000,
    help: "how long each stage sends requests (--quick: 10s)",
    check: checks.positive,
  },
  drain: {
    kind: "duration",
    default: 10_000,
    help: "after a stage, how long in-flight requests may finish before they are aborted (--quick: 3s)",
    check: checks.nonNegative,
  },
  "max-requests": {
    kind: "int",
    default: 5000,
    help: "upper bound on requests per stage",
    check: checks.positive,
  },
  capacity: {
    kind: "float",
    default: 0,
    help: "fleet capacity in req/s; 0 = measure it with a closed-loop probe",
    check: checks.nonNegative,
  },
  "capacity-duration": {
    kind: "duration",
    default: 25_000,
    help: "length of the closed-loop capacity probe (--quick: 8s)",
    check: checks.positive,
  },
  warmup: {
    kind: "duration",
    default: 3000,
    help: "discarded warm-up stage per mode at 30 % load (0 = none; --quick: 2s)",
    check: checks.nonNegative,
  },
  seed: { kind: "int", default: DEFAULT_WORKLOAD.seed, help: "workload seed (same seed = same trace)" },
  "epp-config": {
    kind: "string",
    default: "",
    help: "EndpointPickerConfig file for the sy mode (empty = the EPP's default profile)",
  },
  "epp-scrape-interval": {
    kind: "duration",
    default: 0,
    help: 'the EPPs\' --refresh-metrics-interval (idle interval 10×) in wall time; 0 = 50 ms × --time-scale, as often in simulated time as at 1× (bench/README.md, "Against the peer routers")',
    check: checks.nonNegative,
  },
  out: { kind: "string", default: "", help: "result directory (empty = bench/results/<timestamp>)" },
  "work-dir": {
    kind: "string",
    default: "",
    help: "scratch directory for resources, child logs and raw stage data (empty = a new temp dir)",
  },
  "report-only": {
    kind: "string",
    default: "",
    help: "re-render summary.md and the charts of an existing result directory from its results.json, then exit",
  },
  "keep-work-dir": {
    kind: "bool",
    default: false,
    help: "keep the scratch directory after a successful run (it is always kept after a failure)",
  },
} as const;

const SUMMARY =
  "Routing benchmark: switchyard vs round-robin vs least-request on a simulated H100-like fleet. Measures capacity, then sweeps open-loop Poisson load with the modes interleaved, and writes results.json, summary.md and SVG charts.";

const QUICK = {
  sims: 4,
  loads: ["50", "85", "110"],
  duration: 10_000,
  drain: 3000,
  "capacity-duration": 8000,
  warmup: 2000,
} as const;

/** `--preset peers`: the peer-router comparison of issue 15 in one command (bench/README.md, "Peer routers"). */
const PEERS_PRESET = {
  gateway: "envoy",
  modes: ["rr", "lr", "sy", "gie", "vca", "vp2", "sca"],
  loads: ["85"],
  reps: 3,
  "time-scale": 0.2,
  "stream-batch-tokens": 8,
  "min-requests": 2000,
  drain: 5000,
} as const;

/**
 * `--preset peers --backend llm-d-inference-sim`: the fleet 2× faster, not 5×. llm-d-inference-sim writes one SSE
 * event per token and cannot batch them, and every response chunk crosses Envoy's ext_proc filter and the EPP; at 5×
 * (≈ 11,000 chunks a second) that alone saturated the 2-core bench box and starved every EPP mode, which Envoy's own
 * least-request does not pay (bench/results/peers-llmd-diagnosis-2026-12-07/session8-cpu.md).
 */
const PEERS_LLMD_TIME_SCALE = 0.5;

/** N values evenly spaced over `list` (first and last included). */
export function pickSteps<T>(list: readonly T[], n: number): T[] {
  if (n <= 0 || n >= list.length) return [...list];
  if (n === 1) return [list[list.length - 1]!];
  return Array.from({ length: n }, (_, i) => list[Math.round((i * (list.length - 1)) / (n - 1))]!);
}

function timestamp(): string {
  return new Date().toISOString().replace(/[:]/g, "-").replace(/\..+$/, "Z");
}

export async function run(argv: readonly string[]): Promise<number | undefined> {
  if (argv[0] === "__sims") {
    if (argv[1] === undefined) throw new ConfigError("__sims needs a file");
    return runSimHost(argv[1]);
  }
  if (argv[0] === "__load") {
    if (argv[1] === undefined) throw new ConfigError("__load needs a job file");
    const job = JSON.parse(await readFile(argv[1], "utf8")) as LoadJob;
    await runLoad(job, (p) => process.stdout.write(`PROGRESS ${JSON.stringify(p)}\n`));
    return 0;
  }
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(formatHelp("bench", SUMMARY, FLAGS));
    return 0;
  }
  const f = parseFlags(FLAGS, argv);
  if (f["report-only"] !== "") {
    const dir = resolve(f["report-only"]);
    const results = JSON.parse(await readFile(join(dir, "results.json"), "utf8")) as BenchResults;
    const rerendered: BenchResults = { ...results, targets: checkTargets(results.aggregate, results.loads_pct) };
    for (const file of writeReport(dir, rerendered)) process.stdout.write(`wrote ${file}\n`);
    return 0;
  }
  const q = <K extends keyof typeof QUICK>(k: K, v: (typeof FLAGS)[K]["default"]) =>
    f.quick && !f.$set.has(k) ? QUICK[k] : v;
  const preset = (f.preset as string) === "peers";
  const p = <K extends keyof typeof PEERS_PRESET>(k: K, v: unknown): unknown =>
    preset && !f.$set.has(k) ? PEERS_PRESET[k] : v;

  const modes: ModeId[] = [];
  for (const m of p("modes", f.modes) as readonly string[]) {
    const id = MODE_ALIASES[m];
    if (id === undefined)
      throw new ConfigError(`unknown mode "${m}" (use rr, lr, sy, syr, gie, vca, vp2, sca)`, undefined, "--modes");
    if (!modes.includes(id)) modes.push(id);
  }
  if (modes.length === 0) throw new ConfigError("needs at least one mode", undefined, "--modes");
  const loads = (p("loads", q("loads", f.loads)) as readonly string[]).map((s) => {
    const n = Number(s);
    if (!Number.isFinite(n) || n <= 0 || n > 1000)
      throw new ConfigError(`"${s}" is not a load percentage in (0, 1000]`, undefined, "--loads");
    return n;
  });
  const sims = q("sims", f.sims) as number;
  const backend = f.backend as Backend;
  if (backend === "llm-d-inference-sim" && sims > 8)
    throw new ConfigError(
      "llm-d-inference-sim pods share 127.0.0.1 on consecutive ports, one InferencePool targetPort each, and GIE allows at most 8 target ports",
      undefined,
      "--sims",
    );
  const stamp = timestamp();
  const outDir = resolve(f.out !== "" ? f.out : join("bench", "results", stamp));
  const workDir = resolve(f["work-dir"] !== "" ? f["work-dir"] : join(tmpdir(), `switchyard-bench-${stamp}`));
  mkdirSync(workDir, { recursive: true });

  const gatewayKind = p("gateway", f.gateway) as string;
  const envoyBin = gatewayKind === "envoy" ? findTool("envoy") : undefined;
  if (gatewayKind === "envoy" && envoyBin === undefined) {
    throw new ConfigError(
      `Envoy not found; install it with \`${SETUP_TOOLS_COMMAND} -- envoy\``,
      undefined,
      "--gateway",
    );
  }
  const peerBins: Partial<Record<PeerTool, string>> = {};
  for (const mode of modes) {
    const tool = PEER_MODES[mode]?.tool;
    if (tool === undefined || peerBins[tool] !== undefined) continue;
    const bin = findTool(tool);
    if (bin === undefined)
      throw new ConfigError(
        `mode ${mode} needs ${tool}; install it with \`npm run setup:peers\``,
        undefined,
        "--modes",
      );
    peerBins[tool] = bin;
  }
  const runner = new BenchRunner({
    backend,
    envoyBin,
    llmdBin: f["llmd-bin"],
    sims,
    addressPrefix: f["sim-address-prefix"],
    simPort: f["sim-port"],
    simsPerProcess: f["sims-per-process"],
    modes,
    loads: pickSteps(loads, f.steps),
    reps: p("reps", f.reps) as number,
    durationMs: q("duration", f.duration) as number,
    drainMs: p("drain", q("drain", f.drain)) as number,
    timeScale:
      preset && backend === "llm-d-inference-sim" && !f.$set.has("time-scale")
        ? PEERS_LLMD_TIME_SCALE
        : (p("time-scale", f["time-scale"]) as number),
    streamBatchTokens: p("stream-batch-tokens", f["stream-batch-tokens"]) as number,
    minRequests: p("min-requests", f["min-requests"]) as number,
    peerBins,
    maxRequests: f["max-requests"],
    capacityDurationMs: q("capacity-duration", f["capacity-duration"]) as number,
    capacity: f.capacity,
    warmupMs: q("warmup", f.warmup) as number,
    workload: { ...DEFAULT_WORKLOAD, seed: f.seed },
    params: H100_SCALED,
    eppConfig: f["epp-config"] === "" ? "" : resolve(f["epp-config"]),
    eppScrapeIntervalMs: f["epp-scrape-interval"],
    outDir,
    workDir,
    command: `switchyard bench ${argv.join(" ")}`.trim(),
    log: (line) => process.stdout.write(`${line}\n`),
  });

  let interrupted = false;
  const onSignal = () => {
    if (interrupted) return;
    interrupted = true;
    process.stdout.write("\ninterrupted: stopping every child process…\n");
    void runner.stop().then(() => process.exit(130));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    await runner.run();
  } catch (err) {
    await runner.stop();
    if (interrupted) return 130;
    process.stderr.write(
      `switchyard bench: ${(err as Error).message}\n(child logs kept in ${join(workDir, "logs")})\n`,
    );
    return 1;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
  await runner.stop();
  if (!f["keep-work-dir"] && f["work-dir"] === "") rmSync(workDir, { recursive: true, force: true });
  return 0;
}
