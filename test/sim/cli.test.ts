import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { randomAddress } from "./helpers.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
let child: ChildProcess | undefined;

afterEach(() => {
  if (child && child.exitCode === null) child.kill("SIGKILL");
  child = undefined;
});

function runCli(args: string[]): { proc: ChildProcess; stdout: () => string; exited: Promise<number | null> } {
  const proc = spawn(process.execPath, ["--import", "tsx", "src/cli.ts", "sim", ...args], {
    cwd: ROOT,
    env: { ...process.env, POD_NAME: "cli-pod" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child = proc;
  let out = "";
  proc.stdout?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  proc.stderr?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => proc.on("exit", (code) => resolve(code)));
  return { proc, stdout: () => out, exited };
}

describe("switchyard sim CLI", () => {
  it("prints every flag with its default on --help", async () => {
    const { stdout, exited } = runCli(["--help"]);
    expect(await exited).toBe(0);
    expect(stdout()).toContain("--max-num-seqs <int>");
    expect(stdout()).toContain("(default 5)");
    expect(stdout()).toContain("--inter-token-latency <duration>");
    expect(stdout()).toContain("(default 10ms)");
  });

  it("logs one line when listening, serves, and exits 0 on SIGTERM", async () => {
    const host = randomAddress();
    const { proc, stdout, exited } = runCli(["--model", "cli-model", "--host", host, "--port", "0", "--seed", "1"]);
    let url = "";
    for (let i = 0; i < 600 && url === ""; i++) {
      const m = /simulator listening on (http:\/\/[0-9.]+:\d+)/.exec(stdout());
      if (m) url = m[1]!;
      else await new Promise((r) => setTimeout(r, 25));
    }
    expect(url).toContain(host);
    const res = await fetch(`${url}/v1/completions`, {
      method: "POST",
      body: JSON.stringify({ model: "cli-model", prompt: "hi", max_tokens: 2 }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-inference-pod")).toBe("cli-pod");
    await res.text();
    proc.kill("SIGTERM");
    expect(await exited).toBe(0);
  });

  it("exits 2 with a clear message on a bad flag", async () => {
    const { stdout, exited } = runCli(["--model", "m", "--max-num-seqs", "zero"]);
    expect(await exited).toBe(2);
    expect(stdout()).toContain("--max-num-seqs");
  });
});
