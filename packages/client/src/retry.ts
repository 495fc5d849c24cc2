/** Retries of the answers that say "try again later": 429, and 503 where repeating is safe. */

export interface RetryOptions {
  /** Tries in all, the first included; 1 never retries. Default 3. */
  attempts?: number;
  /** The longest wait before a retry, whatever Retry-After asks. Default 5000 ms. */
  maxDelayMs?: number;
}

export const DEFAULT_RETRY: Required<RetryOptions> = { attempts: 3, maxDelayMs: 5_000 };

export type Fetch = (request: Request) => Promise<Response>;

/** The wait a Retry-After header asks for (delay-seconds or an HTTP date), in ms. */
export function retryAfterMs(header: string | null | undefined, now = Date.now()): number | undefined {
  if (header === null || header === undefined) return undefined;
  if (/^\d+$/.test(header.trim())) return Number(header.trim()) * 1000;
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/**
 * The wait before retry number `attempt` (1 for the first): what Retry-After asks, else 0.2 s,
 * 0.4 s, …; at most `maxMs`. This package's client and the LangGraph saver both wait so.
 */
export const retryDelayMs = (header: string | null | undefined, attempt: number, maxMs: number): number =>
  Math.min(retryAfterMs(header) ?? 100 * 2 ** attempt, maxMs);

/**
 * `base`, repeating a request answered 429 (refused before it was read, so nothing of it ran), or
 * 503 when `repeatOn503` (the caller knows a repeat cannot write twice). It waits what Retry-After
 * asks (else 0.2 s, 0.4 s, …), at most `maxDelayMs`, and tries `attempts` times in all.
 */
export function retrying(base: Fetch, retry: Required<RetryOptions>, repeatOn503: boolean): Fetch {
  return async (request) => {
    for (let attempt = 1; ; attempt++) {
      const last = attempt >= retry.attempts;
      const response = await base(last ? request : request.clone());
      if (last || !(response.status === 429 || (response.status === 503 && repeatOn503))) return response;
      await response.body?.cancel();
      const wait = retryDelayMs(response.headers.get('retry-after'), attempt, retry.maxDelayMs);
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  };
}
