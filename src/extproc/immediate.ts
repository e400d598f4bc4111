/**
 * THE one mapping from any failure to an ext_proc ImmediateResponse (errors.ts points here).
 *
 * The body keeps GIE's exact text `inference error: <Code> - <message>` (error.go@v1.5.0) so clients that parse it
 * keep working. Unlike GIE, which sends no headers (a bare text body), we add a content-type, the stable
 * `x-switchyard-error-code`, and whatever the error carries (retry-after, x-ratelimit-*). `details` lands in
 * Envoy's response-code details, so access logs show the SY code too.
 */
import { type SwitchyardError, toSwitchyardError } from "../common/errors.js";
import { type HeaderPairs, immediateResponse, type ProcessingResponse } from "./messages.js";

export const ERROR_CODE_HEADER = "x-switchyard-error-code";
const TEXT_PLAIN = "text/plain; charset=utf-8";

export interface ImmediateResult {
  readonly error: SwitchyardError;
  readonly response: ProcessingResponse;
}

export function immediateResponseFor(err: unknown): ImmediateResult {
  const error = toSwitchyardError(err);
  const headers: [string, string][] = [
    ["content-type", TEXT_PLAIN],
    [ERROR_CODE_HEADER, error.code],
  ];
  if (error.headers !== undefined) {
    for (const key of Object.keys(error.headers)) {
      const name = key.toLowerCase();
      // The two headers above describe this body; an error must not contradict them.
      if (name === "content-type" || name === ERROR_CODE_HEADER) continue;
      headers.push([name, error.headers[key]!]);
    }
  }
  return {
    error,
    response: immediateResponse(error.status, Buffer.from(error.bodyText, "utf8"), headers as HeaderPairs, error.code),
  };
}
