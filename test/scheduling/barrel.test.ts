/**
 * The scheduling room's one door (docs/architecture.md, "Barrels"): code and tests outside src/scheduling and
 * test/scheduling import it through src/scheduling/index.ts only, so its modules can move without touching callers.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...sources(path));
    else if (entry.name.endsWith(".ts")) out.push(path);
  }
  return out;
}

describe("the scheduling barrel", () => {
  it("is the only scheduling module imported from outside the room", () => {
    const inside = [join(ROOT, "src", "scheduling"), join(ROOT, "test", "scheduling")];
    const offenders: string[] = [];
    for (const file of [
      ...sources(join(ROOT, "src")),
      ...sources(join(ROOT, "test")),
      ...sources(join(ROOT, "bench")),
    ]) {
      if (inside.some((dir) => file.startsWith(dir))) continue;
      for (const m of readFileSync(file, "utf8").matchAll(
        /from "([^"]*\/src\/scheduling\/[^"]+|\.\.?\/[^"]*scheduling\/[^"]+)"/g,
      ))
        if (
          !m[1]!.endsWith("scheduling/index.js") &&
          !m[1]!.includes("test/scheduling") &&
          !/^\.\.\/scheduling\/helpers/.test(m[1]!)
        )
          offenders.push(`${relative(ROOT, file)}: ${m[1]}`);
    }
    expect(offenders).toEqual([]);
  });
});
