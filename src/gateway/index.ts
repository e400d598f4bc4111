export {
  InFlight,
  LeastRequestBalancer,
  normalizeEndpoint,
  parseEndpointList,
  RoundRobinBalancer,
} from "./endpoints.js";
export { GATEWAY_ERROR_HEADER, GATEWAY_ERRORS, GatewayError, type GatewayErrorCode } from "./errors.js";
export { SERVED_ENDPOINT_HEADER } from "./exchange.js";
export {
  FAILURE_MODES,
  type FailureMode,
  GATEWAY_DEFAULTS,
  type GatewayOptions,
  LB_POLICIES,
  type LbPolicy,
  type ResolvedGatewayOptions,
} from "./options.js";
export { type Gateway, startGateway } from "./server.js";
export type { GatewayStats } from "./stats.js";
