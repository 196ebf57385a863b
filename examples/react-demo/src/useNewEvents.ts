import { useEffect, useLayoutEffect, useRef } from 'react';
import type { RealtimeEvent } from 'realtime-bridge';

/**
 * Calls `handle` once for each event of `events` it has not seen yet.
 *
 * The original system's examples ran `events.forEach(...)` in an effect on every change, which
 * applies every past event again each time a new one arrives (a balance would be credited
 * twice, then three times...). Envelope ids are never delivered twice, so remembering them is
 * enough; StrictMode's double effect run is harmless too.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function useNewEvents<T = any>(events: RealtimeEvent<T>[], handle: (e: RealtimeEvent<T>) => void): void {
  const seen = useRef(new Set<string>());
  const handleRef = useRef(handle);
  // The latest `handle`, set after render (never during it) and before the effect below runs.
  useLayoutEffect(() => {
    handleRef.current = handle;
  });
  useEffect(() => {
    for (const e of events) {
      if (seen.current.has(e.id)) continue;
      seen.current.add(e.id);
      handleRef.current(e);
    }
    // Bounded: forget ids that have left the hook's window (it keeps at most maxEvents).
    if (seen.current.size > 4 * Math.max(events.length, 100)) seen.current = new Set(events.map((e) => e.id));
  }, [events]);
}
