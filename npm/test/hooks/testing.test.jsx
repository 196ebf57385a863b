// realtime-bridge/testing: components using the hooks, driven by the in-memory client
// (no bridge, no network), as an app developer would write their unit tests.
import { useEffect, useState } from 'react';
import { render, screen, act, cleanup, waitFor } from '@testing-library/react';
import { afterEach, expect, test } from 'vitest';
import { isRealtimeError as isRealtimeErrorRoot } from 'realtime-bridge';
import {
  isRealtimeError as isRealtimeErrorReact,
  RealtimeProvider,
  useRealtime,
  useRealtimeMessages,
  useRealtimeNotifications,
} from 'realtime-bridge/react';
import { createTestRealtime, isRealtimeError, RealtimeTestProvider } from 'realtime-bridge/testing';

afterEach(() => cleanup());

// The original system's chat example, nearly verbatim.
function ChatConversation({ conversationId, currentUserId, recipientId }) {
  const [messages, setMessages] = useState([]);
  const [isTyping, setIsTyping] = useState(false);
  const { events, isConnected } = useRealtimeMessages(currentUserId);
  useEffect(() => {
    events.forEach((e) => {
      if (e.event === 'message_new' && e.data.conversationId === conversationId) {
        setMessages((prev) => (prev.some((m) => m.id === e.data.id) ? prev : [...prev, e.data]));
      }
      if (e.event === 'typing_start' && e.data.userId === recipientId) setIsTyping(true);
      if (e.event === 'typing_stop' && e.data.userId === recipientId) setIsTyping(false);
    });
  }, [events]);
  return (
    <div>
      <div data-testid="conn">{isConnected ? 'Connecté' : 'Déconnecté'}</div>
      <ul>
        {messages.map((m) => (
          <li key={m.id}>{m.content}</li>
        ))}
      </ul>
      {isTyping && <span>typing…</span>}
    </div>
  );
}

test('emit events into the hooks without a server', async () => {
  const rt = createTestRealtime();
  render(
    <RealtimeTestProvider client={rt}>
      <ChatConversation conversationId="c1" currentUserId="42" recipientId="7" />
    </RealtimeTestProvider>,
  );
  await waitFor(() => expect(screen.getByTestId('conn').textContent).toBe('Connecté'));
  expect(rt.subscriptions('42')).toEqual([
    expect.objectContaining({ userId: '42', events: ['message_new', 'message_read', 'typing_start', 'typing_stop'], status: 'open' }),
  ]);
  act(() => {
    rt.emit('42', 'message_new', { id: 'm1', conversationId: 'c1', content: 'Bonjour' });
    rt.emit('42', 'message_new', { id: 'm2', conversationId: 'other', content: 'not here' });
    rt.emit('43', 'message_new', { id: 'm3', conversationId: 'c1', content: 'other user' });
    rt.emit('42', 'typing_start', { conversationId: 'c1', userId: '7' });
    rt.emit('42', 'transaction_completed', { amount: 1 }); // not a message event: filtered
  });
  expect(screen.getAllByRole('listitem').map((li) => li.textContent)).toEqual(['Bonjour']);
  expect(screen.getByText('typing…')).toBeTruthy();
  act(() => rt.emit('42', 'typing_stop', { conversationId: 'c1', userId: '7' }));
  expect(screen.queryByText('typing…')).toBeNull();
  act(() => rt.setStatus('reconnecting'));
  expect(screen.getByTestId('conn').textContent).toBe('Déconnecté');
});

function Bell({ userId }) {
  const { notifications, unreadCount, status, error } = useRealtimeNotifications({ userId });
  return (
    <div>
      <span data-testid="list">{notifications.map((n) => n.title).join(',')}</span>
      <span data-testid="unread">{unreadCount}</span>
      <span data-testid="status">{status}</span>
      <span data-testid="error">{error ? `${error.status}:${String(error.final)}` : ''}</span>
    </div>
  );
}

test('notifications, broadcasts, errors and unmount with the test client', async () => {
  const rt = createTestRealtime();
  const { unmount } = render(
    <RealtimeTestProvider client={rt}>
      <Bell userId="42" />
    </RealtimeTestProvider>,
  );
  await waitFor(() => expect(screen.getByTestId('status').textContent).toBe('open'));
  act(() => {
    rt.emit('42', 'notification', { id: '1', title: 'one' });
    rt.broadcast('notification', { id: '2', title: 'everyone' });
    rt.emit('42', 'notification_read', { id: '1' });
  });
  expect(screen.getByTestId('list').textContent).toBe('everyone,one');
  expect(screen.getByTestId('unread').textContent).toBe('1');
  act(() => rt.fail({ status: 403, final: true, message: 'forbidden' }));
  expect(screen.getByTestId('error').textContent).toBe('403:true');
  expect(screen.getByTestId('status').textContent).toBe('closed');
  unmount();
  expect(rt.subscriptions()).toEqual([]);
});

test('useRealtime generic hook with the test client: maxEvents and envelope fields', async () => {
  const rt = createTestRealtime();
  const seen = [];
  function Custom() {
    const { events } = useRealtime({
      userId: 'admin',
      events: ['user_registered', 'system_alert'],
      maxEvents: 2,
      onEvent: (event, data) => seen.push(`${event}:${data.n}`),
    });
    return <span data-testid="ids">{events.map((e) => `${e.id}@${e.userId ?? 'all'}`).join(',')}</span>;
  }
  render(
    <RealtimeTestProvider client={rt}>
      <Custom />
    </RealtimeTestProvider>,
  );
  act(() => {
    rt.emit('admin', 'user_registered', { n: 1 }, { id: 'a' });
    rt.emit('admin', 'user_registered', { n: 2 }, { id: 'b' });
    rt.broadcast('system_alert', { n: 3 }, { id: 'c' });
  });
  expect(screen.getByTestId('ids').textContent).toBe('b@admin,c@all');
  expect(seen).toEqual(['user_registered:1', 'user_registered:2', 'system_alert:3']);
});

test('sendReset: onReset through the provider, and an id delivered before the reset is delivered again', async () => {
  const rt = createTestRealtime();
  const resets = [];
  function Ids() {
    const { events, status } = useRealtime({ userId: '42', events: ['message_new'] });
    return (
      <div>
        <span data-testid="status">{status}</span>
        <span data-testid="ids">{events.map((e) => `${e.id}:${e.data.n}`).join(',')}</span>
      </div>
    );
  }
  // RealtimeProvider takes the test client too, with the options of the real one.
  render(
    <RealtimeProvider client={rt} onReset={(info) => resets.push(info.reason)}>
      <Ids />
    </RealtimeProvider>,
  );
  await waitFor(() => expect(screen.getByTestId('status').textContent).toBe('open'));
  act(() => {
    rt.emit('42', 'message_new', { n: 1 }, { id: '1' });
    rt.emit('42', 'message_new', { n: 2 }, { id: '1' }); // a replay: dropped
    rt.sendReset('history_recreated', '42');
    rt.emit('42', 'message_new', { n: 3 }, { id: '1' }); // new numbering after the reset
  });
  expect(screen.getByTestId('ids').textContent).toBe('1:1,1:3');
  expect(resets).toEqual(['history_recreated']);
});

test("isRealtimeError: rt.fail()'s errors are RealtimeErrors (typed code), a throwing onEvent's are not", async () => {
  const rt = createTestRealtime();
  const errors = [];
  function Failing() {
    const { status, error } = useRealtime({
      userId: '42',
      events: ['message_new'],
      onEvent: () => {
        throw new Error('boom');
      },
    });
    return (
      <div>
        <span data-testid="status">{status}</span>
        <span data-testid="error">{isRealtimeError(error) ? `realtime:${error.code}` : error ? `other:${error.message}` : ''}</span>
      </div>
    );
  }
  render(
    <RealtimeProvider client={rt} onError={(e) => errors.push(e)}>
      <Failing />
    </RealtimeProvider>,
  );
  await waitFor(() => expect(screen.getByTestId('status').textContent).toBe('open'));
  act(() => rt.emit('42', 'message_new', {}));
  expect(screen.getByTestId('error').textContent).toBe('other:boom');
  act(() => rt.fail({ code: 'unavailable', status: 503 }));
  expect(screen.getByTestId('error').textContent).toBe('realtime:unavailable');
  expect(errors.map((e) => [isRealtimeError(e), e.message])).toEqual([
    [false, 'boom'],
    [true, 'test error'],
  ]);
  // The same guard from each entry point.
  expect(isRealtimeErrorReact).toBe(isRealtimeError);
  expect(isRealtimeErrorRoot).toBe(isRealtimeError);
});
