/**
 * A Prometheus text-format (0.0.4) reader that extracts only the metric families a scrape needs.
 *
 * A vLLM `/metrics` body is mostly histogram buckets nobody here reads, and it is parsed 20 times a second per pod,
 * so the scan is name-first: one regular expression per wanted set finds the lines that start (after optional
 * blanks) with a wanted name followed by `{`, a space or a tab, and only those lines are parsed further. The
 * regex engine skips the other lines in native code, several times faster than visiting each line in JS. The
 * terminator rule is what makes a wanted `x` never match `x_total`, `x_bucket` or `x_created`
 * (docs/design/model-servers.md §5); the line-start rule rejects `# HELP x …` comments and names embedded in other
 * names.
 *
 * Garbage never throws: a line that does not follow the grammar is skipped. Every loop advances its cursor, so no
 * input can hang the parser. Raw newlines cannot occur inside a label value (the format escapes them as `\n`),
 * which is why a line always ends at the next `\n`.
 */

export interface Sample {
  /** Label names to unescaped values. A null-prototype object, so a label named `__proto__` is just data. */
  readonly labels: Record<string, string>;
  readonly value: number;
  /** Optional sample timestamp in milliseconds since the epoch. */
  readonly timestampMs?: number;
}

/** The metric names to extract. Build it once per engine mapping and reuse it for every scrape. */
export class WantedSet {
  readonly names: ReadonlySet<string>;
  /**
   * Matches a line start, then `# TYPE ` or optional blanks (group 1), then a wanted name (group 2) followed by `{`
   * or a blank.
   */
  readonly #lineRe: RegExp | undefined;

  constructor(names: Iterable<string>) {
    const set = new Set<string>();
    for (const name of names) {
      if (name.length > 0) set.add(name);
    }
    this.names = set;
    if (set.size > 0) {
      // Longest first, so a wanted `x_total` is tried before a wanted `x` at the same position.
      const alternatives = [...set].sort((a, b) => b.length - a.length).map(escapeRegExp);
      // `# TYPE ` is matched in the same pass (and reported as a declaration), so telling "declared but no sample
      // yet" apart from "absent" costs no second scan of the body (docs/design/model-servers.md §9).
      this.#lineRe = new RegExp(`(?:^|\n)(# TYPE |[ \t]*)(${alternatives.join("|")})(?=[{ \t])`, "g");
    }
  }

  get size(): number {
    return this.names.size;
  }

  /** The shared (stateful) line regex; parseFamilies resets `lastIndex` before each use and is synchronous. */
  get lineRegExp(): RegExp | undefined {
    return this.#lineRe;
  }
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

const compiledSets = new WeakMap<ReadonlySet<string>, WantedSet>();

function toWantedSet(wanted: WantedSet | ReadonlySet<string> | readonly string[]): WantedSet {
  if (wanted instanceof WantedSet) return wanted;
  if (Array.isArray(wanted)) return new WantedSet(wanted);
  const set = wanted as ReadonlySet<string>;
  let compiled = compiledSets.get(set);
  if (compiled === undefined) {
    compiled = new WantedSet(set);
    compiledSets.set(set, compiled);
  }
  return compiled;
}

// Character codes used by the scanner.
const CR = 13;
const SPACE = 32;
const TAB = 9;
const QUOTE = 34;
const BACKSLASH = 92;
const COMMA = 44;
const EQUALS = 61;
const LBRACE = 123;
const RBRACE = 125;
const UNDERSCORE = 95;

function isLabelStart(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || c === UNDERSCORE;
}

function isLabelChar(c: number): boolean {
  return isLabelStart(c) || (c >= 48 && c <= 57);
}

function isBlank(c: number): boolean {
  return c === SPACE || c === TAB;
}

const FLOAT_RE = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const INT_RE = /^-?\d+$/;

/**
 * Parses a sample value the way Go's strconv.ParseFloat and Python's float() print them: decimal and exponent forms,
 * `NaN`, `+Inf`, `-Inf` (case-insensitive, `Inf`/`Infinity`). Returns undefined for anything else; notably the empty
 * string, which `Number()` would silently turn into 0.
 */
export function parseSampleValue(token: string): number | undefined {
  if (FLOAT_RE.test(token)) return Number(token);
  switch (token.toLowerCase()) {
    case "nan":
    case "+nan":
    case "-nan":
      return Number.NaN;
    case "inf":
    case "+inf":
    case "infinity":
    case "+infinity":
      return Number.POSITIVE_INFINITY;
    case "-inf":
    case "-infinity":
      return Number.NEGATIVE_INFINITY;
    default:
      return undefined;
  }
}

/** Index of the next `\n` at or after `pos`, or `text.length`. */
function lineEnd(text: string, pos: number): number {
  const nl = text.indexOf("\n", pos);
  return nl === -1 ? text.length : nl;
}

/**
 * Parses the sample line body starting at `pos` (just after the metric name), bounded by `end` (the line's `\n`).
 * Returns undefined when the line is malformed.
 */
function parseSampleRest(text: string, pos: number, end: number): Sample | undefined {
  const labels: Record<string, string> = Object.create(null) as Record<string, string>;
  let i = pos;
  while (i < end && isBlank(text.charCodeAt(i))) i++;
  if (i < end && text.charCodeAt(i) === LBRACE) {
    i++;
    for (;;) {
      while (i < end && isBlank(text.charCodeAt(i))) i++;
      if (i >= end) return undefined;
      if (text.charCodeAt(i) === RBRACE) {
        i++;
        break;
      }
      const nameStart = i;
      if (!isLabelStart(text.charCodeAt(i))) return undefined;
      i++;
      while (i < end && isLabelChar(text.charCodeAt(i))) i++;
      const labelName = text.slice(nameStart, i);
      while (i < end && isBlank(text.charCodeAt(i))) i++;
      if (i >= end || text.charCodeAt(i) !== EQUALS) return undefined;
      i++;
      while (i < end && isBlank(text.charCodeAt(i))) i++;
      if (i >= end || text.charCodeAt(i) !== QUOTE) return undefined;
      i++;
      // Quote-aware value scan: commas, braces and spaces inside the quotes are data (LoRA adapter lists).
      let value = "";
      let chunkStart = i;
      let closed = false;
      while (i < end) {
        const c = text.charCodeAt(i);
        if (c === QUOTE) {
          value += text.slice(chunkStart, i);
          i++;
          closed = true;
          break;
        }
        if (c === BACKSLASH) {
          if (i + 1 >= end) return undefined;
          value += text.slice(chunkStart, i);
          const e = text.charCodeAt(i + 1);
          if (e === BACKSLASH) value += "\\";
          else if (e === QUOTE) value += '"';
          else if (e === 110 /* n */) value += "\n";
          else value += text.slice(i, i + 2); // not a defined escape: keep it verbatim rather than drop data
          i += 2;
          chunkStart = i;
          continue;
        }
        i++;
      }
      if (!closed) return undefined;
      labels[labelName] = value;
      while (i < end && isBlank(text.charCodeAt(i))) i++;
      if (i >= end) return undefined;
      const sep = text.charCodeAt(i);
      if (sep === COMMA) {
        i++; // a trailing comma before `}` is legal; the loop head handles it
        continue;
      }
      if (sep === RBRACE) {
        i++;
        break;
      }
      return undefined;
    }
  }
  // Value. The caller saw a blank or `{` after the name; after `}` a blank is optional, as in Go's text parser.
  while (i < end && isBlank(text.charCodeAt(i))) i++;
  const valueStart = i;
  while (i < end && !isBlank(text.charCodeAt(i)) && text.charCodeAt(i) !== CR) i++;
  if (i === valueStart) return undefined;
  const value = parseSampleValue(text.slice(valueStart, i));
  if (value === undefined) return undefined;
  while (i < end && (isBlank(text.charCodeAt(i)) || text.charCodeAt(i) === CR)) i++;
  if (i >= end) return { labels, value };
  const tsStart = i;
  while (i < end && !isBlank(text.charCodeAt(i)) && text.charCodeAt(i) !== CR) i++;
  const tsToken = text.slice(tsStart, i);
  if (!INT_RE.test(tsToken)) return undefined;
  while (i < end && (isBlank(text.charCodeAt(i)) || text.charCodeAt(i) === CR)) i++;
  if (i < end) return undefined; // trailing junk after the timestamp
  return { labels, value, timestampMs: Number(tsToken) };
}

/**
 * Extracts the samples of the wanted metric names from a text exposition. The result holds an entry only for
 * names that had at least one well-formed sample, each list in exposition order. Never throws on any input.
 */
export function parseFamilies(
  text: string,
  wanted: WantedSet | ReadonlySet<string> | readonly string[],
  /** When given, receives every wanted name with a `# TYPE <name> ` line, samples or not. */
  declared?: Set<string>,
): Map<string, Sample[]> {
  const out = new Map<string, Sample[]>();
  const re = toWantedSet(wanted).lineRegExp;
  if (re === undefined) return out;
  re.lastIndex = 0;
  for (;;) {
    const m = re.exec(text);
    if (m === null) break;
    const name = m[2]!;
    const after = re.lastIndex;
    const end = lineEnd(text, after);
    // Resume at this line's `\n`, which the next match needs as its line start.
    re.lastIndex = end;
    if (m[1] === "# TYPE ") {
      declared?.add(name);
      continue;
    }
    const sample = parseSampleRest(text, after, end);
    if (sample === undefined) continue;
    let list = out.get(name);
    if (list === undefined) {
      list = [];
      out.set(name, list);
    }
    list.push(sample);
  }
  return out;
}
