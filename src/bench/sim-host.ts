/**
 * A process hosting several simulators (`switchyard bench __sims <file>`): each simulator is one engine timer and
 * one listener, so four share a core easily, and the fleet costs two processes instead of eight. The parent learns
 * the host is up from a single READY line; SIGTERM closes every simulator.
 */
import { readFileSync } from "node:fs";
import type { SimulatorOptions } from "../sim/options.js";
import { type Simulator, startSimulator } from "../sim/server.js";

export const READY_LINE = "SWITCHYARD_SIMS_READY";

export interface SimHostFile {
  readonly sims: readonly SimulatorOptions[];
}

export async function runSimHost(file: string): Promise<number | undefined> {
  const spec = JSON.parse(readFileSync(file, "utf8")) as SimHostFile;
  if (!Array.isArray(spec.sims) || spec.sims.length === 0) {
    process.stderr.write(`sim host: ${file} lists no simulators\n`);
    return 2;
  }
  const running: Simulator[] = [];
  const closeAll = async () => {
    await Promise.allSettled(running.map((s) => s.close()));
  };
  try {
    for (const o of spec.sims) running.push(await startSimulator(o));
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    process.stderr.write(`sim host: cannot start a simulator: ${e.code ?? ""} ${e.message}\n`);
    await closeAll();
    return e.code === "EADDRINUSE" ? 98 : 1;
  }
  process.stdout.write(`${READY_LINE} ${running.map((s) => s.url).join(" ")}\n`);
  const stop = () => {
    void closeAll().then(() => process.exit(0));
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  return undefined;
}
