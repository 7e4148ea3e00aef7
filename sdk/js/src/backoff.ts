/** Reconnect delays: exponential backoff with full jitter (pure, unit-tested). */

export interface BackoffOptions {
  /** First delay cap in ms (default 250). */
  initialDelayMs?: number;
  /** Largest delay cap in ms (default 10000). */
  maxDelayMs?: number;
}

/**
 * Delay before reconnect attempt `attempt` (1 = the first retry after a failure): uniformly
 * random in [0, min(max, initial × 2^(attempt-1))]. `random` is injectable for tests.
 */
export function backoffDelay(attempt: number, opts: BackoffOptions = {}, random: () => number = Math.random): number {
  const initial = opts.initialDelayMs ?? 250;
  const max = opts.maxDelayMs ?? 10_000;
  const cap = Math.min(max, initial * 2 ** Math.min(Math.max(attempt - 1, 0), 30));
  return Math.floor(random() * cap);
}
