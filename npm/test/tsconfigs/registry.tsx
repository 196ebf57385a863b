// An app that registers its event payloads (`RealtimeEvents`): type-checked by the three
// tsconfig.registry.*.json, so that the one registration reaches every entry point under
// moduleResolution node (typesVersions), node16 (CommonJS: the .d.cts) and bundler.
import { subscribe, type Subscription } from 'realtime-bridge';
import { useRealtimeMessages, useRealtimeNotifications } from 'realtime-bridge/react';
import { createTestRealtime, RealtimeTestProvider } from 'realtime-bridge/testing';
import { RealtimeService } from 'realtime-bridge/server';

interface ChatMessage {
  id: string;
  content: string;
}
interface AppNotification {
  id: string;
  link: string;
}

declare module 'realtime-bridge' {
  interface RealtimeEvents {
    message_new: ChatMessage;
    notification: AppNotification;
  }
}

const sub: Subscription<ChatMessage> = subscribe('42', ['message_new'], (e) => {
  const content: string = e.data.content;
  void content;
});
sub.close();
// @ts-expect-error: registered names only
subscribe('42', ['message_nwe'], () => {});

export function Inbox() {
  const { events } = useRealtimeMessages('42');
  const { notifications } = useRealtimeNotifications({ userId: '42' });
  const last = events[events.length - 1];
  return (
    <p>
      {last?.event === 'message_new' ? last.data.content : ''} {notifications[0]?.link}
    </p>
  );
}

const rt = createTestRealtime();
rt.emit('42', 'message_new', { id: 'm1', content: 'hi' });
// @ts-expect-error: the registered payload has required fields
rt.emit('42', 'message_new', { content: 'hi' });
export const app = (
  <RealtimeTestProvider client={rt}>
    <Inbox />
  </RealtimeTestProvider>
);

// The Node service's side: the same registration types realtime-bridge/server.
export async function notify(service: RealtimeService): Promise<void> {
  await service.sendEventToUser('42', 'message_new', { id: 'm1', content: 'hi' });
  // @ts-expect-error: the registered payload has required fields
  await service.sendEventToUser('42', 'message_new', { content: 'hi' });
  // @ts-expect-error: registered names only
  await service.broadcastEvent('message_nwe', {});
}
