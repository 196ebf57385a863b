/**
 * When the app's `getToken` is called (docs/protocol.md §6.2): its token is kept and reused by
 * every reconnection until the bridge refuses it (401), ends a stream because it expired
 * (`end` / `token_expired`), or its JWT `exp` is near. The core asks for a token before every
 * connection and says (`stale`) when the bridge refused or expired the last one; the rest is
 * decided here, where `atob` and `JSON.parse` come free (in the .wasm they would cost bytes).
 */
import { UnauthorizedError, type TokenSource } from './types.js';

/** The most a token is replaced ahead of its `exp`, ms. */
const REFRESH_AHEAD_MAX_MS = 30_000;

/**
 * The `exp` claim (Unix seconds) of a JWT, or undefined: not a JWT, or no numeric `exp`. Only
 * decoded, never verified: the bridge verifies; this only tells when to ask for a new one.
 */
export function jwtExp(token: string): number | undefined {
  const parts = token.split('.');
  const atob = (globalThis as { atob?: (s: string) => string }).atob;
  if (parts.length !== 3 || !atob) return undefined;
  const b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
  try {
    // Latin-1 is enough: `exp` is ASCII, and other claims only need to stay valid JSON.
    const exp: unknown = JSON.parse(atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4)))?.exp;
    return typeof exp === 'number' && Number.isFinite(exp) ? exp : undefined;
  } catch {
    return undefined;
  }
}

/**
 * When a token received at `now` (Unix ms) must be replaced: a tenth of the time it has left
 * before its `exp`, at most 30 s, before it. Never without `exp` (only a 401 or `token_expired`
 * replaces it then); at once when it has already expired.
 */
export function refreshAt(token: string, now: number): number {
  const exp = jwtExp(token);
  if (exp === undefined) return Infinity;
  const expMs = exp * 1000;
  return expMs - Math.min(Math.max(expMs - now, 0) / 10, REFRESH_AHEAD_MAX_MS);
}

/**
 * `getToken` as the core calls it, once per connection (one such function per connection):
 * `stale` is true when the bridge refused (401) or expired (`end` / `token_expired`) the token
 * given last. No token from `getToken` (`null`, `undefined`, `''`) becomes an
 * `UnauthorizedError`, which the core treats as signed out.
 */
export function reusedToken(getToken: TokenSource): (stale: boolean) => Promise<string> {
  let token: string | undefined;
  let until = 0;
  return async (stale) => {
    if (!stale && token !== undefined && Date.now() < until) return token;
    token = undefined;
    const t = await getToken();
    if (typeof t !== 'string' || t === '') throw new UnauthorizedError('no token (signed out)');
    token = t;
    until = refreshAt(t, Date.now());
    return t;
  };
}
