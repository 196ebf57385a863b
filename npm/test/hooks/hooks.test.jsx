// React hooks (realtime-bridge/react) with React Testing Library, against a real bridge
// and a real nats-server. Each event is published once, after the hook shows `open`: the bridge
// answers a stream request only once NATS confirmed its subscriptions.
import { StrictMode, useEffect, useRef } from 'react';
import { render, screen, act, cleanup, waitFor as rtlWaitFor } from '@testing-library/react';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import {
  RealtimeProvider,
  useRealtime,
  useRealtimeMessages,
  useRealtimeNotifications,
  useRealtimeTransactions,
} from 'realtime-bridge/react';
import { startNats, startBridge, token, openStreams, producer, waitFor } from '../helpers.mjs';

let nats;
let bridge;
let pub;
const fetchLog = [];
const realFetch = globalThis.fetch;

beforeAll(async () => {
  nats = await startNats();
  bridge = await startBridge({ natsUrl: nats.url });
  pub = await producer(nats.url);
  globalThis.fetch = (input, init) => {
    fetchLog.push(String(input));
    return realFetch(input, init);
  };
});

afterAll(async () => {
  globalThis.fetch = realFetch;
  await pub?.close();
  await bridge?.kill('SIGTERM');
  await nats?.stop();
});

afterEach(() => cleanup());

const fetchesFor = (user) => fetchLog.filter((u) => u.includes(`/v1/users/${user}/events`));

/** Publishes once (the stream is open) and waits, bounded, until the counter `testId` shows it. */
async function publishAndShow(user, event, data, testId) {
  const before = Number(screen.getByTestId(testId).textContent);
  await pub.send(user, event, data);
  await rtlWaitFor(() => expect(Number(screen.getByTestId(testId).textContent)).toBe(before + 1), { timeout: 10000 });
}

function Feed({ userId, events, maxEvents, onEvent }) {
  const rt = useRealtime({ userId, events, maxEvents, onEvent });
  return (
    <div>
      <span data-testid="status">{rt.status}</span>
      <span data-testid="connected">{String(rt.isConnected)}</span>
      <span data-testid="count">{rt.events.length}</span>
      <span data-testid="last">{rt.events.map((e) => e.data.n).join(',')}</span>
      <button onClick={rt.disconnect}>disconnect</button>
      <button onClick={rt.reconnect}>reconnect</button>
      <button onClick={rt.clearEvents}>clear</button>
    </div>
  );
}

/** Every event's name, and the hook's status and error. */
function Kinds({ userId }) {
  const rt = useRealtime({ userId });
  return (
    <div>
      <span data-testid="status">{rt.status}</span>
      <span data-testid="count">{rt.events.length}</span>
      <span data-testid="kinds">{rt.events.map((e) => e.event).join(',')}</span>
      <span data-testid="error">{rt.error ? rt.error.message : ''}</span>
    </div>
  );
}

describe('useRealtime against the bridge', () => {
  test('receives events, calls onEvent(event, data), keeps at most maxEvents', async () => {
    const user = 'hook-basic';
    const seen = [];
    render(
      <RealtimeProvider url={bridge.url} getToken={async () => token(user)}>
        <Feed userId={user} events={['tick']} maxEvents={3} onEvent={(event, data) => seen.push([event, data.n])} />
      </RealtimeProvider>,
    );
    expect(screen.getByTestId('status').textContent).toBe('connecting');
    await rtlWaitFor(() => expect(screen.getByTestId('connected').textContent).toBe('true'), { timeout: 10000 });
    await publishAndShow(user, 'tick', { n: -1 }, 'count');
    for (let n = 0; n < 5; n++) await pub.send(user, 'tick', { n });
    await pub.send(user, 'not_wanted', { n: 99 });
    await rtlWaitFor(() => expect(screen.getByTestId('last').textContent).toBe('2,3,4'), { timeout: 10000 });
    expect(screen.getByTestId('count').textContent).toBe('3');
    expect(seen.slice(-5)).toEqual([['tick', 0], ['tick', 1], ['tick', 2], ['tick', 3], ['tick', 4]]);
    act(() => screen.getByText('clear').click());
    expect(screen.getByTestId('count').textContent).toBe('0');
  });

  test('StrictMode: one HTTP connection; unmount closes it', async () => {
    const user = 'hook-strict';
    const before = await openStreams(bridge.url);
    const { unmount } = render(
      <StrictMode>
        <RealtimeProvider url={bridge.url} token={token(user)}>
          <Feed userId={user} />
        </RealtimeProvider>
      </StrictMode>,
    );
    await rtlWaitFor(() => expect(screen.getByTestId('status').textContent).toBe('open'), { timeout: 10000 });
    // A sentinel: once it is shown, a second connection from the double mount would have been made.
    await publishAndShow(user, 'tick', { n: 1 }, 'count');
    expect(fetchesFor(user)).toHaveLength(1);
    expect(await openStreams(bridge.url)).toBe(before + 1);
    unmount();
    await waitFor(async () => (await openStreams(bridge.url)) === before, { what: 'stream closed on unmount' });
  });

  test('disconnect() and reconnect()', async () => {
    const user = 'hook-disc';
    const before = await openStreams(bridge.url);
    render(
      <RealtimeProvider url={bridge.url} token={token(user)}>
        <Feed userId={user} />
      </RealtimeProvider>,
    );
    await rtlWaitFor(() => expect(screen.getByTestId('status').textContent).toBe('open'), { timeout: 10000 });
    act(() => screen.getByText('disconnect').click());
    expect(screen.getByTestId('status').textContent).toBe('closed');
    expect(screen.getByTestId('connected').textContent).toBe('false');
    await waitFor(async () => (await openStreams(bridge.url)) === before, { what: 'closed' });
    act(() => screen.getByText('reconnect').click());
    await rtlWaitFor(() => expect(screen.getByTestId('status').textContent).toBe('open'), { timeout: 10000 });
    await publishAndShow(user, 'tick', { n: 7 }, 'count');
    expect(await openStreams(bridge.url)).toBe(before + 1);
    // reconnect() while open: drops the link and comes back.
    const n = fetchesFor(user).length;
    act(() => screen.getByText('reconnect').click());
    await waitFor(() => fetchesFor(user).length === n + 1, { what: 'reconnected' });
    await rtlWaitFor(() => expect(screen.getByTestId('status').textContent).toBe('open'), { timeout: 10000 });
  });

  test('streams ended by the bridge (`end`): reconnected at once, nothing added to events', async () => {
    // Streams live 1 s (checked at each 250 ms heartbeat); a backoff would take 30 s.
    const own = await startBridge({ natsUrl: nats.url, heartbeat: '250ms', args: ['--max-stream-lifetime', '1s'] });
    const user = 'hook-end';
    const statuses = [];
    try {
      render(
        <RealtimeProvider
          url={own.url}
          getToken={async () => token(user)}
          backoff={{ initialMs: 30000, maxMs: 30000, jitter: 0 }}
          onStatus={(s) => statuses.push(s)}
        >
          <Kinds userId={user} />
        </RealtimeProvider>,
      );
      await rtlWaitFor(() => expect(screen.getByTestId('status').textContent).toBe('open'), { timeout: 10000 });
      await publishAndShow(user, 'tick', { n: 1 }, 'count');
      const shown = screen.getByTestId('count').textContent;
      const opens = () => statuses.filter((s) => s === 'open').length;
      const before = opens();
      await waitFor(() => opens() >= before + 2, { what: 'two ends and reconnections', timeoutMs: 10000 });
      await rtlWaitFor(() => expect(screen.getByTestId('status').textContent).toBe('open'), { timeout: 5000 });
      expect(statuses).toContain('reconnecting');
      expect(screen.getByTestId('count').textContent).toBe(shown);
      expect(new Set(screen.getByTestId('kinds').textContent.split(','))).toEqual(new Set(['tick']));
      expect(screen.getByTestId('error').textContent).toBe('');
    } finally {
      cleanup();
      await own.kill('SIGKILL');
    }
  });
});

function Dashboard({ userId }) {
  const messages = useRealtimeMessages(userId);
  const transactions = useRealtimeTransactions(userId);
  const { notifications, unreadCount, isConnected } = useRealtimeNotifications({ userId });
  return (
    <div>
      <span data-testid="ready">{String(messages.isConnected && transactions.isConnected && isConnected)}</span>
      <span data-testid="messages">{messages.events.length}</span>
      <span data-testid="message-kinds">{messages.events.map((e) => e.event).join(',')}</span>
      <span data-testid="transactions">{transactions.events.map((e) => `${e.event}:${e.data.amount}`).join(',')}</span>
      <span data-testid="notifications">{notifications.map((n) => `${n.id}${n.read ? '(read)' : ''}`).join(',')}</span>
      <span data-testid="unread">{unreadCount}</span>
    </div>
  );
}

describe('specialised hooks against the bridge', () => {
  test('messages, transactions and notifications share one connection', async () => {
    const user = 'hook-dash';
    const before = await openStreams(bridge.url);
    render(
      <RealtimeProvider url={bridge.url} getToken={() => token(user)}>
        <Dashboard userId={user} />
      </RealtimeProvider>,
    );
    await rtlWaitFor(() => expect(screen.getByTestId('ready').textContent).toBe('true'), { timeout: 10000 });
    await publishAndShow(user, 'message_new', { content: 'hi' }, 'messages');
    expect(fetchesFor(user)).toHaveLength(1);
    expect(fetchesFor(user)[0]).toContain(
      'events=message_new,message_read,notification,notification_deleted,notification_read,transaction_completed,transaction_created,transaction_failed,typing_start,typing_stop',
    );
    expect(await openStreams(bridge.url)).toBe(before + 1);
    await pub.send(user, 'typing_start', { userId: '7' });
    await pub.send(user, 'transaction_completed', { amount: 12.5, type: 'CREDIT' });
    await pub.send(user, 'notification', { id: 'a', title: 'A' });
    await pub.send(user, 'notification', { id: 'b', title: 'B' });
    await pub.send(user, 'notification_read', { id: 'a' });
    await pub.send(user, 'notification', { id: 'c', title: 'C' });
    await pub.send(user, 'notification_deleted', { id: 'b' });
    await rtlWaitFor(() => expect(screen.getByTestId('notifications').textContent).toBe('c,a(read)'), { timeout: 10000 });
    expect(screen.getByTestId('unread').textContent).toBe('1');
    expect(screen.getByTestId('transactions').textContent).toBe('transaction_completed:12.5');
    expect(screen.getByTestId('message-kinds').textContent.split(',').slice(-1)).toEqual(['typing_start']);
  });
});

/** A hook's status history (every distinct status, in order). */
function Statuses({ userId, events, testId }) {
  const rt = useRealtime({ userId, events });
  const seen = useRef([]);
  if (seen.current.at(-1) !== rt.status) seen.current.push(rt.status);
  return <span data-testid={testId}>{seen.current.join(',')}</span>;
}

describe('a hook mounted later with a new event name', () => {
  test('joins the shared connection without a warning (one getToken per provider) while the first hook stays open', async () => {
    const user = 'hook-join';
    const warnings = [];
    const realWarn = console.warn;
    console.warn = (...args) => warnings.push(args.join(' '));
    try {
      // A new getToken function and backoff object on every render, as in most apps.
      const App = ({ later }) => (
        <RealtimeProvider url={bridge.url} getToken={async () => token(user)} backoff={{ initialMs: 100 }}>
          <Statuses userId={user} events={['message_new']} testId="first" />
          {later && <Statuses userId={user} events={['typing_start']} testId="later" />}
        </RealtimeProvider>
      );
      const { rerender } = render(<App later={false} />);
      await rtlWaitFor(() => expect(screen.getByTestId('first').textContent).toBe('connecting,open'), { timeout: 10000 });
      rerender(<App later />);
      await rtlWaitFor(() => expect(screen.getByTestId('later').textContent).toContain('open'), { timeout: 10000 });
      await rtlWaitFor(() => expect(fetchesFor(user)).toHaveLength(2), { timeout: 10000 });
      expect(fetchesFor(user)[1]).toContain('events=message_new,typing_start');
      expect(screen.getByTestId('first').textContent).toBe('connecting,open');
      expect(warnings).toEqual([]);
    } finally {
      console.warn = realWarn;
    }
  });
});

function Payments({ userId, onEvent }) {
  const { events, isConnected } = useRealtimeTransactions(userId, { maxEvents: 3, onEvent });
  return (
    <div>
      <span data-testid="ready">{String(isConnected)}</span>
      <span data-testid="amounts">{events.map((e) => e.data.amount).join(',')}</span>
    </div>
  );
}

describe('onEvent of a specialised hook against the bridge', () => {
  test('a burst: onEvent sees every event once, in order; events keeps the last maxEvents', async () => {
    const user = 'hook-burst';
    const seen = [];
    render(
      <RealtimeProvider url={bridge.url} getToken={async () => token(user)}>
        <Payments userId={user} onEvent={(event, data) => seen.push(`${event}:${data.amount}`)} />
      </RealtimeProvider>,
    );
    await rtlWaitFor(() => expect(screen.getByTestId('ready').textContent).toBe('true'), { timeout: 10000 });
    const N = 25;
    await Promise.all(Array.from({ length: N }, (_, n) => pub.send(user, 'transaction_completed', { amount: n })));
    await rtlWaitFor(() => expect(screen.getByTestId('amounts').textContent).toBe(`${N - 3},${N - 2},${N - 1}`), { timeout: 10000 });
    expect(seen).toEqual(Array.from({ length: N }, (_, n) => `transaction_completed:${n}`));
  });
});
