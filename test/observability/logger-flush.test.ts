/**
 * The EPP's stdout logger batches lines (4 KiB) for throughput; at low traffic that held debug lines back for over
 * a minute and would lose them on SIGKILL. A child process logs a few lines, then idles: they must reach the pipe
 * while it is still running (the test then SIGKILLs it), never only at exit.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const LOGGER = fileURLToPath(new URL("../../src/observability/logger.ts", import.meta.url));

function runChild(flushIntervalMs: number | undefined): Promise<{ lines: string[]; killedBeforeExit: boolean }> {
  const options = flushIntervalMs === undefined ? "{}" : `{ flushIntervalMs: ${flushIntervalMs} }`;
  const code = `
    const { createLogger } = await import(${JSON.stringify(LOGGER)});
    const log = createLogger({ level: "debug", pretty: false, ...${options} });
    for (let i = 0; i < 10; i++) log.debug({ i }, "decision");
    setInterval(() => {}, 1000); // idle, like an EPP between requests
  `;
  const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", code], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => {
    out += d;
  });
  return new Promise((resolve, reject) => {
    const deadline = setTimeout(() => {
      child.kill("SIGKILL");
    }, 30_000);
    const poll = setInterval(() => {
      if (out.split("\n").filter((l) => l.includes('"decision"')).length === 10) {
        clearInterval(poll);
        clearTimeout(deadline);
        child.kill("SIGKILL");
      }
    }, 20);
    child.once("error", reject);
    child.once("close", (_code, signal) => {
      clearInterval(poll);
      clearTimeout(deadline);
      resolve({
        lines: out.split("\n").filter((l) => l.includes('"decision"')),
        killedBeforeExit: signal === "SIGKILL",
      });
    });
  });
}

describe("log flush policy", () => {
  it("writes an idle process's buffered lines out while it runs (default --log-flush-interval)", {
    timeout: 60_000,
  }, async () => {
    const r = await runChild(undefined);
    expect(r.killedBeforeExit).toBe(true);
    expect(r.lines).toHaveLength(10);
  });

  it("writes every line at once with --log-flush-interval 0", { timeout: 60_000 }, async () => {
    const r = await runChild(0);
    expect(r.lines).toHaveLength(10);
  });
});
