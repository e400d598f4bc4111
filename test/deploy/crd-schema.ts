/**
 * Validates manifests against deploy/crds/ the way the API server would with `kubectl apply --validate=strict`:
 * the CRD's structural openAPIV3Schema becomes a JSON schema (x-kubernetes-* keys dropped, unknown fields
 * rejected), compiled with ajv. CEL rules (x-kubernetes-validations) are not evaluated.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Ajv, type ValidateFunction } from "ajv";
import { parseAllDocuments } from "yaml";

export const ROOT = join(import.meta.dirname, "..", "..");
export const CRD_DIR = join(ROOT, "deploy", "crds");

type Schema = Record<string, unknown>;

/** k8s structural schema → JSON schema. Objects with `properties` and no additionalProperties are closed. */
export function toJsonSchema(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(toJsonSchema);
  if (node === null || typeof node !== "object") return node;
  const src = node as Schema;
  const out: Schema = {};
  for (const [k, v] of Object.entries(src)) {
    if (k.startsWith("x-kubernetes-") || k === "format" || k === "nullable" || k === "description") continue;
    if (k === "properties") {
      const props: Schema = {};
      for (const [name, sub] of Object.entries(v as Schema)) props[name] = toJsonSchema(sub);
      out[k] = props;
    } else if (k === "default" || k === "enum") {
      out[k] = v;
    } else out[k] = toJsonSchema(v);
  }
  if (src.nullable === true && typeof src.type === "string") out.type = [src.type, "null"];
  if (
    src.type === "object" &&
    src.properties !== undefined &&
    src.additionalProperties === undefined &&
    src["x-kubernetes-preserve-unknown-fields"] !== true
  ) {
    out.additionalProperties = false;
  }
  return out;
}

export interface CrdVersion {
  readonly apiVersion: string;
  readonly kind: string;
  readonly file: string;
  readonly schema: Schema;
  readonly validate: ValidateFunction;
}

export function yamlDocs(file: string): unknown[] {
  return parseAllDocuments(readFileSync(file, "utf8")).map((d) => {
    if (d.errors.length > 0) throw new Error(`${file}: ${d.errors[0]!.message}`);
    return d.toJS();
  });
}

/** Every served version of every CRD in deploy/crds, keyed by `apiVersion kind`. */
export function loadCrds(): Map<string, CrdVersion> {
  const ajv = new Ajv({ allErrors: true, strict: false });
  const out = new Map<string, CrdVersion>();
  // Includes legacy/ (the opt-in x-k8s.io InferencePool): manifests may use either pool group.
  for (const file of yamlFiles(CRD_DIR)) {
    for (const doc of yamlDocs(file)) {
      if (doc === null) continue;
      const crd = doc as {
        kind: string;
        spec: { group: string; names: { kind: string }; versions: { name: string; served: boolean; schema: Schema }[] };
      };
      if (crd.kind !== "CustomResourceDefinition") throw new Error(`${file}: not a CRD`);
      for (const v of crd.spec.versions) {
        if (!v.served) continue;
        const schema = (v.schema as { openAPIV3Schema: Schema }).openAPIV3Schema;
        const apiVersion = `${crd.spec.group}/${v.name}`;
        out.set(`${apiVersion} ${crd.spec.names.kind}`, {
          apiVersion,
          kind: crd.spec.names.kind,
          file,
          schema,
          validate: ajv.compile(toJsonSchema(schema) as Schema),
        });
      }
    }
  }
  return out;
}

/** Error strings for one object, or [] when valid; throws when no CRD covers it. */
export function validateObject(crds: Map<string, CrdVersion>, obj: unknown): string[] {
  const o = obj as { apiVersion?: string; kind?: string };
  const crd = crds.get(`${o.apiVersion} ${o.kind}`);
  if (!crd) throw new Error(`no CRD for ${o.apiVersion} ${o.kind}`);
  if (crd.validate(obj)) return [];
  return (crd.validate.errors ?? []).map(
    (e) => `${e.instancePath || "/"} ${e.message}${e.params ? ` ${JSON.stringify(e.params)}` : ""}`,
  );
}

/** Paths of schema nodes that are not structural (no `type` and not int-or-string / preserve-unknown-fields). */
export function nonStructural(schema: unknown, path = ""): string[] {
  if (schema === null || typeof schema !== "object") return [];
  const s = schema as Schema;
  const bad: string[] = [];
  if (
    s.type === undefined &&
    s["x-kubernetes-int-or-string"] !== true &&
    s["x-kubernetes-preserve-unknown-fields"] !== true
  ) {
    bad.push(path || "/");
  }
  if (s.properties && s.additionalProperties !== undefined && s.additionalProperties !== false) {
    bad.push(`${path}: both properties and additionalProperties`);
  }
  for (const [name, sub] of Object.entries((s.properties as Schema | undefined) ?? {})) {
    bad.push(...nonStructural(sub, `${path}.${name}`));
  }
  if (s.items) bad.push(...nonStructural(s.items, `${path}[]`));
  if (s.additionalProperties && typeof s.additionalProperties === "object") {
    bad.push(...nonStructural(s.additionalProperties, `${path}{}`));
  }
  return bad;
}

/** All YAML files under a directory (recursive). */
export function yamlFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...yamlFiles(p));
    else if (/\.ya?ml$/.test(e.name)) out.push(p);
  }
  return out.sort();
}
