// A Node BullMQ producer feeding the engine, exactly as the contract documents it:
// new Queue('workflow-orchestrator', {connection, prefix}).add('event', data, {jobId}).
// Input (stdin, JSON): {redisUrl, prefix, jobs: [{data, jobId}]}. Output: the added ids.
import { Queue } from "bullmq";
import { connectionFrom, readStdinJson } from "./connection.mjs";

const { redisUrl, prefix, jobs } = await readStdinJson();
const queue = new Queue("workflow-orchestrator", { connection: connectionFrom(redisUrl), prefix });
try {
  const ids = [];
  for (const { data, jobId } of jobs) {
    const job = await queue.add("event", data, { jobId });
    ids.push(job.id);
  }
  process.stdout.write(JSON.stringify({ ids }) + "\n");
} finally {
  await queue.close();
}
