/**
 * Manifest text → normalized objects, for the file source. Pure (no I/O, no datastore), so it can run in a worker
 * thread: parsing YAML is by far the slowest step of a reload (seconds for 10k pods), and the request path shares
 * the main thread (docs/security.md, "Resource files").
 */
import { type Document, LineCounter, parseAllDocuments } from "yaml";
import { type NormalizedObject, normalizeObject, ResourceError, SUPPORTED_API_VERSIONS } from "./normalize.js";

/** An object that parsed, or one that is invalid but identified (kind/namespace/name), so its last good version can stay. */
export type ParsedEntry =
  | { readonly ok: NormalizedObject; readonly label: string; readonly origin: string }
  | {
      readonly invalid: {
        readonly kind: string;
        readonly namespace: string;
        readonly name: string;
        /** `<label>: <Kind> <ns>/<name>: <problem>`, without the file prefix and the "kept" suffix. */
        readonly message: string;
        readonly origin: string;
      };
    };

export interface ParseOutcome {
  /** Set when the whole file must be kept as it was (syntax error, unidentifiable object): the message. */
  readonly wholeFile?: string;
  readonly entries: ParsedEntry[];
  /** Non-empty YAML documents seen (a file that is only comments or whitespace has 0). */
  readonly documents: number;
}

export function parseManifestText(file: string, text: string, defaultNamespace: string): ParseOutcome {
  const entries: ParsedEntry[] = [];
  let documents = 0;
  const lineCounter = new LineCounter();
  let docs: Document.Parsed[];
  try {
    docs = [...parseAllDocuments(text, { lineCounter, prettyErrors: true, uniqueKeys: true })];
  } catch (err) {
    return { wholeFile: `YAML parse failed: ${(err as Error).message.split("\n")[0]}`, entries, documents };
  }
  for (let d = 0; d < docs.length; d++) {
    const doc = docs[d]!;
    const startOffset = doc.contents?.range[0] ?? doc.range[0];
    const where = `document ${d + 1} (line ${lineCounter.linePos(startOffset).line})`;
    const syntax = doc.errors[0];
    if (syntax !== undefined) {
      const pos = syntax.linePos?.[0];
      const at = pos === undefined ? "" : ` at line ${pos.line}, column ${pos.col}`;
      const msg = syntax.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "");
      return { wholeFile: `${where}: YAML syntax error${at}: ${msg}`, entries, documents };
    }
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (err) {
      return { wholeFile: `${where}: ${(err as Error).message.split("\n")[0]}`, entries, documents };
    }
    if (value === null || value === undefined) continue; // empty document, e.g. a trailing `---`
    documents++;
    const items = listItems(value);
    const list =
      items === undefined
        ? [{ raw: value, origin: `${file}#${d + 1}`, label: where }]
        : items.map((raw, i) => ({ raw, origin: `${file}#${d + 1}.items[${i}]`, label: `${where} items[${i}]` }));
    for (const { raw, origin, label } of list) {
      try {
        entries.push({ ok: normalizeObject(raw, origin, { defaultNamespace }), label, origin });
      } catch (err) {
        if (!(err instanceof ResourceError)) throw err;
        const identified = err.name !== "" && Object.hasOwn(SUPPORTED_API_VERSIONS, err.kind);
        const what = identified ? `${err.kind} ${err.namespace}/${err.name}` : err.kind || "object";
        if (!identified) return { wholeFile: `${label}: ${what}: ${err.message}`, entries, documents };
        entries.push({
          invalid: {
            kind: err.kind,
            namespace: err.namespace,
            name: err.name,
            message: `${label}: ${what}: ${err.message}`,
            origin,
          },
        });
      }
    }
  }
  return { entries, documents };
}

/** `kind: List` (kubectl output) or `kind: <X>List` (raw API lists, whose items omit apiVersion/kind). */
export function listItems(value: unknown): unknown[] | undefined {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  const v = value as Record<string, unknown>;
  const kind = v["kind"];
  if (typeof kind !== "string" || !kind.endsWith("List") || !Array.isArray(v["items"])) return undefined;
  const itemKind = kind === "List" ? undefined : kind.slice(0, -"List".length);
  return v["items"].map((item: unknown) => {
    if (itemKind === undefined || typeof item !== "object" || item === null || Array.isArray(item)) return item;
    const it = item as Record<string, unknown>;
    return { apiVersion: v["apiVersion"], kind: itemKind, ...it };
  });
}
