// Type-level test of realtime-bridge/server with nothing registered in `RealtimeEvents` (the
// registry is checked in registry-server/): the original port's calls type-check unchanged, any
// valid name and payload is accepted, the errors and options are typed, and the port
// (`IRealtimeService`) is implementable without registerClient/unregisterClient.
import {
  RealtimeService,
  RealtimeServiceError,
  isRealtimeServiceError,
  type IRealtimeService,
  type Presence,
  type RealtimeServiceConnectOptions,
  type RealtimeServiceErrorCode,
  type RealtimeServiceMode,
  type SendOptions,
} from 'realtime-bridge/server';
import type { NatsConnection } from 'nats';

type Equal<A, B> = (<X>() => X extends A ? 1 : 2) extends <X>() => X extends B ? 1 : 2 ? true : false;
function assertType<T extends true>(): void {}

interface RealtimeMessageDto {
  id: string;
  content: string;
}

export async function main(nc: NatsConnection): Promise<void> {
  const options: RealtimeServiceConnectOptions = {
    servers: ['nats://127.0.0.1:4222'],
    user: 'producer',
    pass: 'secret',
    mode: 'auto',
    stream: 'REALTIME',
    maxInFlight: 256,
    ackTimeout: 5000,
    publishTimeout: 30000,
    presenceTimeout: 2000,
    maxEventBytes: 262144,
  };
  const rt = await RealtimeService.connect(options);
  const mine = new RealtimeService(nc, { mode: 'core' });
  // @ts-expect-error: not a mode
  new RealtimeService(nc, { mode: 'live' });
  const mode: RealtimeServiceMode = rt.mode;
  assertType<Equal<typeof mode, 'jetstream' | 'core'>>();

  // The seed's calls.
  await rt.sendEventToUser<RealtimeMessageDto>('42', 'message_new', { id: 'm1', content: 'hi' });
  // @ts-expect-error: `content` is missing from the given type
  await rt.sendEventToUser<RealtimeMessageDto>('42', 'message_new', { id: 'm1' });
  await rt.sendEventToUsers(['42', '43'], 'typing_start', { conversationId: 'c' });
  await rt.broadcastEvent('system_alert', { text: 'maintenance' }, { msgId: 'alert-1' });
  await rt.sendEventToUser('42', 'anything_else', 42);
  const opts: SendOptions = { msgId: 'x' };
  await mine.sendEventToUser('42', 'ev', null, opts);
  // @ts-expect-error: the options are an object
  await rt.sendEventToUser('42', 'ev', {}, 'x');

  const clients: string[] = await rt.getConnectedClients('42');
  const connected: boolean = await rt.isUserConnected('42');
  const p: Presence = await rt.getPresence('42');
  const ids: string[] = p.clients.map((c) => `${c.id}@${c.instance} since ${c.since}`);
  void [clients, connected, ids, p.streams];
  await rt.flush();
  await rt.close();

  try {
    await rt.sendEventToUser('42', 'ev', {});
  } catch (e) {
    if (isRealtimeServiceError(e)) {
      const code: RealtimeServiceErrorCode = e.code;
      // @ts-expect-error: not a code
      const wrong: RealtimeServiceErrorCode = 'forbidden';
      void [code, wrong, e.userId];
    }
    if (e instanceof RealtimeServiceError && e.code === 'closed') return;
  }
}

// The port, implemented by an app's in-memory fake (no registerClient/unregisterClient needed).
export class FakeRealtime implements IRealtimeService {
  sent: unknown[] = [];
  async sendEventToUser(userId: string, event: string, data: unknown): Promise<void> {
    this.sent.push([userId, event, data]);
  }
  async sendEventToUsers(userIds: readonly string[], event: string, data: unknown): Promise<void> {
    for (const u of userIds) await this.sendEventToUser(u, event, data);
  }
  async broadcastEvent(event: string, data: unknown): Promise<void> {
    this.sent.push(['*', event, data]);
  }
  async getConnectedClients(): Promise<string[]> {
    return [];
  }
  async isUserConnected(): Promise<boolean> {
    return false;
  }
}
export const asPort: IRealtimeService = new FakeRealtime();
