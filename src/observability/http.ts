/**
 * The metrics port: `/metrics` (Prometheus text) and `/debug/endpoints` (a JSON snapshot of the pool, endpoint
 * metrics, freshness and the last decisions). Plain node:http: this is off the request path.
 */
import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "./logger.js";
import type { EppMetrics } from "./metrics.js";
import type { ScrapeAuthorizer } from "./scrape-auth.js";
import { LogThrottle } from "./throttle.js";

export interface MetricsServerOptions {
  readonly host?: string;
  readonly port: number;
  readonly metrics: EppMetrics;
  /** Returns the JSON document served at /debug/endpoints; without it /debug/* is 404 (`--enable-debug-endpoints`). */
  readonly debugSnapshot?: () => unknown;
  readonly logger: Logger;
  /** Checks every /metrics and /debug/* request (Kubernetes mode, `--metrics-endpoint-auth`). Default: none. */
  readonly authorizer?: ScrapeAuthorizer;
  /** Called with each refusal's status (counted by the caller). */
  readonly onRefused?: (status: number) => void;
}

export interface MetricsServer {
  readonly port: number;
  close(): Promise<void>;
}

export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const refusals = new LogThrottle();
  const serve = (res: ServerResponse, url: string): void => {
    if (url === "/metrics") {
      options.metrics.text().then(
        (text) => {
          res.writeHead(200, { "content-type": options.metrics.contentType() }).end(text);
        },
        (err: unknown) => {
          options.logger.error({ err }, "metrics collection failed");
          res.writeHead(500, { "content-type": "text/plain" }).end("metrics collection failed\n");
        },
      );
      return;
    }
    if (url === "/debug/endpoints" && options.debugSnapshot) {
      let body: string;
      try {
        body = JSON.stringify(options.debugSnapshot(), null, 2);
      } catch (err) {
        options.logger.error({ err }, "debug snapshot failed");
        res.writeHead(500, { "content-type": "text/plain" }).end("debug snapshot failed\n");
        return;
      }
      res.writeHead(200, { "content-type": "application/json", "cache-control": "no-store" }).end(body);
      return;
    }
    if (url === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
      return;
    }
    res.writeHead(404, { "content-type": "text/plain" }).end("not found: try /metrics or /debug/endpoints\n");
  };
  const server: Server = createServer((req, res) => {
    const url = (req.url ?? "/").split("?")[0] ?? "/";
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    const authorizer = options.authorizer;
    // /healthz stays open (kubelet probes carry no token), as controller-runtime's filter only wraps /metrics.
    if (authorizer === undefined || url === "/healthz") {
      serve(res, url);
      return;
    }
    authorizer.check(req.headers.authorization, url, req.method.toLowerCase()).then(
      (d) => {
        if (d.ok) {
          serve(res, url);
          return;
        }
        options.onRefused?.(d.status);
        const suppressed = refusals.take(String(d.status));
        if (suppressed !== undefined)
          options.logger.warn(
            { status: d.status, path: url, remote: req.socket.remoteAddress, reason: d.reason, suppressed },
            "metrics request refused",
          );
        const text = d.status === 401 ? "Unauthorized" : d.status === 403 ? "Forbidden" : "Service Unavailable";
        res.writeHead(d.status, { "content-type": "text/plain" }).end(`${text}\n`);
      },
      (err: unknown) => {
        options.logger.error({ err }, "metrics authorization failed");
        res.writeHead(500, { "content-type": "text/plain" }).end("authorization failed\n");
      },
    );
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host ?? "0.0.0.0", () => {
      server.off("error", reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
