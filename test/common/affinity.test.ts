/**
 * `--pin-threads` (src/common/affinity.ts): CPU lists, the plan, and — on Linux with util-linux's taskset and 2+
 * CPUs — a real EPP process whose request thread ends up alone on its CPU and every other thread on the rest.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  allowedCpus,
  formatCpuList,
  parseCpuList,
  planThreads,
  TASKSET_INSTALL_HINT,
  threadCpus,
} from "../../src/common/affinity.js";
import { freshAddresses, LOOPBACK_EPP_FLAGS, resourcesYaml } from "../helpers/epp-harness.js";
import { REQUIRE_TOOLS, SKIPPED_PREFIX } from "../helpers/tools.js";

describe("CPU lists", () => {
  it("parses the kernel's format and refuses anything else", () => {
    expect(parseCpuList("0-3,6,8-9")).toEqual([0, 1, 2, 3, 6, 8, 9]);
    expect(parseCpuList(" 5 ")).toEqual([5]);
    expect(parseCpuList("3,1,1-2")).toEqual([1, 2, 3]);
    for (const bad of ["", "a", "1-", "-1", "3-1", "1,,2", "0-100000", "1.5"])
      expect(parseCpuList(bad)).toBeUndefined();
  });

  it("writes runs as ranges", () => {
    expect(formatCpuList([0, 1, 2, 5])).toBe("0-2,5");
    expect(formatCpuList([7])).toBe("7");
    expect(formatCpuList([3, 1, 2, 2, 9, 10])).toBe("1-3,9-10");
    expect(parseCpuList(formatCpuList([0, 2, 3, 4, 8]))).toEqual([0, 2, 3, 4, 8]);
  });

  it("reads Cpus_allowed_list from a status text", () => {
    expect(allowedCpus("Name:\tnode\nCpus_allowed:\t3\nCpus_allowed_list:\t0-1\nMems_allowed:\t1\n")).toEqual([0, 1]);
    expect(allowedCpus("Name:\tnode\n")).toBeUndefined();
  });
});

describe("the plan", () => {
  it("gives the request thread the first CPU and everything else the rest", () => {
    expect(planThreads([2, 3, 5])).toEqual({ requestCpu: 2, otherCpus: [3, 5] });
  });

  it("says why there is nothing to do with fewer than two CPUs, or none known", () => {
    expect(planThreads([4])).toMatch(/CPU 4 only: nothing to separate/);
    expect(planThreads([])).toMatch(/no CPU/);
    expect(planThreads(undefined)).toMatch(/unknown/);
  });
});

const hasTaskset = process.platform === "linux" && spawnSync("taskset", ["--version"]).status === 0;
const cpus = allowedCpus() ?? [];
const canPin = hasTaskset && cpus.length >= 2;
const WHY_NOT =
  process.platform !== "linux"
    ? "Linux only"
    : !hasTaskset
      ? `taskset not installed (${TASKSET_INSTALL_HINT})`
      : `this process may use ${cpus.length} CPU(s), 2 are needed`;

const DIST_CLI = fileURLToPath(new URL("../../dist/cli.js", import.meta.url));
let child: ChildProcess | undefined;
let dir: string | undefined;

afterEach(() => {
  child?.kill("SIGKILL");
  child = undefined;
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

describe("an EPP started with --pin-threads", { timeout: 60_000 }, () => {
  if (!canPin) {
    // Only a missing taskset is a missing tool; a one-CPU machine cannot run this at all.
    if (REQUIRE_TOOLS && process.platform === "linux" && !hasTaskset)
      it("has taskset installed", () => {
        throw new Error(`SWITCHYARD_REQUIRE_TOOLS=1: ${WHY_NOT}`);
      });
    else it.skip(`${SKIPPED_PREFIX}${WHY_NOT}`, () => {});
    return;
  }

  it("runs its request thread alone on the first CPU and every other thread on the rest", async () => {
    const plan = planThreads(cpus);
    if (typeof plan === "string") throw new Error(plan);
    dir = mkdtempSync(join(tmpdir(), "sy-pin-"));
    const file = join(dir, "resources.yaml");
    // Two pods nobody listens on: their scrapes fail, which is fine; the scrape worker runs all the same.
    writeFileSync(file, resourcesYaml("pool", 8000, freshAddresses(2), [{ name: "m" }]));
    const proc = spawn(
      process.execPath,
      [DIST_CLI, "epp", "--resources", file, "--pool-name", "pool", ...LOOPBACK_EPP_FLAGS, "--pin-threads"],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    child = proc;
    let out = "";
    proc.stdout!.setEncoding("utf8").on("data", (d: string) => {
      out += d;
    });
    proc.stderr!.setEncoding("utf8").on("data", (d: string) => {
      out += d;
    });
    await vi.waitFor(
      () => {
        expect(proc.exitCode, out).toBeNull();
        expect(out).toContain("the request thread runs alone on its CPU");
      },
      { timeout: 30_000, interval: 50 },
    );
    const pid = proc.pid!;
    const tids = readdirSync(`/proc/${pid}/task`).map(Number);
    expect(tids.length).toBeGreaterThan(2);
    for (const tid of tids) {
      const mask = threadCpus(pid, tid);
      if (mask === undefined) continue; // ended since listed
      if (tid === pid) expect(mask, "the request thread").toEqual([plan.requestCpu]);
      else expect(mask, `thread ${tid}`).toEqual(plan.otherCpus);
    }
    expect(out).not.toContain("could not be pinned");
  });
});
