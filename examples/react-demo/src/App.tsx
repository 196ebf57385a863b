import { useCallback, useEffect, useState } from 'react';
import { RealtimeProvider, useRealtime } from 'realtime-bridge/react';
import { fetchConfig, fetchToken, type DemoConfig } from './api';
import { SignIn } from './components/SignIn';
import { ConnectionBadge } from './components/ConnectionBadge';
import { NotificationBell } from './components/NotificationBell';
import { ChatConversation } from './components/ChatConversation';
import { AccountBalance } from './components/AccountBalance';
import { EventLog } from './components/EventLog';

const CONVERSATION_ID = 'demo';

interface Session {
  userId: string;
  peerId: string;
}

function sessionFromUrl(): Session | null {
  const q = new URLSearchParams(location.search);
  const userId = q.get('user');
  return userId ? { userId, peerId: q.get('peer') || (userId === '7' ? '42' : '7') } : null;
}

export function App() {
  const [session, setSession] = useState<Session | null>(sessionFromUrl);
  const [config, setConfig] = useState<DemoConfig | null>(null);
  const [configError, setConfigError] = useState<string | null>(null);

  useEffect(() => {
    fetchConfig().then(setConfig, (e: Error) => setConfigError(e.message));
    const onPop = () => setSession(sessionFromUrl());
    addEventListener('popstate', onPop);
    return () => removeEventListener('popstate', onPop);
  }, []);

  const signIn = useCallback((s: Session) => {
    history.pushState(null, '', `?${new URLSearchParams({ user: s.userId, peer: s.peerId })}`);
    setSession(s);
  }, []);
  const signOut = useCallback(() => {
    history.pushState(null, '', location.pathname);
    setSession(null);
  }, []);

  // The token comes from the demo's backend, before every (re)connection.
  const getToken = useCallback(() => (session ? fetchToken(session.userId) : null), [session]);

  if (configError) {
    return <div className="fatal">Cannot reach the demo server: {configError}</div>;
  }
  if (!session) return <SignIn onSignIn={signIn} />;
  if (!config) return <div className="loading">Loading…</div>;
  return (
    <RealtimeProvider url={config.bridgeUrl} getToken={getToken}>
      <Dashboard key={session.userId} session={session} config={config} onSignOut={signOut} />
    </RealtimeProvider>
  );
}

function Dashboard({ session, config, onSignOut }: { session: Session; config: DemoConfig; onSignOut: () => void }) {
  const { userId, peerId } = session;
  // Every event of the user (and broadcasts), for the status badge and the raw event log.
  // All the hooks of this page share one HTTP connection to the bridge.
  const all = useRealtime({ userId, maxEvents: 12 });
  const producerHint = `examples/producers/shell/producer.sh ${config.natsUrl ?? 'nats://127.0.0.1:4222'} ${userId}`;

  return (
    <div className="app">
      <header className="topbar">
        <div className="brand">
          <span className="logo" aria-hidden />
          Realtime Bridge <span className="muted">demo</span>
        </div>
        <div className="topbar-right">
          <ConnectionBadge status={all.status} error={all.error?.message} onReconnect={all.reconnect} />
          <NotificationBell userId={userId} />
          <div className="user-chip" title={`Signed in as ${userId}`}>
            <span className="avatar small" style={{ ['--h' as string]: 0 }}>
              {userId.slice(0, 2).toUpperCase()}
            </span>
            <span id="current-user">{userId}</span>
            <button className="link" onClick={onSignOut}>
              Sign out
            </button>
          </div>
        </div>
      </header>
      <main className="grid">
        <ChatConversation
          conversationId={CONVERSATION_ID}
          currentUserId={userId}
          recipientId={peerId}
          emptyHint={producerHint}
        />
        <div className="side">
          <AccountBalance userId={userId} />
          <EventLog events={all.events} />
        </div>
      </main>
      <footer className="footer">
        Make events appear: <code>{producerHint}</code> · or open this page as user{' '}
        <a href={`?${new URLSearchParams({ user: peerId, peer: userId })}`} target="_blank" rel="noreferrer">
          {peerId}
        </a>{' '}
        in another tab and chat.
      </footer>
    </div>
  );
}
