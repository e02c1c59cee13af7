// Shared by the interop scripts: BullMQ connection options from a redis:// URL.
export function connectionFrom(redisUrl) {
  const url = new URL(redisUrl);
  const db = url.pathname.length > 1 ? Number(url.pathname.slice(1)) : 0;
  return {
    host: url.hostname,
    port: Number(url.port || 6379),
    db,
    username: url.username || undefined,
    password: url.password || undefined,
    // BullMQ workers require this; harmless for queues.
    maxRetriesPerRequest: null,
  };
}

export async function readStdinJson() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}
