// Per-hook callbacks, the user switch and the provider's connection-level callbacks, driven by
// the in-memory client of realtime-bridge/testing.
import { useLayoutEffect } from 'react';
import { render, screen, act, cleanup, waitFor } from '@testing-library/react';
import { afterEach, expect, test } from 'vitest';
import {
  RealtimeProvider,
  useRealtime,
  useRealtimeMessages,
  useRealtimeNotifications,
  useRealtimeTransactions,
} from 'realtime-bridge/react';
import { createTestRealtime, RealtimeTestProvider } from 'realtime-bridge/testing';

afterEach(() => cleanup());

test('user switch: the first render for the new user shows nothing of the previous one', async () => {
  const rt = createTestRealtime();
  const commits = [];
  function Panel({ userId }) {
    const generic = useRealtime({ userId, events: ['message_new'] });
    const { notifications, unreadCount } = useRealtimeNotifications({ userId });
    // Committed renders only (a render React throws away never shows).
    useLayoutEffect(() => {
      commits.push({
        userId,
        events: generic.events.map((e) => e.data.who),
        lastEventId: generic.lastEventId,
        error: generic.error?.message ?? null,
        notifications: notifications.map((n) => n.id),
        unreadCount,
      });
    });
    return <span data-testid="status">{generic.status}</span>;
  }
  const { rerender } = render(
    <RealtimeTestProvider client={rt}>
      <Panel userId="a" />
    </RealtimeTestProvider>,
  );
  await waitFor(() => expect(screen.getByTestId('status').textContent).toBe('open'));
  act(() => {
    rt.emit('a', 'message_new', { who: 'a' }, { id: 'a1' });
    rt.emit('a', 'notification', { id: 'na', title: 'for a' });
  });
  act(() => rt.fail({ message: 'a failed', code: 'unavailable' }, 'a'));
  expect(commits.at(-1)).toEqual({
    userId: 'a',
    events: ['a'],
    lastEventId: 'a1',
    error: 'a failed',
    notifications: ['na'],
    unreadCount: 1,
  });
  const before = commits.length;
  rerender(
    <RealtimeTestProvider client={rt}>
      <Panel userId="b" />
    </RealtimeTestProvider>,
  );
  const firstForB = commits.slice(before).find((c) => c.userId === 'b');
  expect(firstForB).toEqual({ userId: 'b', events: [], lastEventId: null, error: null, notifications: [], unreadCount: 0 });
  expect(commits.slice(before).every((c) => c.events.length === 0 && c.notifications.length === 0 && c.error === null)).toBe(true);
  await waitFor(() => expect(screen.getByTestId('status').textContent).toBe('open'));
  act(() => rt.emit('b', 'message_new', { who: 'b' }, { id: 'b1' }));
  expect(commits.at(-1)).toMatchObject({ userId: 'b', events: ['b'], lastEventId: 'b1', error: null });
});

test('a burst in one tick: every hook calls onEvent once per event, in order, while events keeps fewer', async () => {
  const rt = createTestRealtime();
  const N = 40;
  const seen = { generic: [], messages: [], transactions: [], notifications: [] };
  const renders = { count: 0 };
  function Hooks() {
    renders.count += 1;
    const generic = useRealtime({ userId: '42', maxEvents: 5, onEvent: (event, data) => seen.generic.push(`${event}:${data.n}`) });
    const messages = useRealtimeMessages('42', { maxEvents: 5, onEvent: (event, data) => seen.messages.push(data.n) });
    const transactions = useRealtimeTransactions('42', { maxEvents: 5, onEvent: (_event, data, e) => seen.transactions.push(e.id) });
    const notes = useRealtimeNotifications({ userId: '42', maxNotifications: 5, onEvent: (_event, data) => seen.notifications.push(data.id) });
    return (
      <div>
        <span data-testid="ready">{String(generic.isConnected && messages.isConnected && transactions.isConnected && notes.isConnected)}</span>
        <span data-testid="sizes">{[generic.events.length, messages.events.length, transactions.events.length, notes.notifications.length].join(',')}</span>
      </div>
    );
  }
  render(
    <RealtimeTestProvider client={rt}>
      <Hooks />
    </RealtimeTestProvider>,
  );
  await waitFor(() => expect(screen.getByTestId('ready').textContent).toBe('true'));
  const rendersBefore = renders.count;
  act(() => {
    for (let n = 0; n < N; n++) {
      rt.emit('42', 'message_new', { n }, { id: `m${n}` });
      rt.emit('42', 'transaction_completed', { n }, { id: `t${n}` });
      rt.emit('42', 'notification', { id: `n${n}` });
    }
  });
  // One batched render for the whole burst: an effect on `events` would have seen 5 of 40.
  expect(renders.count - rendersBefore).toBeLessThanOrEqual(2);
  expect(screen.getByTestId('sizes').textContent).toBe('5,5,5,5');
  const range = (f) => Array.from({ length: N }, (_, n) => f(n));
  expect(seen.messages).toEqual(range((n) => n));
  expect(seen.transactions).toEqual(range((n) => `t${n}`));
  expect(seen.notifications).toEqual(range((n) => `n${n}`));
  expect(seen.generic).toEqual(range((n) => [`message_new:${n}`, `transaction_completed:${n}`, 'notification:undefined']).flat());
});

test("provider callbacks fire once per connection event; each hook's own onError and onReset fire once per hook", async () => {
  const rt = createTestRealtime();
  const provider = { errors: [], resets: [], statuses: [] };
  const hooks = { errors: [], resets: [] };
  function Dashboard({ userId }) {
    const own = (name) => ({
      onError: (e) => hooks.errors.push(`${name}:${e.message}`),
      onReset: (info) => hooks.resets.push(`${name}:${info.reason}`),
    });
    const messages = useRealtimeMessages(userId, own('messages'));
    const transactions = useRealtimeTransactions(userId, own('transactions'));
    const notes = useRealtimeNotifications({ userId, ...own('notifications') });
    return <span data-testid="ready">{String(messages.isConnected && transactions.isConnected && notes.isConnected)}</span>;
  }
  const { unmount } = render(
    <RealtimeProvider
      client={rt}
      onError={(e) => provider.errors.push(e.message)}
      onReset={(info) => provider.resets.push(info.reason)}
      onStatus={(s) => provider.statuses.push(s)}
    >
      <Dashboard userId="42" />
    </RealtimeProvider>,
  );
  await waitFor(() => expect(screen.getByTestId('ready').textContent).toBe('true'));
  expect(provider.statuses).toEqual(['connecting', 'open']);
  act(() => rt.fail({ message: 'unavailable', code: 'unavailable', status: 503 }));
  act(() => rt.sendReset('history_recreated'));
  expect(provider.errors).toEqual(['unavailable']);
  expect(provider.resets).toEqual(['history_recreated']);
  expect(hooks.errors.sort()).toEqual(['messages:unavailable', 'notifications:unavailable', 'transactions:unavailable']);
  expect(hooks.resets.sort()).toEqual(['messages:history_recreated', 'notifications:history_recreated', 'transactions:history_recreated']);
  unmount();
  // Each hook closes its subscription; the provider hears of no more than the connection did.
  expect(provider.statuses).toEqual(['connecting', 'open']);
});
