/**
 * A small typed flag parser shared by every subcommand. GIE's EPP uses Go-style flags, so we accept the same
 * spellings: `--name value`, `--name=value`, `-name value`, booleans as `--flag`, `--flag=true|false`.
 * Every flag declares its default and help text, and `--help` prints them all.
 */
import { ConfigError } from "./errors.js";
import { formatDuration, parseGoDuration } from "./values.js";

type Kind = "string" | "int" | "float" | "bool" | "duration" | "list";

interface FlagSpecBase<K extends Kind, V> {
  readonly kind: K;
  readonly default: V;
  readonly help: string;
  /** Validates the parsed value; returns an error message or undefined. */
  readonly check?: (value: V) => string | undefined;
}

export type FlagSpec =
  | FlagSpecBase<"string", string>
  | FlagSpecBase<"int", number>
  | FlagSpecBase<"float", number>
  | FlagSpecBase<"bool", boolean>
  | FlagSpecBase<"duration", number>
  | FlagSpecBase<"list", readonly string[]>;

export type FlagSpecs = Readonly<Record<string, FlagSpec>>;

type ValueOf<S extends FlagSpec> = S["default"];
export type FlagValues<S extends FlagSpecs> = { readonly [K in keyof S]: ValueOf<S[K]> } & {
  /** Names of flags given explicitly on the command line. */
  readonly $set: ReadonlySet<string>;
  /** Positional arguments. */
  readonly $args: readonly string[];
};

/** Parses a Go-style duration ("50ms", "2s", "1m30s") into milliseconds. A bare number means milliseconds. */
export function parseDuration(text: string): number {
  const trimmed = text.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Number(trimmed);
  const ms = parseGoDuration(trimmed);
  if (ms === undefined) throw new Error(`invalid duration "${text}" (use e.g. 50ms, 2s, 1m)`);
  return ms;
}

export { formatDuration };

function formatDefault(spec: FlagSpec): string {
  switch (spec.kind) {
    case "duration":
      return formatDuration(spec.default);
    case "list":
      return spec.default.length === 0 ? "[]" : spec.default.join(",");
    case "string":
      return spec.default === "" ? '""' : spec.default;
    default:
      return String(spec.default);
  }
}

function convert(name: string, spec: FlagSpec, raw: string): unknown {
  switch (spec.kind) {
    case "string":
      return raw;
    case "int": {
      if (!/^-?\d+$/.test(raw.trim()))
        throw new ConfigError(`expected an integer, got "${raw}"`, undefined, `--${name}`);
      return Number(raw);
    }
    case "float": {
      const n = Number(raw);
      if (raw.trim() === "" || !Number.isFinite(n))
        throw new ConfigError(`expected a number, got "${raw}"`, undefined, `--${name}`);
      return n;
    }
    case "bool": {
      const v = raw.toLowerCase();
      if (v === "true" || v === "1") return true;
      if (v === "false" || v === "0") return false;
      throw new ConfigError(`expected true or false, got "${raw}"`, undefined, `--${name}`);
    }
    case "duration":
      try {
        return parseDuration(raw);
      } catch (err) {
        throw new ConfigError((err as Error).message, undefined, `--${name}`);
      }
    case "list":
      return raw
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s !== "");
  }
}

export function parseFlags<S extends FlagSpecs>(specs: S, argv: readonly string[]): FlagValues<S> {
  const values: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(specs)) values[name] = spec.default;
  const set = new Set<string>();
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") {
      args.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith("-") || arg === "-") {
      args.push(arg);
      continue;
    }
    const body = arg.replace(/^--?/, "");
    const eq = body.indexOf("=");
    const name = eq === -1 ? body : body.slice(0, eq);
    const spec = specs[name];
    if (!spec) throw new ConfigError(`unknown flag (see --help)`, undefined, `--${name}`);
    let raw: string;
    if (eq !== -1) raw = body.slice(eq + 1);
    else if (spec.kind === "bool") raw = "true";
    else {
      const next = argv[i + 1];
      if (next === undefined) throw new ConfigError("missing value", undefined, `--${name}`);
      raw = next;
      i++;
    }
    const value = convert(name, spec, raw);
    const problem = (spec.check as ((v: unknown) => string | undefined) | undefined)?.(value);
    if (problem) throw new ConfigError(problem, undefined, `--${name}`);
    values[name] = value;
    set.add(name);
  }
  values.$set = set;
  values.$args = args;
  return values as FlagValues<S>;
}

export function formatHelp(command: string, summary: string, specs: FlagSpecs): string {
  const lines = [`Usage: switchyard ${command} [flags]`, "", summary, "", "Flags:"];
  for (const [name, spec] of Object.entries(specs)) {
    const type = spec.kind === "bool" ? "" : ` <${spec.kind}>`;
    lines.push(`  --${name}${type}`);
    lines.push(`      ${spec.help} (default ${formatDefault(spec)})`);
  }
  return `${lines.join("\n")}\n`;
}

export const checks = {
  port: (v: number) => (v >= 0 && v <= 65535 ? undefined : "must be a port number 0..65535"),
  positive: (v: number) => (v > 0 ? undefined : "must be > 0"),
  nonNegative: (v: number) => (v >= 0 ? undefined : "must be >= 0"),
  unit: (v: number) => (v >= 0 && v <= 1 ? undefined : "must be between 0 and 1"),
} as const;
