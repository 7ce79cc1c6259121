// Unit tests of error decoding. Each error goes through the gRPC trailer encoding first
// (grpc-status / grpc-message / grpc-status-details-bin), so the details are decoded from the
// same bytes a server sends.
import assert from "node:assert/strict";
import { test } from "node:test";

import { type DescMessage, type MessageInitShape, create } from "@bufbuild/protobuf";
import { DurationSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { findTrailerError, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";

import {
  BadRequestSchema,
  ErrorInfoSchema,
  RetryInfoSchema,
} from "../src/gen/google/rpc/error_details_pb.js";
import {
  AttemptOutcome,
  DOMAIN,
  FailureDetailSchema,
  QuorumError,
  Reason,
  toQuorumError,
} from "../src/index.js";

function detail<D extends DescMessage>(desc: D, init: MessageInitShape<D>) {
  return { desc, value: create(desc, init) };
}

/** Send an error through gRPC trailers, read it back as the transport does, and convert it. */
function received(
  message: string,
  code: Code,
  details: ReturnType<typeof detail>[],
): QuorumError {
  const sent = new ConnectError(message, code, undefined, details);
  const read = findTrailerError(setTrailerStatus(new Headers(), sent));
  assert.ok(read, "trailers carry an error");
  assert.ok(read.details.every((d) => "type" in d), "details arrive as bytes");
  return toQuorumError(read);
}

test("decodes ErrorInfo and BadRequest of an INVALID_ARGUMENT", () => {
  const err = received("request.messages: at least one message", Code.InvalidArgument, [
    detail(ErrorInfoSchema, {
      reason: Reason.INVALID_REQUEST,
      domain: DOMAIN,
      metadata: { field: "messages" },
    }),
    detail(BadRequestSchema, {
      fieldViolations: [
        { field: "messages", description: "at least one message" },
        { field: "hints.max_cost_usd", description: "must be positive" },
      ],
    }),
  ]);
  assert.ok(err instanceof QuorumError);
  assert.equal(err.code, Code.InvalidArgument);
  assert.equal(err.codeName, "INVALID_ARGUMENT");
  assert.equal(err.reason, Reason.INVALID_REQUEST);
  assert.equal(err.domain, DOMAIN);
  assert.deepEqual(err.metadata, { field: "messages" });
  assert.equal(err.violation("hints.max_cost_usd")?.description, "must be positive");
  assert.equal(err.fieldViolations.length, 2);
  assert.equal(err.retryable, false);
  assert.equal(err.rawMessage, "request.messages: at least one message");
});

test("decodes RetryInfo and FailureDetail", () => {
  const err = received("all attempts failed", Code.Unavailable, [
    detail(ErrorInfoSchema, { reason: Reason.ALL_ATTEMPTS_FAILED, domain: DOMAIN }),
    detail(RetryInfoSchema, { retryDelay: create(DurationSchema, { seconds: 1n, nanos: 5e8 }) }),
    detail(FailureDetailSchema, {
      attempts: [
        { model: "sim-flash", outcome: AttemptOutcome.FAILED, errorReason: "PROVIDER_UNAVAILABLE" },
        { model: "sim-mid", outcome: AttemptOutcome.SKIPPED },
      ],
    }),
  ]);
  assert.equal(err.retryDelayMs, 1500);
  assert.equal(err.retryable, true);
  assert.equal(err.codeName, "UNAVAILABLE");
  assert.deepEqual(
    err.attempts.map((a) => a.model),
    ["sim-flash", "sim-mid"],
  );
  assert.equal(err.attempts[0]?.errorReason, "PROVIDER_UNAVAILABLE");
});

test("wraps non-Connect errors and keeps QuorumError as is", () => {
  const plain = toQuorumError(new Error("boom"));
  assert.equal(plain.code, Code.Unknown);
  assert.equal(plain.reason, "");
  assert.equal(plain.retryDelayMs, undefined);
  assert.equal(toQuorumError(plain), plain);
  assert.equal(
    toQuorumError(new ConnectError("late", Code.DeadlineExceeded)).codeName,
    "DEADLINE_EXCEEDED",
  );
});
