// Send one prompt to a Quorum server, print the answer and its account, then stream it.
//
//   npm run build:test && node build/examples/route.js "What is 2+2?"
//   (QUORUM_ADDRESS=host:port selects the server; 127.0.0.1:50051 by default)
import { dial, QuorumError, userRequest } from "../src/index.js";

const address = process.env.QUORUM_ADDRESS ?? "127.0.0.1:50051";
const prompt = process.argv.slice(2).join(" ") || "What is 2+2?";
const client = dial(address);

try {
  const resp = await client.route(userRequest(prompt), { timeoutMs: 10_000 });
  const saved = resp.baselineCostUsd - resp.costUsd;
  console.log(
    `${resp.model} (${resp.classification?.task ?? "?"}, $${resp.costUsd.toFixed(6)}, ` +
      `saved $${saved.toFixed(6)} vs ${resp.baselineModel})\n${resp.content}\n`,
  );

  for await (const { event } of client.routeStream(userRequest(prompt), { timeoutMs: 10_000 })) {
    if (event.case === "attemptStarted") {
      console.log(`[attempt ${event.value.model}]`);
    } else if (event.case === "chunk") {
      process.stdout.write(event.value.text);
    } else if (event.case === "final") {
      console.log(`\n[final: ${event.value.model}]`);
    } else if (event.case === "error") {
      console.log(`\n[error: ${event.value.reason} ${event.value.message}]`);
    }
  }
} catch (err) {
  if (!(err instanceof QuorumError)) throw err;
  console.error(`${err.codeName}${err.reason ? ` ${err.reason}` : ""}: ${err.rawMessage}`);
  for (const v of err.fieldViolations) console.error(`  ${v.field}: ${v.description}`);
  for (const a of err.attempts) console.error(`  attempt ${a.model}: ${a.reason}`);
  process.exitCode = 1;
} finally {
  client.close();
}
