/**
 * `switchyard epp`: the endpoint picker's command line. Flags mirror GIE v1.5's EPP (docs/design/api-resources.md
 * §7) and are declared in src/epp/flags.ts; src/epp assembles the running EPP from them. This file parses, prints
 * --help, and turns SIGTERM / SIGINT into a drain.
 */
import { ConfigError } from "../common/errors.js";
import { formatHelp, parseFlags } from "../common/flags.js";
import { assembleEpp, EPP_FLAGS, type RunningEpp, type StartEppOverrides } from "../epp/index.js";

export type { RunningEpp, StartEppOverrides };

const SUMMARY =
  "Endpoint picker for Envoy ext_proc (GIE v1 protocol). Resources come from --resources files or the Kubernetes API.\n" +
  "By default every port (ext_proc, gRPC health, metrics) binds 0.0.0.0, all interfaces; see --host and docs/security.md.";

/** Parses `argv` as `switchyard epp` would and starts the EPP (tests, bench/extproc and run() below). */
export async function startEpp(argv: readonly string[], overrides: StartEppOverrides = {}): Promise<RunningEpp> {
  const f = parseFlags(EPP_FLAGS, argv);
  if (f.$args.length > 0) throw new ConfigError(`unexpected argument "${f.$args[0]}"`);
  return assembleEpp(f, overrides);
}

export async function run(argv: readonly string[]): Promise<number | undefined> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(formatHelp("epp", SUMMARY, EPP_FLAGS));
    return 0;
  }
  const epp = await startEpp(argv);
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    epp.logger.info({ signal }, "draining in-flight streams");
    epp.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        epp.logger.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));
  return undefined;
}
