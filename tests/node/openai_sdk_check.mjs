// The official `openai` npm SDK against Quorum's OpenAI-compatible front door.
//
// Usage: QUORUM_BASE_URL=http://127.0.0.1:8080/v1 node openai_sdk_check.mjs
// Checks a unary completion (with the account in headers and the `quorum` field), a
// stream (chunks assembled equal the unary answer; usage and account in the last chunk)
// and typed errors; prints one JSON line with what it saw and exits non-zero on a failure.
import assert from "node:assert/strict";
import OpenAI, { BadRequestError, NotFoundError } from "openai";

const baseURL = process.env.QUORUM_BASE_URL;
assert.ok(baseURL, "set QUORUM_BASE_URL, e.g. http://127.0.0.1:8080/v1");
const client = new OpenAI({ apiKey: process.env.QUORUM_API_KEY ?? "unused", baseURL, maxRetries: 0 });
const messages = [
  { role: "system", content: "Answer briefly." },
  { role: "user", content: "What is 12 * 12?" },
];

// Unary, with the raw response for the x-quorum-* headers.
const { data: completion, response } = await client.chat.completions
  .create({ model: "quorum:auto", messages })
  .withResponse();
const answer = completion.choices[0].message.content;
assert.equal(completion.object, "chat.completion");
assert.equal(answer, "The answer is 144.");
assert.equal(completion.choices[0].finish_reason, "stop");
assert.ok(completion.usage.total_tokens > 0);
assert.equal(response.headers.get("x-quorum-model"), completion.model);
assert.ok(Number(response.headers.get("x-quorum-cost-usd")) > 0);
assert.ok(completion.quorum.attempts.length >= 1);

// Streaming: assemble the chunks; the last ones carry the finish reason, usage, account.
const stream = await client.chat.completions.create({
  model: "quorum:auto",
  messages,
  stream: true,
  stream_options: { include_usage: true },
});
let streamed = "";
let finish = null;
let usage = null;
let account = null;
let chunks = 0;
for await (const chunk of stream) {
  chunks += 1;
  assert.equal(chunk.object, "chat.completion.chunk");
  for (const choice of chunk.choices) {
    streamed += choice.delta.content ?? "";
    finish = choice.finish_reason ?? finish;
  }
  usage = chunk.usage ?? usage;
  account = chunk.quorum ?? account;
}
assert.equal(streamed, answer);
assert.equal(finish, "stop");
assert.ok(usage && usage.total_tokens > 0);
assert.ok(account && account.cost_usd > 0);

// Errors: typed exceptions with the status, param and code of the body.
const errors = {};
try {
  await client.chat.completions.create({ model: "quorum:auto", messages, temperature: 7 });
  assert.fail("temperature 7 was accepted");
} catch (err) {
  assert.ok(err instanceof BadRequestError, String(err));
  errors.bad_request = { status: err.status, param: err.param, code: err.code };
}
try {
  await client.chat.completions.create({ model: "no-such-model", messages });
  assert.fail("an unknown model was accepted");
} catch (err) {
  assert.ok(err instanceof NotFoundError, String(err));
  errors.not_found = { status: err.status, param: err.param, code: err.code };
}

const models = [];
for await (const model of client.models.list()) models.push(model.id);

console.log(
  JSON.stringify({
    sdk: OpenAI.VERSION ?? null,
    unary: { model: completion.model, content: answer, id: completion.id },
    stream: { chunks, content: streamed, finish, total_tokens: usage.total_tokens },
    errors,
    models,
  }),
);
