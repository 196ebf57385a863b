// Type-level test: the original system's examples (reference/seed-realtime-system.fr.md),
// with only the import paths changed, must type-check against the package's .d.ts.
import { useEffect, useState, type ReactElement } from 'react';
import {
  configure,
  subscribe,
  type MessageEventType,
  type NotificationEventType,
  type RealtimeEvent,
  type RealtimeEventDto,
  type RealtimeMessageDto,
  type RealtimeNotificationDto,
  type RealtimeTransactionDto,
  type Subscription,
  type SubscriptionStatus,
  type TransactionEventType,
} from 'realtime-bridge';
import {
  RealtimeProvider,
  useRealtime,
  useRealtimeMessages,
  useRealtimeNotifications,
  useRealtimeTransactions,
} from 'realtime-bridge/react';
import { createTestRealtime, RealtimeTestProvider } from 'realtime-bridge/testing';

declare const userId: string;
declare function Message(props: { data: RealtimeMessageDto }): ReactElement;
declare function refetchBalance(): void;

// docs/protocol.md §6
configure({ url: 'https://rt.example.com', getToken: async () => 'jwt' });
const sub: Subscription<RealtimeMessageDto> = subscribe<RealtimeMessageDto>('42', ['message_new', 'typing_start'], (e) => {
  const id: string = e.id;
  const ev: string = e.event;
  const data: RealtimeMessageDto = e.data;
  const ts: string = e.timestamp;
  const uid: string | undefined = e.userId;
  void [id, ev, data, ts, uid];
});
const status: SubscriptionStatus = sub.status;
const cursor: string | null = sub.lastEventId;
sub.reconnect();
sub.close();
sub[Symbol.dispose]();
void [status, cursor];
// @ts-expect-error: status is a closed union
const bad: SubscriptionStatus = 'opened';
void bad;

const n: NotificationEventType = 'notification_read';
const m: MessageEventType = 'typing_stop';
const t: TransactionEventType = 'transaction_failed';
// @ts-expect-error: not a message event
const wrong: MessageEventType = 'transaction_failed';
void [n, m, t, wrong];
const dto: RealtimeEventDto<RealtimeNotificationDto> = { event: 'notification', data: { id: '1' }, timestamp: '' };
void dto;

export function ChatComponent() {
  const { events, isConnected } = useRealtimeMessages(userId);
  return (
    <div>
      {isConnected ? 'on' : 'off'}
      {events.map((e) => e.event === 'message_new' && <Message data={e.data} />)}
    </div>
  );
}

export function AccountDashboard() {
  const { events } = useRealtimeTransactions(userId);
  useEffect(() => {
    events.forEach((e) => {
      if (e.event === 'transaction_completed') {
        refetchBalance();
      }
    });
  }, [events]);
  return null;
}

export function NotificationBell() {
  const { notifications } = useRealtimeNotifications({ userId });
  const first: RealtimeNotificationDto | undefined = notifications[0];
  return <span>{first?.title}</span>;
}

export function CustomComponent() {
  const { events, isConnected, status, reconnect, disconnect, clearEvents } = useRealtime({
    userId,
    events: ['custom_event', 'another_event'],
    onEvent: (event, data) => {
      console.log('Événement reçu:', event, data);
    },
  });
  void [events, isConnected, status, reconnect, disconnect, clearEvents];
  return null;
}

export function AccountBalance({ accountId, initialBalance }: { accountId: string; initialBalance: number }) {
  const [balance, setBalance] = useState(initialBalance);
  const { events } = useRealtimeTransactions(userId);
  useEffect(() => {
    events.forEach((e) => {
      if (e.event === 'transaction_completed' && e.data.accountId === accountId) {
        if (e.data.type === 'CREDIT') {
          setBalance((prev) => prev + e.data.amount);
        } else {
          setBalance((prev) => prev - e.data.amount);
        }
      }
    });
  }, [events]);
  return <h2>Solde: {balance}€</h2>;
}

interface MyDto {
  price: number;
}
export function Typed() {
  const { events } = useRealtime<MyDto>({ userId, events: ['stock_price_update'], maxEvents: 10 });
  const last: RealtimeEvent<MyDto> | undefined = events[events.length - 1];
  const price: number | undefined = last?.data.price;
  return <span>{price}</span>;
}

export function App() {
  const rt = createTestRealtime();
  rt.emit<MyDto>('42', 'stock_price_update', { price: 1 });
  return (
    <RealtimeProvider url="https://rt.example.com" getToken={() => 'jwt'} onError={(e) => console.log(e.status, e.final)}>
      <RealtimeTestProvider client={rt}>
        <Typed />
      </RealtimeTestProvider>
    </RealtimeProvider>
  );
}
