import { StrictMode, useEffect, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { coreThread, subscribe } from 'realtime-bridge';
import { RealtimeProvider, useRealtime, useRealtimeNotifications } from 'realtime-bridge/react';

const params = new URLSearchParams(location.search);
const bridge = params.get('bridge');
const userId = params.get('user');
const token = params.get('token');
// Backoff for this page: short by default; the "online" test sets a long one.
const initialMs = Number(params.get('initialMs') ?? 100);
const maxMs = Number(params.get('maxMs') ?? 500);

function Feed() {
  const { events, status, isConnected, lastEventId, error } = useRealtime({ userId, events: ['message_new', 'system_alert'] });
  const { notifications } = useRealtimeNotifications({ userId });
  return (
    <div>
      <h1>Realtime Bridge e2e</h1>
      <p>
        user <b>{userId}</b> — status{' '}
        <span id="status" className={`status ${status}`}>
          {status}
        </span>{' '}
        {isConnected ? 'Connecté' : 'Déconnecté'}
      </p>
      <p>
        core <code id="core">{status === 'open' ? coreThread() : '-'}</code> cursor <code id="cursor">{lastEventId ?? '-'}</code> {error && <span id="error">{error.message}</span>}
      </p>
      <ul id="events">
        {events.map((e) => (
          <li key={e.id} data-event={e.event}>
            <code>{e.event}</code> {e.data.text}
          </li>
        ))}
      </ul>
      <h2>Notifications ({notifications.length})</h2>
      <ul id="notifications">
        {notifications.map((n) => (
          <li key={n.id}>{n.title}</li>
        ))}
      </ul>
    </div>
  );
}

// The plain API too, on the same shared connection: counts what it receives.
function PlainCounter() {
  const [n, setN] = useState(0);
  useEffect(() => {
    const sub = subscribe(userId, ['message_new'], () => setN((x) => x + 1), {
      url: bridge,
      token,
      backoff: { initialMs, maxMs },
    });
    return () => sub.close();
  }, []);
  return <p>plain subscribe received <span id="plain-count">{n}</span></p>;
}

createRoot(document.getElementById('root')).render(
  <StrictMode>
    <RealtimeProvider url={bridge} getToken={async () => token} backoff={{ initialMs, maxMs }}>
      <Feed />
      <PlainCounter />
    </RealtimeProvider>
  </StrictMode>,
);
