/**
 * Where the real third-party tools live (Envoy, kube-apiserver, etcd, …): the local stack (`switchyard up
 * --gateway auto`) and the test suite find them the same way, so "installed" means one thing.
 *
 * Lookup order for a tool `x-y`: `$SWITCHYARD_X_Y` (an explicit path), then `$PATH`, then the folder
 * `npm run setup:tools` installs into (`$SWITCHYARD_TOOLS/bin`, default `~/.cache/switchyard-tools/bin`). The folder
 * is per user and outside the checkout so a fresh clone (and CI) reuses a tool built once — kube-apiserver takes
 * minutes to build cold.
 */
import { accessSync, constants } from "node:fs";
import { homedir } from "node:os";
import { delimiter, join } from "node:path";

/** The tools `npm run setup:tools` installs; keep in step with scripts/setup-tools.sh. */
export const TOOL_NAMES = [
  "envoy",
  "etcd",
  "kubectl",
  "kube-apiserver",
  "llm-d-inference-sim",
  "gie-epp",
  "helm",
  "prometheus",
  // Not a program: prints the folder of upstream CRDs for deploy/'s third-party objects (scripts/setup-tools.sh).
  "third-party-crds",
  // Opt-in (`npm run setup:peers`): the peer routers the routing benchmark runs (bench/README.md).
  "vllm-router",
  "sglang-router",
] as const;
export type ToolName = (typeof TOOL_NAMES)[number];

/** The one command that installs every tool (idempotent). */
export const SETUP_TOOLS_COMMAND = "npm run setup:tools";

/** `$SWITCHYARD_TOOLS`, else `~/.cache/switchyard-tools`. */
export function toolsDir(env: NodeJS.ProcessEnv = process.env): string {
  const explicit = env.SWITCHYARD_TOOLS;
  return explicit !== undefined && explicit !== "" ? explicit : join(homedir(), ".cache", "switchyard-tools");
}

/** Name of the variable that points at one tool explicitly: `kube-apiserver` → `SWITCHYARD_KUBE_APISERVER`. */
export function toolEnvVar(name: ToolName): string {
  return `SWITCHYARD_${name.toUpperCase().replace(/-/g, "_")}`;
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Absolute path of an installed tool, or undefined. An explicit variable that points nowhere counts as absent. */
export function findTool(name: ToolName, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const explicit = env[toolEnvVar(name)];
  if (explicit !== undefined && explicit !== "") return executable(explicit) ? explicit : undefined;
  for (const dir of (env.PATH ?? "").split(delimiter)) {
    if (dir === "") continue;
    const candidate = join(dir, name);
    if (executable(candidate)) return candidate;
  }
  const installed = join(toolsDir(env), "bin", name);
  return executable(installed) ? installed : undefined;
}
