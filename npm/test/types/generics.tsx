// Type-level test, nothing registered in `RealtimeEvents`: the specialised hooks take the app's
// own DTOs as a type argument (the migration path without a registry), their defaults stay the
// stand-in DTOs, and names and payloads stay as loose as before the registry existed.
import { useEffect, useState, type ReactElement } from 'react';
import {
  subscribe,
  type EventCallback,
  type EventType,
  type RealtimeClient,
  type RealtimeEvent,
  type RealtimeEventName,
  type RealtimeMessageDto,
  type RealtimeNotificationDto,
  type RealtimeTransactionDto,
  type SubscribeOptions,
  type Subscription,
} from 'realtime-bridge';
import {
  RealtimeProvider,
  useRealtime,
  useRealtimeMessages,
  useRealtimeNotifications,
  useRealtimeTransactions,
  type UseRealtimeOptions,
  type UseRealtimeResult,
} from 'realtime-bridge/react';
import { createTestRealtime } from 'realtime-bridge/testing';

type Equal<A, B> = (<X>() => X extends A ? 1 : 2) extends <X>() => X extends B ? 1 : 2 ? true : false;
function assertType<T extends true>(): void {}

// The app's DTOs: every field required, no index signature.
interface Message {
  id: string;
  conversationId: string;
  senderId: string;
  userId: string;
  content: string;
}
interface AppNotification {
  id: string;
  title: string;
  link: string;
  read: boolean;
}
interface Transaction {
  accountId: string;
  amount: number;
  type: 'CREDIT' | 'DEBIT';
}

declare const userId: string;

// Nothing registered: any name, payloads as before.
assertType<Equal<RealtimeEventName, EventType>>();
subscribe(userId, ['mesage_new', 'anything'], (e) => {
  assertType<Equal<typeof e, RealtimeEvent<unknown>>>();
});
const loose = subscribe(userId, null, () => {});
assertType<Equal<typeof loose, Subscription<unknown>>>();
const typed = subscribe<Message>(userId, ['message_new'], (e) => void e.data.content);
assertType<Equal<typeof typed, Subscription<Message>>>();
// A typed callback gives the payload type, as before.
const inferred = subscribe(userId, ['message_new'], (e: RealtimeEvent<Message>) => void e.data.id);
assertType<Equal<typeof inferred, Subscription<Message>>>();

// The seed's chat (ChatConversation) with the app's own Message: one type argument.
export function ChatConversation({
  conversationId,
  currentUserId,
  recipientId,
}: {
  conversationId: string;
  currentUserId: string;
  recipientId: string;
}) {
  const [messages, setMessages] = useState<Message[]>([]);
  const [isTyping, setIsTyping] = useState(false);
  const { events, isConnected } = useRealtimeMessages<Message>(currentUserId);
  useEffect(() => {
    events.forEach((e) => {
      if (e.event === 'message_new' && e.data.conversationId === conversationId) {
        setMessages((prev) => [...prev, e.data]);
      }
      if (e.event === 'typing_start' && e.data.userId === recipientId) setIsTyping(true);
      if (e.event === 'typing_stop' && e.data.userId === recipientId) setIsTyping(false);
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

export function Hooks(): ReactElement {
  // Defaults: the stand-in DTOs, exactly as before.
  const messages = useRealtimeMessages(userId);
  assertType<Equal<typeof messages, UseRealtimeResult<RealtimeMessageDto>>>();
  const transactions = useRealtimeTransactions(userId);
  assertType<Equal<typeof transactions.events, RealtimeEvent<RealtimeTransactionDto>[]>>();
  const { notifications: standIns } = useRealtimeNotifications({ userId });
  assertType<Equal<typeof standIns, RealtimeNotificationDto[]>>();
  const anyData = useRealtime({ userId, events: ['custom_event'] });
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  assertType<Equal<typeof anyData, UseRealtimeResult<any>>>();

  // The app's DTOs.
  const { events: txs } = useRealtimeTransactions<Transaction>(userId, {
    onEvent: (event, data) => {
      if (event === 'transaction_completed') {
        const amount: number = data.amount;
        void amount;
      }
    },
  });
  const { notifications, unreadCount } = useRealtimeNotifications<AppNotification>({
    userId,
    onNotification: (n) => {
      const link: string = n.link;
      void link;
    },
  });
  assertType<Equal<typeof notifications, AppNotification[]>>();
  const first: Transaction | undefined = txs[0]?.data;

  // Wrong generics are caught.
  const msgs = useRealtimeMessages<Message>(userId);
  // @ts-expect-error: a Message is not a Transaction
  const notTx: Transaction | undefined = msgs.events[0]?.data;
  // @ts-expect-error: onEvent's data is a Message, not a Transaction
  useRealtimeMessages<Message>(userId, { onEvent: (_event: string, data: Transaction) => void data });
  // @ts-expect-error: onNotification gets an AppNotification
  useRealtimeNotifications<AppNotification>({ userId, onNotification: (n: Transaction) => void n });
  // @ts-expect-error: a field the app's DTO does not have
  void notifications[0]?.body;
  // useRealtime<T>: one payload type for all its events, as before.
  const { events: typedEvents } = useRealtime<Transaction>({ userId, events: ['transaction_completed'] });
  // @ts-expect-error: a Transaction has no `content`
  void typedEvents[0]?.data.content;
  void [first, notTx];
  return <span>{unreadCount}</span>;
}

// Options and results keep their one-parameter form.
const options: UseRealtimeOptions<Transaction> = {
  userId,
  events: ['transaction_completed'],
  onEvent: (event: string, data: Transaction, envelope: RealtimeEvent<Transaction>) => void [event, data, envelope],
};
void options;

// A client written against the earlier `RealtimeClient` signature still is one.
const ownClient = {
  subscribe<T = unknown>(
    _userId: string,
    _events: readonly EventType[] | null | undefined,
    _callback: EventCallback<T>,
    _options?: SubscribeOptions,
  ): Subscription<T> {
    throw new Error('not in a type test');
  },
};
const asClient: RealtimeClient = ownClient;
void asClient;

// The test client: any name, data inferred (the envelope carries its type).
const rt = createTestRealtime();
const env = rt.emit('42', 'custom_event', { n: 1 });
assertType<Equal<typeof env, RealtimeEvent<{ n: number }>>>();
const explicit = rt.broadcast<Message>('message_new', { id: '1', conversationId: 'c', senderId: 's', userId: 'u', content: 'x' });
assertType<Equal<typeof explicit, RealtimeEvent<Message>>>();
// @ts-expect-error: an explicit type is checked
rt.emit<Message>('42', 'message_new', { content: 'hi' });

export const app = <RealtimeProvider client={rt}>{null}</RealtimeProvider>;
