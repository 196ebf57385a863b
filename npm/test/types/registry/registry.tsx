// Type-level test: an app registers its own DTOs (required fields, no index signature) in
// `RealtimeEvents`, by declaration merging, and the names and payloads are then typed everywhere:
// subscribe, useRealtime, onEvent, the specialised hooks, the test client's emit and broadcast.
// A separate program (its own tsconfig): the registry is global, and the other type tests check
// the package with nothing registered.
import { useEffect, useState, type ReactElement } from 'react';
import {
  subscribe,
  type RealtimeEvent,
  type RealtimeEventName,
  type RealtimeEvents,
  type RealtimeTransactionDto,
  type Subscription,
} from 'realtime-bridge';
import {
  useRealtime,
  useRealtimeMessages,
  useRealtimeNotifications,
  useRealtimeTransactions,
  type RealtimeEvents as RealtimeEventsReact,
} from 'realtime-bridge/react';
import {
  createTestRealtime,
  RealtimeTestProvider,
  type RealtimeEvents as RealtimeEventsTesting,
} from 'realtime-bridge/testing';

type Equal<A, B> = (<X>() => X extends A ? 1 : 2) extends <X>() => X extends B ? 1 : 2 ? true : false;
function assertType<T extends true>(): void {}

// The app's DTOs, as an app has them: every field required.
interface ChatMessage {
  id: string;
  conversationId: string;
  senderId: string;
  content: string;
  createdAt: string;
}
interface Typing {
  userId: string;
  conversationId: string;
}
interface AppNotification {
  id: string;
  title: string;
  link: string;
  read: boolean;
}
interface Transaction {
  transactionId: string;
  accountId: string;
  amount: number;
  type: 'CREDIT' | 'DEBIT';
}
interface PriceUpdate {
  symbol: string;
  price: number;
}

// Registered against the main entry point: `realtime-bridge/react` and `realtime-bridge/testing`
// re-export the same interface, so they see it too.
declare module 'realtime-bridge' {
  interface RealtimeEvents {
    message_new: ChatMessage;
    message_read: { messageId: string; readAt: string };
    typing_start: Typing;
    typing_stop: Typing;
    notification: AppNotification;
    notification_read: { id: string };
    notification_deleted: { id: string };
    transaction_completed: Transaction;
    // transaction_created and transaction_failed are not registered (see useRealtimeTransactions).
    price_update: PriceUpdate;
  }
}

// One interface, whichever entry point names it.
assertType<Equal<RealtimeEventsReact, RealtimeEvents>>();
assertType<Equal<RealtimeEventsTesting, RealtimeEvents>>();
assertType<Equal<RealtimeEvents['price_update'], PriceUpdate>>();
assertType<Equal<RealtimeEvents['user_online'], { userId: string }>>();
// Registering closes the names: exactly the registered ones.
assertType<
  Equal<
    RealtimeEventName,
    | 'message_new'
    | 'message_read'
    | 'typing_start'
    | 'typing_stop'
    | 'notification'
    | 'notification_read'
    | 'notification_deleted'
    | 'transaction_completed'
    | 'price_update'
    | 'user_online'
  >
>();

declare const userId: string;
declare function render(message: ChatMessage): void;

// subscribe: the names pick the payloads, and `e.event` narrows `e.data`.
const sub = subscribe('42', ['message_new', 'typing_start'], (e) => {
  if (e.event === 'message_new') {
    render(e.data);
    const content: string = e.data.content;
    void content;
    // @ts-expect-error: a field ChatMessage does not have
    void e.data.body;
  } else {
    assertType<Equal<typeof e.event, 'typing_start'>>();
    const typing: Typing = e.data;
    void typing;
  }
});
assertType<Equal<typeof sub, Subscription<ChatMessage | Typing>>>();
sub.close();

// null: every registered event, discriminated by name.
subscribe(userId, null, (e) => {
  switch (e.event) {
    case 'price_update': {
      const price: number = e.data.price;
      void price;
      break;
    }
    case 'user_online': {
      const who: string = e.data.userId;
      void who;
      break;
    }
    default:
      void e.data;
  }
});

// An explicit payload type still overrides the registry (every event of the call gets it).
interface LegacyMessage {
  text: string;
}
subscribe<LegacyMessage>(userId, ['message_new'], (e) => {
  const text: string = e.data.text;
  void text;
});
// A typed callback still gives its payload type (inferred, as before the registry).
const typedSub = subscribe(userId, ['price_update'], (e: RealtimeEvent<PriceUpdate>) => void e.data.price);
void typedSub;

// @ts-expect-error: a name that is not registered (a typo) does not type-check
subscribe(userId, ['mesage_new'], () => {});
// @ts-expect-error: nor does any other name once the list is registered
subscribe(userId, ['custom_event'], () => {});
// @ts-expect-error: the callback's payload is not the registered one
subscribe(userId, ['message_new'], (e: RealtimeEvent<Transaction>) => void e);

// useRealtime: names, payloads and onEvent's (event, data) pair.
export function Ticker(): ReactElement {
  const { events } = useRealtime({
    userId,
    events: ['price_update', 'user_online'],
    onEvent: (event, data, envelope) => {
      assertType<Equal<typeof event, 'price_update' | 'user_online'>>();
      assertType<Equal<typeof data, PriceUpdate | { userId: string }>>();
      // The envelope is the discriminated union.
      if (envelope.event === 'price_update') {
        const price: number = envelope.data.price;
        void price;
      } else {
        const who: string = envelope.data.userId;
        void who;
      }
    },
  });
  const last = events[events.length - 1];
  return <span>{last?.event === 'price_update' ? last.data.symbol : ''}</span>;
}

export function BadTicker(): null {
  // @ts-expect-error: not a registered name
  useRealtime({ userId, events: ['stock_price_update'] });
  useRealtime({
    userId,
    events: ['price_update'],
    // @ts-expect-error: onEvent's data is a PriceUpdate, not a ChatMessage
    onEvent: (_event: string, data: ChatMessage) => void data,
  });
  useRealtime({
    userId,
    events: ['price_update'],
    onEvent: (_event, data) => {
      // @ts-expect-error: a field PriceUpdate does not have
      void data.volume;
    },
  });
  // Callbacks with fewer arguments are fine.
  useRealtime({ userId, events: ['price_update'], onEvent: (event) => void event });
  useRealtime({ userId, events: ['price_update'], onEvent: () => {} });
  return null;
}

// The original system's chat example (reference: ChatConversation), unchanged but for the
// import: `e.data` is the app's ChatMessage, so it goes into the app's ChatMessage[].
export function ChatConversation({
  conversationId,
  currentUserId,
  recipientId,
}: {
  conversationId: string;
  currentUserId: string;
  recipientId: string;
}) {
  const [messages, setMessages] = useState<ChatMessage[]>([]);
  const [isTyping, setIsTyping] = useState(false);
  const { events, isConnected } = useRealtimeMessages(currentUserId);
  useEffect(() => {
    events.forEach((e) => {
      if (e.event === 'message_new' && e.data.conversationId === conversationId) {
        setMessages((prev) => [...prev, e.data]);
      }
      if (e.event === 'typing_start' && e.data.userId === recipientId) {
        setIsTyping(true);
      }
      if (e.event === 'typing_stop' && e.data.userId === recipientId) {
        setIsTyping(false);
      }
    });
  }, [events]);
  return (
    <div>
      {isConnected ? 'on' : 'off'} {isTyping ? '…' : ''}
      {messages.map((m) => (
        <p key={m.id}>{m.content}</p>
      ))}
    </div>
  );
}

export function Messages(): null {
  const { events } = useRealtimeMessages(userId, {
    onEvent: (_event, _data, e) => {
      if (e.event === 'message_read') {
        const at: string = e.data.readAt;
        void at;
      }
    },
  });
  const e = events[0];
  if (e?.event === 'message_new') {
    // @ts-expect-error: ChatMessage has no `text`
    void e.data.text;
  }
  // An explicit DTO still wins over the registry.
  const legacy = useRealtimeMessages<LegacyMessage>(userId);
  const text: string | undefined = legacy.events[0]?.data.text;
  // @ts-expect-error: wrong generic: a LegacyMessage is not a Transaction
  const tx: Transaction | undefined = legacy.events[0]?.data;
  void [text, tx];
  return null;
}

// Unregistered names of a specialised hook keep the stand-in DTO.
export function Balance(): null {
  const { events } = useRealtimeTransactions(userId);
  for (const e of events) {
    if (e.event === 'transaction_completed') {
      const amount: number = e.data.amount;
      const type: 'CREDIT' | 'DEBIT' = e.data.type;
      void [amount, type];
    } else {
      assertType<Equal<typeof e.data, RealtimeTransactionDto>>();
    }
  }
  return null;
}

export function Bell(): ReactElement {
  const { notifications, unreadCount } = useRealtimeNotifications({
    userId,
    onNotification: (n) => void n.link,
  });
  assertType<Equal<typeof notifications, AppNotification[]>>();
  return (
    <a href={notifications[0]?.link}>
      {unreadCount}
    </a>
  );
}

// The test client: names and payloads checked against the registry.
const rt = createTestRealtime();
const env = rt.emit('42', 'message_new', {
  id: 'm1',
  conversationId: 'c1',
  senderId: '7',
  content: 'hi',
  createdAt: '2024-01-01T00:00:00Z',
});
assertType<Equal<typeof env, RealtimeEvent<ChatMessage, 'message_new'>>>();
rt.broadcast('price_update', { symbol: 'ACME', price: 1 });
rt.emit('42', 'notification_read', { id: 'n1' });
// @ts-expect-error: a payload without the DTO's required fields
rt.emit('42', 'message_new', { content: 'hi' });
// @ts-expect-error: a wrong field type
rt.broadcast('price_update', { symbol: 'ACME', price: '1' });
// @ts-expect-error: a name that is not registered
rt.emit('42', 'custom_event', {});
// An explicit payload type is checked too, and not inferred from `data`.
rt.emit<LegacyMessage>('42', 'message_new', { text: 'hi' });
// @ts-expect-error: not a LegacyMessage
rt.emit<LegacyMessage>('42', 'message_new', { content: 'hi' });

export const app = (
  <RealtimeTestProvider client={rt}>
    <Ticker />
    <Bell />
  </RealtimeTestProvider>
);
