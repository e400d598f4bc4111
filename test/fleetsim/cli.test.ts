/** `switchyard fleetsim`: flags to runs to the table, and the errors a user can make. */
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
    const code = await run([
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
  }, 60_000);

  it("rejects an unknown mode and a bad scrape mode", async () => {
    capture();
    await expect(run(["--modes", "fastest", "--requests", "10"])).rejects.toThrow(/unknown mode "fastest"/);
    await expect(run(["--scrape-mode", "magic", "--requests", "10"])).rejects.toThrow(/direct.*text/);
  });
});
