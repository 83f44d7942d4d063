// A bound on how long the pipeline waits for a dependency that may never answer.

/**
 * What `call` settles to, or `timedOut()` thrown once `ms` have passed first. The call is not cancelled; its late
 * result or rejection is absorbed by the race (never an unhandled rejection).
 */
export async function withinTime<T>(ms: number, call: Promise<T>, timedOut: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expiry = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(timedOut()), ms)));
  try {
    return await Promise.race([call, expiry]);
  } finally {
    clearTimeout(timer);
  }
}
