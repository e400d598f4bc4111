/**
 * Failures the gateway itself answers (as Envoy would with a local reply). Each has a stable code, sent to the
 * client in `x-switchyard-gateway-error` so tests, the benchmark and users can tell a gateway 503 from a model
 * server 503.
 */

export const GATEWAY_ERROR_HEADER = "x-switchyard-gateway-error";

export const GATEWAY_ERRORS = {
  /** The EPP answered without a usable `x-gateway-destination-endpoint`. */
  GW_NO_DESTINATION: 503,
  /** The EPP failed and the failure mode is FailClose. */
  GW_EPP_UNAVAILABLE: 503,
  /** The EPP sent a mutation Envoy rejects (e.g. CR/LF in a header value): Envoy's local 500. */
  GW_EPP_PROTOCOL: 500,
  /** No static endpoints to route over (baseline or fail-open). */
  GW_NO_ENDPOINTS: 503,
  /** Every endpoint in the list refused the connection (Envoy: "upstream connect error … connection failure"). */
  GW_UPSTREAM_CONNECT: 503,
  /** The upstream did not send response headers within `--upstream-timeout`. */
  GW_UPSTREAM_TIMEOUT: 504,
  /** The upstream reset or broke the exchange before response headers. */
  GW_UPSTREAM_ERROR: 502,
} as const;

export type GatewayErrorCode = keyof typeof GATEWAY_ERRORS;

export class GatewayError extends Error {
  override readonly name = "GatewayError";
  readonly code: GatewayErrorCode;
  readonly status: number;

  constructor(code: GatewayErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.status = GATEWAY_ERRORS[code];
  }
}
