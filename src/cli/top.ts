/**
 * `switchyard top`: a live table of a running EPP's endpoints (queue, running, KV %, adapters, metric age,
 * requests routed, in flight) read from its /debug/endpoints. `--once` prints one table and exits (scripts, tests).
 */

import { readFileSync } from "node:fs";
import { ConfigError } from "../common/errors.js";
import { checks, formatHelp, parseFlags } from "../common/flags.js";
import { fetchSnapshot, runLiveView, SnapshotError, snapshotUrl, type ViewOutput } from "../observability/live.js";
import { renderEndpointTable } from "../observability/table.js";

export const TOP_FLAGS = {
  url: {
    kind: "string",
    default: "http://127.0.0.1:9090",
    help: "EPP metrics address (host:port or URL); /debug/endpoints is appended",
  },
  interval: { kind: "duration", default: 1_000, help: "how often to poll", check: checks.positive },
  once: { kind: "bool", default: false, help: "print one table and exit (exit code 1 when unreachable)" },
  decisions: {
    kind: "int",
    default: 5,
    help: "recent routing decisions listed under the table",
    check: checks.nonNegative,
  },
  "token-file": {
    kind: "string",
    default: "",
    help: "file holding a bearer token for an EPP with --metrics-endpoint-auth (re-read every poll, so a rotated service-account token works); default $SWITCHYARD_TOKEN",
  },
  color: {
    kind: "string",
    default: "auto" as string,
    help: "auto | always | never (auto: colour when stdout is a TTY)",
    check: (v: string) => (["auto", "always", "never"].includes(v) ? undefined : "must be auto, always or never"),
  },
} as const;

const SUMMARY =
  "Live view of a running EPP: polls /debug/endpoints and redraws the endpoint table (plain periodic tables when stdout is not a TTY). Ctrl-C exits.";

export interface TopIo {
  readonly out: ViewOutput;
  readonly err: ViewOutput;
  /** Aborts the live loop; default: SIGINT / SIGTERM. */
  readonly signal?: AbortSignal;
}

const defaultIo = (): TopIo => ({ out: process.stdout, err: process.stderr });

export async function run(argv: readonly string[], io: TopIo = defaultIo()): Promise<number | undefined> {
  if (argv.includes("--help") || argv.includes("-h")) {
    io.out.write(formatHelp("top", SUMMARY, TOP_FLAGS));
    return 0;
  }
  const f = parseFlags(TOP_FLAGS, argv);
  if (f.$args.length > 0) throw new ConfigError(`unexpected argument "${f.$args[0]}"`);
  let url: string;
  try {
    url = snapshotUrl(f.url);
  } catch (err) {
    throw new ConfigError((err as Error).message, undefined, "--url");
  }
  const color = f.color === "always" ? true : f.color === "never" ? false : io.out.isTTY === true;
  const token = tokenSource(f["token-file"], process.env.SWITCHYARD_TOKEN);
  // Fail at start, naming the flag, rather than on every poll.
  try {
    token?.();
  } catch (err) {
    throw new ConfigError((err as Error).message, undefined, "--token-file");
  }
  const auth = token === undefined ? {} : { token };

  if (f.once) {
    try {
      const snap = await fetchSnapshot(url, { timeoutMs: Math.max(1_000, f.interval), ...auth });
      io.out.write(renderEndpointTable(snap, { color, decisions: f.decisions }));
      return 0;
    } catch (err) {
      if (!(err instanceof SnapshotError)) throw err;
      io.err.write(`switchyard top: ${err.message}\n`);
      return 1;
    }
  }

  const controller = new AbortController();
  const stop = () => controller.abort();
  // `switchyard top | head` closes the pipe: EPIPE on stdout ends the loop quietly instead of crashing.
  const stream = io.out as Partial<Pick<NodeJS.WritableStream, "on" | "off">>;
  stream.on?.("error", stop);
  const external = io.signal;
  external?.addEventListener("abort", stop, { once: true });
  if (external === undefined) {
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  }
  try {
    await runLiveView({
      url,
      out: io.out,
      intervalMs: f.interval,
      color,
      decisions: f.decisions,
      signal: controller.signal,
      ...auth,
    });
  } finally {
    external?.removeEventListener("abort", stop);
    stream.off?.("error", stop);
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
  }
  return 0;
}

/** The bearer token to send: from `file` (read on every call), else the environment's value, else none. */
function tokenSource(file: string, env: string | undefined): (() => string) | undefined {
  if (file !== "") {
    return () => {
      let text: string;
      try {
        text = readFileSync(file, "utf8");
      } catch (err) {
        throw new SnapshotError(`cannot read the token file ${file}: ${(err as Error).message}`);
      }
      const t = text.trim();
      if (t === "" || /\s/.test(t)) throw new SnapshotError(`${file}: expected one bearer token`);
      return t;
    };
  }
  const t = env?.trim();
  return t === undefined || t === "" ? undefined : () => t;
}
