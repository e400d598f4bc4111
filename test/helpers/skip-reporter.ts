/**
 * Prints, at the end of a run, one line naming every tool whose tests were skipped because it is not installed
 * (see tools.ts), and the command that installs them. Silent when nothing was skipped for that reason.
 */
import type { Reporter, TestModule } from "vitest/node";
import { SKIPPED_PREFIX, SKIPPED_SUFFIX } from "./tools.js";

export default class SkipReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    const tools = new Set<string>();
    const files = new Set<string>();
    for (const m of testModules) {
      for (const t of m.children.allTests()) {
        if (!t.name.startsWith(SKIPPED_PREFIX) || !t.name.endsWith(SKIPPED_SUFFIX)) continue;
        for (const name of t.name.slice(SKIPPED_PREFIX.length, -SKIPPED_SUFFIX.length).split(", ")) tools.add(name);
        files.add(m.moduleId);
      }
    }
    if (tools.size === 0) return;
    process.stdout.write(
      `\nswitchyard: skipped the tests of ${files.size} file(s) that need ${[...tools].sort().join(", ")} ` +
        `(not installed); install them with: npm run setup:tools\n`,
    );
  }
}
