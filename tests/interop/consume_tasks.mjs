// A Node BullMQ worker on workflow-task-runner: takes `count` jobs the engine added and
// prints what it saw, so the test can check names, data and ids against the contract.
// Input (stdin, JSON): {redisUrl, prefix, count}. Output: {jobs: [{id, name, data}]}.
import { Worker } from "bullmq";
import { connectionFrom, readStdinJson } from "./connection.mjs";

const { redisUrl, prefix, count } = await readStdinJson();
const seen = [];
let done;
const finished = new Promise((resolve) => {
  done = resolve;
});
const worker = new Worker(
  "workflow-task-runner",
  async (job) => {
    seen.push({ id: job.id, name: job.name, data: job.data });
    if (seen.length >= count) done();
    return null;
  },
  { connection: connectionFrom(redisUrl), prefix, concurrency: 1 },
);
worker.on("error", (error) => process.stderr.write(`worker error: ${error}\n`));
await finished;
await worker.close();
process.stdout.write(JSON.stringify({ jobs: seen }) + "\n");
