/** `switchyard fleetsim`: flags to runs to the table, and the errors a user can make. */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { run } from "../../src/cli/fleetsim.js";

afterEach(() => {
  vi.restoreAllMocks();
});

function capture(): () => string {
  let text = "";
  vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    text += String(chunk);
    return true;
  });
  return () => text;
}

describe("switchyard fleetsim", () => {
  it("runs every mode at every load and prints one row each, with ratios paired to least-request", async () => {
    const out = capture();
    const dir = mkdtempSync(join(tmpdir(), "fleetsim-cli-"));
    const csv = join(dir, "records.csv");
    const code = await run([
      "--records",
      csv,
      "--modes",
      "lr,syr",
      "--loads",
      "50,85",
      "--seeds",
      "4",
      "--requests",
      "120",
      "--pods",
      "4",
      "--capacity",
      "2.4",
    ]);
    expect(code).toBe(0);
    const rows = out()
      .split("\n")
      .filter((l) => /^\| \d+%/.test(l))
      .map((l) => l.split("|").map((c) => c.trim()));
    expect(rows.map((r) => `${r[1]} ${r[2]}`)).toEqual(["50% lr", "50% syr", "85% lr", "85% syr"]);
    // lr against itself is exactly 1; syr's ratio is a number.
    expect(rows[0]![12]).toBe("1.00");
    expect(Number(rows[1]![12])).toBeGreaterThan(0);
    // Four pods' shares, summing to ~100 %.
    const shares = rows[1]![14]!.split("/").map(Number);
    expect(shares).toHaveLength(4);
    expect(shares.reduce((a, b) => a + b, 0)).toBeGreaterThan(97);
    // Every request of every run, with its slowdown = TTFT ÷ TTFT alone.
    const lines = readFileSync(csv, "utf8").trim().split("\n");
    rmSync(dir, { recursive: true });
    const head = lines[0]!.split(",");
    expect(lines).toHaveLength(1 + 4 * 120);
    const served = lines
      .slice(1)
      .map((l) => Object.fromEntries(l.split(",").map((v, i) => [head[i]!, v])))
      .filter((r) => r.status === "200");
    expect(served.length).toBeGreaterThan(400);
    for (const r of served) expect(Number(r.slowdown)).toBeCloseTo(Number(r.ttft_ms) / Number(r.ttft_alone_ms), 2);
  }, 60_000);

  it("rejects an unknown mode and a bad scrape mode", async () => {
    capture();
    await expect(run(["--modes", "fastest", "--requests", "10"])).rejects.toThrow(/unknown mode "fastest"/);
    await expect(run(["--scrape-mode", "magic", "--requests", "10"])).rejects.toThrow(/direct.*text/);
  });
});
