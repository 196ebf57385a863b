// Type-level test: a Node service that imports only realtime-bridge/server registers its events
// there (`declare module 'realtime-bridge/server'`): it is the same `RealtimeEvents` as the
// hooks', and from then on the service's event names and payloads are closed to it.
import { RealtimeService, type IRealtimeService, type RealtimeEventName, type RealtimeEvents } from 'realtime-bridge/server';
import type { RealtimeEvents as RealtimeEventsRoot } from 'realtime-bridge';

type Equal<A, B> = (<X>() => X extends A ? 1 : 2) extends <X>() => X extends B ? 1 : 2 ? true : false;
function assertType<T extends true>(): void {}

interface Order {
  orderId: string;
  total: number;
}

declare module 'realtime-bridge/server' {
  interface RealtimeEvents {
    order_placed: Order;
    order_cancelled: { orderId: string };
  }
}

assertType<Equal<RealtimeEvents, RealtimeEventsRoot>>();
assertType<Equal<RealtimeEventName, 'order_placed' | 'order_cancelled'>>();

export async function service(rt: RealtimeService): Promise<void> {
  await rt.sendEventToUser('42', 'order_placed', { orderId: 'o1', total: 3 });
  await rt.sendEventToUsers(['42', '43'], 'order_cancelled', { orderId: 'o1' }, { msgId: 'cancel-o1' });
  await rt.broadcastEvent('order_cancelled', { orderId: 'o1' });
  // @ts-expect-error: not registered
  await rt.sendEventToUser('42', 'order_shipped', { orderId: 'o1' });
  // @ts-expect-error: `total` is a number
  await rt.sendEventToUser('42', 'order_placed', { orderId: 'o1', total: '3' });
  // @ts-expect-error: `total` is missing
  await rt.sendEventToUser('42', 'order_placed', { orderId: 'o1' });
  // @ts-expect-error: the payload of another event
  await rt.broadcastEvent('order_placed', { orderId: 'o1' });
  // @ts-expect-error: not registered
  await rt.broadcastEvent('message_new', {});
  // An explicit type argument gives the call its own payload type (as with the hooks), but the
  // name is still checked.
  await rt.sendEventToUser<{ legacy: true }>('42', 'order_placed', { legacy: true });
  // @ts-expect-error: not registered
  await rt.sendEventToUser<{ legacy: true }>('42', 'order_shipped', { legacy: true });
  // The port's type carries the same checks.
  const port: IRealtimeService = rt;
  // @ts-expect-error: `total` is a number
  await port.sendEventToUser('42', 'order_placed', { orderId: 'o1', total: '3' });
  await port.sendEventToUser('42', 'order_placed', { orderId: 'o1', total: 3 });
}
