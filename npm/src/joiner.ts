/**
 * A shared connection (one url + user) takes its connection options from the subscription that
 * opened it (docs/protocol.md §6.3): a later one passing other values gets a console warning,
 * whether it joins in this realm (`index.ts`) or through the tab hub (`tabs.ts`).
 */
import type { RealtimeOptions } from './types.js';

const CONNECTION_OPTIONS = ['token', 'getToken', 'lastEventId', 'clientId', 'heartbeatTimeoutMs', 'closeWhenHidden'] as const;
const BACKOFF_KEYS = ['initialMs', 'maxMs', 'multiplier', 'jitter'] as const;

/** Equal, `null`, `undefined` and `''` being one, and `false` the same as not given. */
const same = (a: unknown, b: unknown) => (a ?? '') === (b ?? '') || (a === false && b == null) || (b === false && a == null);

/** Marks the tab hub's own `subscribe` calls (it regrows its stream with a new cursor): never warned about. */
export const FROM_HUB: unique symbol = Symbol('realtime-bridge tab hub');

/** Warns when `joiner`'s connection options differ from `opener`'s (functions by identity). */
export function warnIgnoredOptions(opener: RealtimeOptions, joiner: RealtimeOptions, userId: string, url: string): void {
  const ignored: string[] = CONNECTION_OPTIONS.filter((k) => !same(opener[k], joiner[k]));
  if (BACKOFF_KEYS.some((k) => !same(opener.backoff?.[k], joiner.backoff?.[k]))) ignored.push('backoff');
  if (ignored.length) {
    console.warn(
      `realtime-bridge: subscribe('${userId}') shares the open connection to ${url} for this user; ` +
        `its ${ignored.join(', ')} differ from the first subscription's and are ignored (connection options)`,
    );
  }
}
