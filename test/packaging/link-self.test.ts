/**
 * `npx switchyard …` inside a checkout must run the checkout's build, not pack and rebuild the project into npx's
 * cache (26 s, and broken after an interrupted first run): `prepare` links the package's own bin locally.
 */
import { execFileSync } from "node:child_process";
import { accessSync, constants, mkdirSync, mkdtempSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import pkg from "../../package.json" with { type: "json" };

const SCRIPT = fileURLToPath(new URL("../../scripts/link-self.mjs", import.meta.url));
let dirs: string[] = [];
afterEach(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs = [];
});

function checkout(withNodeModules: boolean): string {
  const dir = mkdtempSync(join(tmpdir(), "switchyard-link-"));
  dirs.push(dir);
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "switchyard", bin: { switchyard: "dist/cli.js" } }));
  mkdirSync(join(dir, "dist"));
  writeFileSync(join(dir, "dist", "cli.js"), "#!/usr/bin/env node\nconsole.log('local build')\n");
  if (withNodeModules) mkdirSync(join(dir, "node_modules"));
  return dir;
}

describe("npx inside the checkout", () => {
  it("runs scripts/link-self.mjs from prepare and build", () => {
    expect(pkg.scripts.prepare).toContain("node scripts/link-self.mjs");
    expect(pkg.scripts.build).toContain("node scripts/link-self.mjs");
  });

  it("links the package's bin into node_modules/.bin, executable, so npx finds it locally", () => {
    const dir = checkout(true);
    execFileSync(process.execPath, [SCRIPT], { cwd: dir });
    const link = join(dir, "node_modules", ".bin", "switchyard");
    expect(readlinkSync(link)).toBe(join("..", "..", "dist", "cli.js"));
    accessSync(link, constants.X_OK);
    expect(execFileSync(link, { encoding: "utf8" })).toBe("local build\n");
  });

  it("does nothing where there is no node_modules (a consumer's install of the package)", () => {
    const dir = checkout(false);
    execFileSync(process.execPath, [SCRIPT], { cwd: dir });
    expect(() => readlinkSync(join(dir, "node_modules", ".bin", "switchyard"))).toThrow();
  });
});
