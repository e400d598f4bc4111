/**
 * Tests that drive a real third-party tool (Envoy, kube-apiserver, etcd, helm, Prometheus, …) declare it here.
 *
 * - Tool present: the group runs, and the callback gets each tool's absolute path.
 * - Tool absent under a plain `npm test`: the group is replaced by one skipped test named
 *   `skipped: <tools> not installed (npm run setup:tools)`; test/helpers/skip-reporter.ts prints one line naming
 *   every such tool at the end of the run.
 * - Tool absent with SWITCHYARD_REQUIRE_TOOLS=1 (what .ci/run sets): the group is one failing test instead, so CI
 *   can never pass by skipping.
 */
import { describe, it } from "vitest";
import { findTool, SETUP_TOOLS_COMMAND, type ToolName, toolEnvVar } from "../../src/common/tools.js";

export const REQUIRE_TOOLS = process.env.SWITCHYARD_REQUIRE_TOOLS === "1";

/** The prefix the skip reporter looks for. */
export const SKIPPED_PREFIX = "skipped: ";
export const SKIPPED_SUFFIX = ` not installed (${SETUP_TOOLS_COMMAND})`;

export type ToolPaths<T extends ToolName> = Readonly<Record<T, string>>;

export function describeWithTools<const T extends ToolName>(
  tools: readonly T[],
  title: string,
  body: (paths: ToolPaths<T>) => void,
): void {
  const paths: Partial<Record<T, string>> = {};
  const missing: T[] = [];
  for (const t of tools) {
    const p = findTool(t);
    if (p === undefined) missing.push(t);
    else paths[t] = p;
  }
  const label = `${title} [needs ${tools.join(", ")}]`;
  if (missing.length === 0) {
    describe(label, () => body(paths as ToolPaths<T>));
    return;
  }
  const names = missing.join(", ");
  if (REQUIRE_TOOLS) {
    describe(label, () => {
      it("has its tools installed", () => {
        throw new Error(
          `${names} not found (looked at ${missing.map((m) => `$${toolEnvVar(m)}`).join(", ")}, $PATH and ` +
            `the setup:tools folder). SWITCHYARD_REQUIRE_TOOLS=1 turns this skip into a failure; install with ` +
            `${SETUP_TOOLS_COMMAND}.`,
        );
      });
    });
    return;
  }
  describe(label, () => {
    it.skip(`${SKIPPED_PREFIX}${names}${SKIPPED_SUFFIX}`, () => {});
  });
}
