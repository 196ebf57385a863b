// Type-level test: the registry declared through `realtime-bridge/testing` (e.g. in a test setup
// file that imports only that entry point) reaches every entry point: one interface, re-exported.
// (All of an app's registration blocks must name the same module: TypeScript does not merge
// augmentations made through two different entry points.)
import { subscribe, type RealtimeEventName, type RealtimeEvents } from 'realtime-bridge';
import { useRealtime, type RealtimeEvents as RealtimeEventsReact } from 'realtime-bridge/react';
import { createTestRealtime, type RealtimeEvents as RealtimeEventsTesting } from 'realtime-bridge/testing';

type Equal<A, B> = (<X>() => X extends A ? 1 : 2) extends <X>() => X extends B ? 1 : 2 ? true : false;
function assertType<T extends true>(): void {}

interface Order {
  orderId: string;
  total: number;
}

declare module 'realtime-bridge/testing' {
  interface RealtimeEvents {
    order_placed: Order;
    order_cancelled: { orderId: string };
  }
}

assertType<Equal<RealtimeEvents, RealtimeEventsReact>>();
assertType<Equal<RealtimeEvents, RealtimeEventsTesting>>();
assertType<Equal<RealtimeEventName, 'order_placed' | 'order_cancelled'>>();

subscribe('42', ['order_placed'], (e) => {
  const total: number = e.data.total;
  void total;
});
// @ts-expect-error: not registered
subscribe('42', ['order_shipped'], () => {});

export function Orders() {
  const { events } = useRealtime({ userId: '42', events: ['order_placed', 'order_cancelled'] });
  const e = events[0];
  return <span>{e?.event === 'order_placed' ? e.data.total : e?.data.orderId}</span>;
}

const rt = createTestRealtime();
rt.emit('42', 'order_placed', { orderId: 'o1', total: 3 });
// @ts-expect-error: `total` is a number
rt.emit('42', 'order_placed', { orderId: 'o1', total: '3' });
