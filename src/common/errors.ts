/**
 * The one error catalogue. Each entry has a stable switchyard code (`SY_*`, safe to alert on), the HTTP status
 * it maps to, and the GIE error code name used in the body text `inference error: <Code> - <message>` and in the
 * `error_code` metric label, so GIE dashboards and client error parsing keep working.
 *
 * The mapping to an ext_proc ImmediateResponse lives in exactly one place: `src/extproc/immediate.ts`.
 */

export type GieErrorCode =
  | "BadRequest"
  | "NotFound"
  | "PayloadTooLarge"
  | "ResourceExhausted"
  | "Internal"
  | "ServiceUnavailable";

interface CatalogueEntry {
  readonly status: number;
  readonly gie: GieErrorCode;
}

export const ERRORS = {
  /** Body is not valid JSON. */
  SY_BAD_JSON: { status: 400, gie: "BadRequest" },
  /** Body has no string `model`. */
  SY_MODEL_MISSING: { status: 400, gie: "BadRequest" },
  /** Body shape is invalid for the API path (e.g. chat without messages). */
  SY_INVALID_REQUEST: { status: 400, gie: "BadRequest" },
  /** Model unknown and `--reject-unknown-models` is set. */
  SY_UNKNOWN_MODEL: { status: 404, gie: "NotFound" },
  /** Request body exceeds `--max-body-bytes`. */
  SY_BODY_TOO_LARGE: { status: 413, gie: "PayloadTooLarge" },
  /** Sheddable request dropped because the pool is saturated. */
  SY_SHED: { status: 429, gie: "ResourceExhausted" },
  /** Token or request budget exhausted. */
  SY_RATE_LIMITED: { status: 429, gie: "ResourceExhausted" },
  /** Flow-control queue is at its count or byte limit. */
  SY_QUEUE_FULL: { status: 429, gie: "ResourceExhausted" },
  /** Every candidate was filtered out by the scheduling profile (GIE: 429). */
  SY_SCHEDULING_FAILED: { status: 429, gie: "ResourceExhausted" },
  /** No candidate endpoint: empty pool, or the subset hint matched nothing. */
  SY_NO_CANDIDATES: { status: 503, gie: "ServiceUnavailable" },
  /** Request waited in the flow-control queue past its TTL. */
  SY_QUEUE_TIMEOUT: { status: 503, gie: "ServiceUnavailable" },
  /** The client went away while the request was queued. */
  SY_CLIENT_DISCONNECTED: { status: 503, gie: "ServiceUnavailable" },
  /** Header-only request and the pool has no endpoints (GIE: 500 "no pods available in datastore"). */
  SY_NO_PODS: { status: 500, gie: "Internal" },
  /** Envoy sent messages in an order the protocol does not allow. */
  SY_PROTOCOL: { status: 500, gie: "Internal" },
  /** Any other failure inside switchyard. */
  SY_INTERNAL: { status: 500, gie: "Internal" },
} as const satisfies Record<string, CatalogueEntry>;

export type ErrorCode = keyof typeof ERRORS;

export interface SwitchyardErrorOptions {
  /** Extra response headers, e.g. `retry-after` or `x-ratelimit-*` on 429. */
  headers?: Readonly<Record<string, string>>;
  cause?: unknown;
}

export class SwitchyardError extends Error {
  override readonly name = "SwitchyardError";
  readonly code: ErrorCode;
  readonly status: number;
  readonly gieCode: GieErrorCode;
  readonly headers: Readonly<Record<string, string>> | undefined;

  constructor(code: ErrorCode, message: string, options: SwitchyardErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    const entry: CatalogueEntry = ERRORS[code];
    this.code = code;
    this.status = entry.status;
    this.gieCode = entry.gie;
    this.headers = options.headers;
  }

  /** GIE's body text, kept byte-compatible for clients that parse it. */
  get bodyText(): string {
    return `inference error: ${this.gieCode} - ${this.message}`;
  }
}

/** Normalises anything thrown into a catalogued error; unknown throwables become SY_INTERNAL. */
export function toSwitchyardError(err: unknown): SwitchyardError {
  if (err instanceof SwitchyardError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new SwitchyardError("SY_INTERNAL", message, { cause: err });
}

/** Thrown at start-up for invalid flags, config or resources; names the file and field when there is one. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
  /** The message without file and field, for re-raising it under a longer path. */
  readonly detail: string;
  constructor(
    message: string,
    readonly file?: string,
    readonly field?: string,
  ) {
    super(file ? `${file}${field ? `: ${field}` : ""}: ${message}` : field ? `${field}: ${message}` : message);
    this.detail = message;
  }
}
