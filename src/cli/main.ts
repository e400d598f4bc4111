/**
 * `switchyard <command>`: each subcommand lives in its own module and is loaded on demand, so `switchyard sim`
 * does not pay for gRPC or the Kubernetes client.
 */
import { ConfigError } from "../common/errors.js";

/** A subcommand: parses its own argv, runs, resolves to an exit code (undefined = keep running until signalled). */
export type Command = (argv: readonly string[]) => Promise<number | undefined>;

interface CommandEntry {
  readonly summary: string;
  readonly load: () => Promise<{ run: Command }>;
}

const COMMANDS: Readonly<Record<string, CommandEntry>> = {
  epp: { summary: "run the endpoint picker (Envoy ext_proc server)", load: () => import("./epp.js") },
  sim: { summary: "run a vLLM-compatible model-server simulator", load: () => import("./sim.js") },
  gateway: { summary: "run the Envoy-faithful dev gateway (HTTP front door)", load: () => import("./gateway.js") },
  envoy: {
    summary: "run real Envoy in front of an EPP with the shipped bootstrap (deploy/envoy)",
    load: () => import("./envoy.js"),
  },
  up: { summary: "start the whole local stack: simulators, EPP and gateway", load: () => import("./up.js") },
  top: { summary: "live view of a running EPP's endpoints", load: () => import("./top.js") },
  bench: { summary: "routing benchmark: switchyard vs round-robin vs least-request", load: () => import("./bench.js") },
  fleetsim: {
    summary: "virtual-time fleet simulation: real scheduler over simulated pods, for sweeps",
    load: () => import("./fleetsim.js"),
  },
};

export function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  const rows = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return `Usage: switchyard <command> [flags]\n\nCommands:\n${rows.join("\n")}\n\nRun 'switchyard <command> --help' for its flags.\n`;
}

export async function main(argv: readonly string[]): Promise<number | undefined> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(usage());
    return name === undefined ? 2 : 0;
  }
  const entry = COMMANDS[name];
  if (!entry) {
    process.stderr.write(`switchyard: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  const { run } = await entry.load();
  try {
    return await run(rest);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`switchyard ${name}: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
}
