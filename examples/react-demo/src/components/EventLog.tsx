import type { RealtimeEvent } from 'realtime-bridge';
import { clock } from '../format';

/** What arrived, as delivered: the envelope's event name, id and data. */
export function EventLog({ events }: { events: RealtimeEvent[] }) {
  return (
    <section className="card log" aria-label="Event stream">
      <div className="card-head">
        <h2>Event stream</h2>
        <span className="pill">useRealtime · all events</span>
      </div>
      {events.length === 0 ? (
        <div className="muted small">Events for this user appear here as the bridge delivers them.</div>
      ) : (
        <ol id="event-log">
          {events
            .slice()
            .reverse()
            .map((e) => (
              <li key={e.id}>
                <span className="muted small">{clock(e.timestamp)}</span>
                <code className="ev">{e.event}</code>
                <code className="data" title={JSON.stringify(e.data)}>
                  {JSON.stringify(e.data)}
                </code>
              </li>
            ))}
        </ol>
      )}
    </section>
  );
}
