/**
 * Telling "no connection was made" apart from every other network failure: a request that never reached the
 * server may be replayed elsewhere without duplicating work (the dev gateway's retries, docs/envoy.md), and a
 * scrape that could not connect is reported as `connect`, not as a bad answer (docs/design/model-servers.md §4).
 */

/** Node and undici error codes for a connection that was never established. */
export const CONNECT_FAILURE_CODES: ReadonlySet<string> = new Set([
  "ECONNREFUSED",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EADDRNOTAVAIL",
  "ENOTFOUND",
  "EAI_AGAIN",
  "UND_ERR_CONNECT_TIMEOUT",
]);

/** The string `code` of a Node or undici error, if it has one. */
export function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

export function isConnectFailure(err: unknown): boolean {
  const code = errorCode(err);
  return code !== undefined && CONNECT_FAILURE_CODES.has(code);
}
