/**
 * Typed errors: every failed call through QuorumClient rejects (or throws from a stream) with a
 * QuorumError that exposes the details the server packs into `grpc-status-details-bin`:
 * google.rpc.ErrorInfo, BadRequest, RetryInfo and quorum.route.v1.FailureDetail.
 */
import { Code, ConnectError } from "@connectrpc/connect";

import {
  BadRequestSchema,
  ErrorInfoSchema,
  RetryInfoSchema,
} from "./gen/google/rpc/error_details_pb.js";
import type { Attempt, ExecutionPlan } from "./gen/quorum/route/v1/types_pb.js";
import { FailureDetailSchema } from "./gen/quorum/route/v1/types_pb.js";

/** ErrorInfo reasons the server sets (domain {@link DOMAIN}); more may be added. */
export const Reason = {
  INVALID_REQUEST: "INVALID_REQUEST",
  NO_CANDIDATE: "NO_CANDIDATE",
  ALL_ATTEMPTS_FAILED: "ALL_ATTEMPTS_FAILED",
} as const;

/** ErrorInfo domain of errors raised by Quorum itself. */
export const DOMAIN = "quorum.dev";

/** One google.rpc.BadRequest field violation. */
export interface FieldViolation {
  /** Path of the bad field, e.g. "messages" or "hints.max_cost_usd". */
  readonly field: string;
  /** What is wrong. */
  readonly description: string;
  /** Machine-readable reason, when the server sets one. */
  readonly reason: string;
}

/** A failed call with its gRPC status and decoded details. */
export class QuorumError extends Error {
  override readonly name = "QuorumError";
  /** gRPC status code (Connect's Code enum uses the gRPC numbers). */
  readonly code: Code;
  /** Status message, meant for developers. */
  readonly rawMessage: string;
  /** From google.rpc.ErrorInfo; "" when absent. */
  readonly reason: string;
  readonly domain: string;
  readonly metadata: Readonly<Record<string, string>>;
  /** From google.rpc.BadRequest (INVALID_ARGUMENT). */
  readonly fieldViolations: readonly FieldViolation[];
  /** From google.rpc.RetryInfo (RESOURCE_EXHAUSTED), in milliseconds; undefined when absent. */
  readonly retryDelayMs: number | undefined;
  /** From quorum.route.v1.FailureDetail (UNAVAILABLE): every attempt, in start order. */
  readonly attempts: readonly Attempt[];
  /** From quorum.route.v1.FailureDetail: the plan that was executed. */
  readonly plan: ExecutionPlan | undefined;

  constructor(cause: ConnectError) {
    super(cause.message, { cause });
    this.code = cause.code;
    this.rawMessage = cause.rawMessage;
    const info = cause.findDetails(ErrorInfoSchema)[0];
    this.reason = info?.reason ?? "";
    this.domain = info?.domain ?? "";
    this.metadata = info?.metadata ?? {};
    this.fieldViolations = cause.findDetails(BadRequestSchema).flatMap((bad) =>
      bad.fieldViolations.map((v) => ({
        field: v.field,
        description: v.description,
        reason: v.reason,
      })),
    );
    const delay = cause.findDetails(RetryInfoSchema)[0]?.retryDelay;
    this.retryDelayMs =
      delay === undefined ? undefined : Number(delay.seconds) * 1000 + delay.nanos / 1e6;
    const failure = cause.findDetails(FailureDetailSchema)[0];
    this.attempts = failure?.attempts ?? [];
    this.plan = failure?.plan;
  }

  /** Name of the status code in gRPC's UPPER_SNAKE form, e.g. "INVALID_ARGUMENT". */
  get codeName(): string {
    return Code[this.code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
  }

  /** True when the same request may succeed later: UNAVAILABLE or RESOURCE_EXHAUSTED. */
  get retryable(): boolean {
    return this.code === Code.Unavailable || this.code === Code.ResourceExhausted;
  }

  /** The field violation on `field`, if any. */
  violation(field: string): FieldViolation | undefined {
    return this.fieldViolations.find((v) => v.field === field);
  }
}

/**
 * Convert anything thrown by a Connect client into a QuorumError (a QuorumError is returned as
 * is; other values are wrapped with ConnectError.from, which maps aborts to CANCELED).
 */
export function toQuorumError(err: unknown): QuorumError {
  if (err instanceof QuorumError) {
    return err;
  }
  return new QuorumError(ConnectError.from(err));
}
