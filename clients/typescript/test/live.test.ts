// Live tests against the server named by QUORUM_ADDRESS (host:port); skipped when it is unset.
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";

import {
  Code,
  dial,
  DOMAIN,
  FeedbackKind,
  QuorumError,
  Reason,
  type RouteStreamResponse,
  userRequest,
} from "../src/index.js";

const address = process.env.QUORUM_ADDRESS;
const skip = address
  ? false
  : "QUORUM_ADDRESS is not set: start `quorum serve` and export QUORUM_ADDRESS=host:port " +
    "(scripts/test_clients.sh does both)";
const QUESTION = "What is 2+2?";

describe("live server", { skip }, () => {
  const client = dial(address ?? "", { timeoutMs: 20_000 });
  after(() => client.close());

  test("route answers with content and model", async () => {
    const resp = await client.route(userRequest(QUESTION));
    assert.ok(resp.content.length > 0, "content");
    assert.ok(resp.model.length > 0, "model");
    assert.ok(resp.requestId.length > 0, "request id");
    assert.ok(resp.attempts.length > 0, "attempts");
  });

  test("plan returns stages with candidates", async () => {
    const resp = await client.plan(userRequest(QUESTION));
    assert.ok(resp.plan !== undefined && resp.plan.stages.length > 0, "stages");
    assert.ok((resp.plan.stages[0]?.candidates.length ?? 0) > 0, "candidates");
  });

  test("feedback on a routed request is recorded", async () => {
    const routed = await client.route(userRequest(QUESTION));
    const resp = await client.feedback({ requestId: routed.requestId, kind: FeedbackKind.THUMBS_UP });
    assert.equal(resp.recorded, true);
  });

  test("listModels returns models and tiers", async () => {
    const resp = await client.listModels();
    assert.ok(resp.models.length > 0);
    assert.ok(resp.tiers.length > 0);
  });

  test("routeStream starts with the plan and ends with final", async () => {
    const events: RouteStreamResponse[] = [];
    for await (const event of client.routeStream(userRequest(QUESTION))) {
      assert.notEqual(event.event.case, "error", `error: ${JSON.stringify(event.event.value)}`);
      events.push(event);
    }
    assert.ok(events.length >= 2, `events: ${events.length}`);
    assert.equal(events[0]?.event.case, "plan");
    const last = events.at(-1)?.event;
    assert.equal(last?.case, "final");
    if (last?.case === "final") {
      assert.ok(last.value.content.length > 0, "final content");
      assert.ok(last.value.model.length > 0, "final model");
    }
    assert.ok(
      events.some((e) => e.event.case === "chunk"),
      "at least one chunk",
    );
  });

  test("leaving a stream early cancels it", async () => {
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
    const before = timers();
    let seen = 0;
    for await (const event of client.routeStream(userRequest(QUESTION))) {
      assert.equal(event.event.case, "plan");
      seen++;
      break;
    }
    assert.equal(seen, 1);
    // The abandoned call's deadline timer must be gone, or it would keep node alive.
    assert.ok(timers() <= before, `timers: ${before} before, ${timers()} after`);
  });

  test("an invalid request is INVALID_ARGUMENT with ErrorInfo and BadRequest", async () => {
    await assert.rejects(client.route({ messages: [] }), (err: unknown) => {
      assert.ok(err instanceof QuorumError, `got ${String(err)}`);
      assert.equal(err.code, Code.InvalidArgument);
      assert.equal(err.reason, Reason.INVALID_REQUEST);
      assert.equal(err.domain, DOMAIN);
      assert.ok(err.violation("messages"), JSON.stringify(err.fieldViolations));
      assert.equal(err.retryable, false);
      return true;
    });
  });

  test("a deadline is honoured", async () => {
    await assert.rejects(client.route(userRequest(QUESTION), { timeoutMs: 1 }), (err: unknown) => {
      assert.ok(err instanceof QuorumError);
      assert.equal(err.code, Code.DeadlineExceeded);
      return true;
    });
  });
});
