/**
 * `startGateway`: the HTTP/1.1 front door. Each request becomes an Exchange (exchange.ts); this file owns the
 * listener, the shared upstream pool, the EPP channels, the balancers and shutdown.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { urlHost } from "../common/address.js";
import { SUBSET_HINT_KEY } from "../common/constants.js";
import { silentLogger } from "../observability/logger.js";
import { InFlight, LeastRequestBalancer, RoundRobinBalancer } from "./endpoints.js";
import { EppClient, stringListStruct } from "./epp-client.js";
import { Exchange, type GatewayContext } from "./exchange.js";
import {
  type GatewayOptions,
  type ResolvedGatewayOptions,
  resolveGatewayOptions,
  validateEndpoints,
} from "./options.js";
import { type GatewayStats, StatsRecorder } from "./stats.js";
import { Upstream } from "./upstream.js";

export interface Gateway {
  /** `http://host:port/` base URL of the listener. */
  readonly url: string;
  readonly port: number;
  readonly options: ResolvedGatewayOptions;
  /** Replaces the static endpoint list (baselines and fail-open); throws ConfigError on a malformed entry. */
  setEndpoints(endpoints: readonly string[]): void;
  stats(): GatewayStats;
  /** Stops accepting, lets in-flight requests finish for `shutdownGraceMs`, then cuts the rest. */
  close(): Promise<void>;
}

export async function startGateway(options: GatewayOptions = {}): Promise<Gateway> {
  const resolved = resolveGatewayOptions(options);
  const logger = options.logger ?? silentLogger;
  let endpoints: readonly string[] = resolved.endpoints;
  const inFlight = new InFlight();
  const stats = new StatsRecorder();
  const upstream = new Upstream({ timeoutMs: resolved.upstreamTimeoutMs, connections: resolved.upstreamConnections });
  const roundRobin = new RoundRobinBalancer();
  const epp =
    resolved.lb === "epp" && resolved.epp !== undefined
      ? new EppClient({ address: resolved.epp, tls: resolved.eppTls, connections: resolved.eppConnections })
      : undefined;
  const ctx: GatewayContext = {
    upstream,
    stats,
    inFlight,
    balancer:
      resolved.lb === "least-request" ? new LeastRequestBalancer(inFlight, resolved.leastRequestChoices) : roundRobin,
    failOpenBalancer: roundRobin,
    endpoints: () => endpoints,
    epp,
    failOpen: resolved.failureMode === "FailOpen",
    eppTimeoutMs: resolved.eppTimeoutMs,
    extProcReset: resolved.extProcClose === "reset",
    requireHeader: resolved.requireHeader,
    subsetHint: resolved.subset === undefined ? undefined : stringListStruct(SUBSET_HINT_KEY, resolved.subset),
    logger,
  };

  let active = 0;
  let idle: (() => void) | undefined;
  const server = createServer(
    {
      // Uploads and generations are bounded by --upstream-timeout, not by node's 300 s whole-request timer.
      requestTimeout: 0,
      keepAliveTimeout: 65_000,
    },
    (req: IncomingMessage, res: ServerResponse) => {
      active++;
      res.once("close", () => {
        active--;
        if (active === 0) idle?.();
      });
      try {
        new Exchange(ctx, req, res).start();
      } catch (err) {
        logger.error({ err: (err as Error).message }, "gateway request setup failed");
        stats.errors++;
        if (!res.headersSent)
          res.writeHead(500, { "content-type": "text/plain" }).end("switchyard gateway: internal error\n");
        else res.destroy();
      }
    },
  );
  server.on("clientError", (_err, socket) => {
    if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n");
    else socket.destroy();
  });

  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(resolved.port, resolved.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (err) {
    epp?.close();
    await upstream.close();
    throw err;
  }
  const address = server.address() as AddressInfo;
  const hostText = urlHost(address.address);
  logger.info(
    { url: `http://${hostText}:${address.port}/`, lb: resolved.lb, epp: resolved.epp, endpoints },
    "gateway listening",
  );

  let closing: Promise<void> | undefined;
  return {
    url: `http://${hostText}:${address.port}/`,
    port: address.port,
    options: resolved,
    setEndpoints(list) {
      endpoints = validateEndpoints("endpoints", list);
    },
    stats: () => stats.snapshot(inFlight.snapshot()),
    close() {
      closing ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        if (active > 0) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, resolved.shutdownGraceMs);
            idle = () => {
              clearTimeout(timer);
              resolve();
            };
          });
        }
        server.closeAllConnections();
        await closed;
        epp?.close();
        await upstream.close();
      })();
      return closing;
    },
  };
}
