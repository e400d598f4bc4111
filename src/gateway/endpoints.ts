/**
 * Endpoint addresses and the two baseline load balancers. An endpoint is always the `host:port` string the EPP
 * protocol uses (`10.0.0.7:8000`, `[fd00::7]:8000`), so stats, headers and metadata all key on the same text.
 */

/** Returns the normalised `host:port`, or undefined when the text is not a usable endpoint. */
export function normalizeEndpoint(text: string): string | undefined {
  const s = text.trim();
  if (s === "") return undefined;
  let host: string;
  let portText: string;
  if (s.startsWith("[")) {
    const close = s.indexOf("]");
    if (close < 0 || s[close + 1] !== ":") return undefined;
    host = s.slice(1, close);
    portText = s.slice(close + 2);
    if (!/^[0-9a-fA-F:.]+$/.test(host) || !host.includes(":")) return undefined;
    host = `[${host.toLowerCase()}]`;
  } else {
    const colon = s.lastIndexOf(":");
    if (colon <= 0) return undefined;
    host = s.slice(0, colon);
    portText = s.slice(colon + 1);
    // A bare IPv6 address without brackets is ambiguous about where the port starts.
    if (host.includes(":") || !/^[A-Za-z0-9.-]+$/.test(host)) return undefined;
  }
  if (!/^\d{1,5}$/.test(portText)) return undefined;
  const port = Number(portText);
  if (port < 1 || port > 65535) return undefined;
  return `${host}:${port}`;
}

/**
 * Parses the comma list Envoy reads from `x-gateway-destination-endpoint` (primary first). Invalid entries are
 * skipped rather than failing the whole list: the protocol says "the first valid endpoint in the list will be used".
 */
export function parseEndpointList(value: string | undefined): string[] {
  if (value === undefined || value === "") return [];
  const out: string[] = [];
  for (const part of value.split(",")) {
    const ep = normalizeEndpoint(part);
    if (ep !== undefined && !out.includes(ep)) out.push(ep);
  }
  return out;
}

/** In-flight upstream requests per endpoint; least-request reads it and stats() reports it. */
export class InFlight {
  readonly #counts = new Map<string, number>();

  acquire(endpoint: string): void {
    this.#counts.set(endpoint, (this.#counts.get(endpoint) ?? 0) + 1);
  }

  release(endpoint: string): void {
    const n = (this.#counts.get(endpoint) ?? 0) - 1;
    if (n > 0) this.#counts.set(endpoint, n);
    else this.#counts.delete(endpoint);
  }

  get(endpoint: string): number {
    return this.#counts.get(endpoint) ?? 0;
  }

  snapshot(): Record<string, number> {
    return Object.fromEntries(this.#counts);
  }
}

export interface Balancer {
  /**
   * The order in which to try the static endpoints for one request: the balancer's pick first, then the rest
   * (tried only on connection failure, like Envoy's retry over the fallback list). Empty when there are none.
   */
  order(endpoints: readonly string[]): string[];
}

/** What a Kubernetes Service (kube-proxy in IPVS rr mode) does: strict rotation, blind to load. */
export class RoundRobinBalancer implements Balancer {
  #next = 0;

  order(endpoints: readonly string[]): string[] {
    const n = endpoints.length;
    if (n === 0) return [];
    const start = this.#next % n;
    this.#next = (start + 1) % n;
    const out = new Array<string>(n);
    for (let i = 0; i < n; i++) out[i] = endpoints[(start + i) % n]!;
    return out;
  }
}

/**
 * Envoy's LEAST_REQUEST with equal weights: sample `choices` distinct endpoints at random and take the one with
 * the fewest in-flight requests (Envoy's default `choice_count` is 2, "power of two choices"). When `choices` covers
 * the whole list this is an exact least-in-flight scan; ties go to the earlier sample, which is random.
 */
export class LeastRequestBalancer implements Balancer {
  readonly #inFlight: InFlight;
  readonly #choices: number;
  readonly #random: () => number;

  constructor(inFlight: InFlight, choices = 2, random: () => number = Math.random) {
    if (!Number.isInteger(choices) || choices < 1)
      throw new RangeError("least-request choices must be an integer >= 1");
    this.#inFlight = inFlight;
    this.#choices = choices;
    this.#random = random;
  }

  order(endpoints: readonly string[]): string[] {
    const n = endpoints.length;
    if (n === 0) return [];
    const pool = endpoints.slice();
    const k = Math.min(this.#choices, n);
    let best = -1;
    let bestLoad = Number.POSITIVE_INFINITY;
    // Partial Fisher-Yates: the first k slots become a uniform sample without replacement.
    for (let i = 0; i < k; i++) {
      const j = i + Math.floor(this.#random() * (n - i));
      const tmp = pool[i]!;
      pool[i] = pool[j]!;
      pool[j] = tmp;
      const load = this.#inFlight.get(pool[i]!);
      if (load < bestLoad) {
        bestLoad = load;
        best = i;
      }
    }
    if (best > 0) {
      const chosen = pool[best]!;
      pool.splice(best, 1);
      pool.unshift(chosen);
    }
    return pool;
  }
}
