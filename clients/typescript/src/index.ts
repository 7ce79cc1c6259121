/**
 * Quorum's TypeScript client: the generated types and service descriptor (protobuf-es v2), and
 * QuorumClient, which calls the service over gRPC with default deadlines and typed errors.
 */
export {
  DEFAULT_STREAM_TIMEOUT_MS,
  DEFAULT_TIMEOUT_MS,
  dial,
  QuorumClient,
  type QuorumClientOptions,
  type RouteRequestInit,
  userRequest,
} from "./client.js";
export { DOMAIN, type FieldViolation, QuorumError, Reason, toQuorumError } from "./errors.js";
export * from "./gen/quorum/route/v1/route_service_pb.js";
export * from "./gen/quorum/route/v1/types_pb.js";
export { Code } from "@connectrpc/connect";
