// Every entry point, as an app imports them; type-checked by the three tsconfig.*.json.
import { configure, isRealtimeError, subscribe } from 'realtime-bridge';
import type { RealtimeMessageDto, Subscription } from 'realtime-bridge';
import { RealtimeProvider, useRealtimeMessages } from 'realtime-bridge/react';
import { createTestRealtime, RealtimeTestProvider } from 'realtime-bridge/testing';

configure({ url: 'http://127.0.0.1:8080' });
const sub: Subscription<RealtimeMessageDto> = subscribe<RealtimeMessageDto>('42', ['message_new'], (e) => {
  const content: string | undefined = e.data.content;
  void content;
});
sub.close();
export const known: boolean = isRealtimeError(new Error('x'));

export function Inbox() {
  const { events, isConnected } = useRealtimeMessages('42');
  return <p>{isConnected ? events.length : 'offline'}</p>;
}

const rt = createTestRealtime();
rt.emit('42', 'message_new', { content: 'hi' });
export const app = (
  <RealtimeProvider url="http://127.0.0.1:8080">
    <RealtimeTestProvider client={rt}>
      <Inbox />
    </RealtimeTestProvider>
  </RealtimeProvider>
);

// The .wasm by URL: the same API, an asynchronous load.
import { load as loadByUrl, subscribe as subscribeByUrl } from 'realtime-bridge/url';
import { useRealtime as useRealtimeByUrl } from 'realtime-bridge/url/react';

export const ready: Promise<void> = loadByUrl(new URL('https://cdn.example.com/realtime_bridge_sdk_bg.wasm'));
subscribeByUrl('42', null, () => {}).close();
export function Feed() {
  const { status, error } = useRealtimeByUrl({ userId: '42' });
  return <p>{error?.code === 'wasm_load_failed' ? 'no wasm' : status}</p>;
}
