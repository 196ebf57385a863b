// The hooks with the .wasm loaded by URL (realtime-bridge/url/react): served by csp.test.mjs
// under a strict Content-Security-Policy. No inline script or style: the policy allows none.
import { StrictMode, useEffect, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { RealtimeProvider, useRealtime } from 'realtime-bridge/url/react';
import { coreThread } from 'realtime-bridge/url';

const params = new URLSearchParams(location.search);
const bridge = params.get('bridge');
const userId = params.get('user');
const token = params.get('token');

// What the browser blocked under the page's policy (shown, so a test can tell what happened).
function Violations() {
  const [seen, setSeen] = useState([]);
  useEffect(() => {
    const on = (e) => setSeen((s) => [...s, `${e.effectiveDirective} ${e.blockedURI}`]);
    document.addEventListener('securitypolicyviolation', on);
    return () => document.removeEventListener('securitypolicyviolation', on);
  }, []);
  return <ul id="violations">{seen.map((v, i) => <li key={i}>{v}</li>)}</ul>;
}

function Feed() {
  const { events, status, error } = useRealtime({ userId, events: ['message_new'] });
  return (
    <div>
      <h1>Realtime Bridge e2e (.wasm by URL)</h1>
      <p>
        status <span id="status">{status}</span> core <span id="core">{status === 'open' ? coreThread() : '-'}</span>
      </p>
      <p>
        error <span id="error-code">{error ? (error.code ?? error.name) : '-'}</span>{' '}
        <span id="error">{error ? error.message : ''}</span>
      </p>
      <ul id="events">
        {events.map((e) => (
          <li key={e.id}>
            {e.event} {e.data.text}
          </li>
        ))}
      </ul>
    </div>
  );
}

createRoot(document.getElementById('root')).render(
  <StrictMode>
    <RealtimeProvider url={bridge} getToken={async () => token} backoff={{ initialMs: 100, maxMs: 500 }}>
      <Feed />
      <Violations />
    </RealtimeProvider>
  </StrictMode>,
);
