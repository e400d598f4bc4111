/**
 * host:port text, one way everywhere: an IPv6 literal is bracketed (`[fd00::1]:8000`), as in URLs, grpc-js
 * targets, GIE's `x-gateway-destination-endpoint` and the endpoint keys built from pod IPs
 * (docs/design/ext-proc-protocol.md §5).
 */

/** `host` ready to stand before `:port` or in a URL: IPv6 literals bracketed, an already bracketed host kept. */
export function urlHost(host: string): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}

/** `host:port`, bracketing an IPv6 literal. */
export function hostPort(host: string, port: number): string {
  return `${urlHost(host)}:${port}`;
}

/**
 * Parses `host:port`, `[v6]:port` or `:port` (empty host); undefined when it is none of them or the port is not
 * 0–65535. The host comes back without brackets.
 */
export function splitHostPort(text: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text);
  if (m === null) return undefined;
  const port = Number(m[3]);
  return port > 65535 ? undefined : { host: m[1] ?? m[2] ?? "", port };
}
