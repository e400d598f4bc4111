/**
 * Fake model-server pods for scraper tests: one node:http server per address, all on the SAME port, like real pods.
 * Each pod tracks requests, concurrent requests and accepted connections, so tests can assert on what the scraper
 * did to the server rather than on timing.
 */
import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { EndpointSource } from "../../src/datalayer/scraper.js";
import { type Endpoint, endpointKey } from "../../src/datastore/types.js";

export const fixture = (name: string) => readFileSync(new URL(`../fixtures/metrics/${name}`, import.meta.url), "utf8");

export interface PodBehaviour {
  status: number;
  body: string;
  /** Delay before answering; 0 answers at once. */
  delayMs: number;
  /** Other answers by exact request path (e.g. trtllm-serve's JSON `/metrics` beside `/prometheus/metrics`). */
  routes?: Record<string, { readonly status: number; readonly body: string; readonly contentType: string }>;
}

export class FakePod {
  readonly address: string;
  readonly server: Server;
  behaviour: PodBehaviour;
  requests = 0;
  concurrent = 0;
  maxConcurrent = 0;
  connections = 0;
  lastAccept: string | undefined;
  lastPath: string | undefined;
  readonly #sockets = new Set<Socket>();

  constructor(address: string, behaviour: PodBehaviour) {
    this.address = address;
    this.behaviour = behaviour;
    this.server = createServer((req, res) => this.#handle(req, res));
    // Long server keep-alive: an idle scraper socket stays open until the scraper itself closes it, so the
    // "no sockets after stop()/removal" checks cannot pass merely because the connection idled out.
    this.server.keepAliveTimeout = 120_000;
    this.server.on("connection", (socket: Socket) => {
      this.connections++;
      this.#sockets.add(socket);
      socket.on("close", () => this.#sockets.delete(socket));
    });
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    this.requests++;
    this.concurrent++;
    this.maxConcurrent = Math.max(this.maxConcurrent, this.concurrent);
    this.lastAccept = req.headers.accept;
    this.lastPath = req.url;
    let timer: NodeJS.Timeout | undefined;
    res.on("close", () => {
      this.concurrent--;
      if (timer !== undefined) clearTimeout(timer);
    });
    const { status, body, delayMs, routes } = this.behaviour;
    const route = routes?.[req.url ?? ""];
    const answer = () => {
      res.writeHead(route?.status ?? status, {
        "content-type": route?.contentType ?? "text/plain; version=0.0.4; charset=utf-8",
      });
      res.end(route?.body ?? body);
    };
    if (delayMs > 0) timer = setTimeout(answer, delayMs);
    else answer();
  }

  /** Sockets the server currently holds open. */
  get openSockets(): number {
    return this.#sockets.size;
  }

  listen(port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.server.once("error", onError);
      this.server.listen(port, this.address, () => {
        this.server.off("error", onError);
        resolve();
      });
    });
  }

  async close(): Promise<void> {
    if (!this.server.listening) return;
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** Starts one pod per address on a shared random port in 20000-40000, retrying on EADDRINUSE. */
export async function startPods(
  addresses: readonly string[],
  behaviour: () => PodBehaviour,
): Promise<{ port: number; pods: FakePod[] }> {
  for (let attempt = 0; attempt < 30; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    const pods = addresses.map((a) => new FakePod(a, behaviour()));
    try {
      for (const pod of pods) await pod.listen(port);
      return { port, pods };
    } catch (err) {
      await Promise.all(pods.map((p) => p.close()));
      if ((err as NodeJS.ErrnoException).code !== "EADDRINUSE") throw err;
    }
  }
  throw new Error("no free shared port after 30 attempts");
}

export function makeEndpoint(address: string, port: number, engine = "vllm"): Endpoint {
  return {
    key: endpointKey(address, port),
    name: `pod-${address}-rank-0`,
    podName: `pod-${address}`,
    namespace: "default",
    address,
    port,
    rank: 0,
    labels: {},
    engine,
    metrics: undefined,
    inflightRequests: 0,
    inflightTokens: 0,
    routedRequests: 0,
    lastScrapeError: undefined,
  };
}

/** An in-memory EndpointSource, the shape the datastore implements. */
export class FakeSource implements EndpointSource {
  #endpoints: Endpoint[];
  readonly #listeners = new Set<(added: readonly Endpoint[], removed: readonly Endpoint[]) => void>();

  constructor(endpoints: Endpoint[]) {
    this.#endpoints = endpoints;
  }

  endpoints(): readonly Endpoint[] {
    return this.#endpoints;
  }

  onEndpointsChanged(listener: (added: readonly Endpoint[], removed: readonly Endpoint[]) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  get listenerCount(): number {
    return this.#listeners.size;
  }

  add(endpoint: Endpoint): void {
    this.#endpoints = [...this.#endpoints, endpoint];
    for (const l of this.#listeners) l([endpoint], []);
  }

  remove(endpoint: Endpoint): void {
    this.#endpoints = this.#endpoints.filter((e) => e !== endpoint);
    for (const l of this.#listeners) l([], [endpoint]);
  }
}

export function vllmBody(waiting: number, running: number, kv: number): string {
  return [
    "# TYPE vllm:num_requests_waiting gauge",
    `vllm:num_requests_waiting{engine="0",model_name="m"} ${waiting}`,
    `vllm:num_requests_running{engine="0",model_name="m"} ${running}`,
    `vllm:kv_cache_usage_perc{engine="0",model_name="m"} ${kv}`,
    "",
  ].join("\n");
}
