/** Tokens: where they come from, and when to refresh them (pure, unit-tested). */

/** What a token provider returns: the token, and optionally when it expires. */
export type TokenInfo = string | { token: string; expiresAt?: Date | number | null };

/** Called before each connect and before the current token expires. */
export type TokenProvider = () => TokenInfo | Promise<TokenInfo>;

/** The `exp` claim of a JWT in ms since the epoch, or null (opaque token, no exp). Not verified. */
export function jwtExpiryMs(token: string): number | null {
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  try {
    const b64 = parts[1]!.replace(/-/g, '+').replace(/_/g, '/');
    const padded = b64 + '='.repeat((4 - (b64.length % 4)) % 4);
    const claims = JSON.parse(atob(padded)) as { exp?: unknown };
    return typeof claims.exp === 'number' ? claims.exp * 1000 : null;
  } catch {
    return null;
  }
}

/** Normalizes a provider's answer to a token and an expiry (ms since the epoch, or null). */
export function tokenParts(info: TokenInfo): { token: string; expiresAtMs: number | null } {
  if (typeof info === 'string') return { token: info, expiresAtMs: jwtExpiryMs(info) };
  const e = info.expiresAt;
  const ms = e instanceof Date ? e.getTime() : typeof e === 'number' ? e : jwtExpiryMs(info.token);
  return { token: info.token, expiresAtMs: ms };
}

/**
 * When to refresh a token that expires at `expiresAtMs`, seen at `nowMs`: a quarter of its
 * remaining life ahead of expiry, at most `maxLeadMs` (default 60 s) and at least 500 ms ahead.
 */
export function refreshAtMs(expiresAtMs: number, nowMs: number, maxLeadMs = 60_000): number {
  const remaining = expiresAtMs - nowMs;
  const lead = Math.min(maxLeadMs, Math.max(remaining / 4, Math.min(500, remaining / 2)));
  return Math.max(nowMs, expiresAtMs - lead);
}
