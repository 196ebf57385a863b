/**
 * Realtime Bridge example producer in TypeScript (realtime-bridge/server, over nats.js).
 *
 *   npm start -- [NATS_URL] [USER_ID]      # or NATS_URL=... USER_ID=... npm start
 *
 * The original system's server side with NATS as the realtime service: the port
 * (`IRealtimeService`) is `realtime-bridge/server`'s `RealtimeService`, whose `sendEventToUser`
 * publishes on `user.<userId>.<event>` (through JetStream, acknowledged, when the bridge keeps
 * history); the use cases SendRealtimeMessage, NotifyTransactionCompleted and NotifyTyping are
 * functions of the port. One scenario for USER_ID:
 * "node-service is typing…" for TYPING_MS (1500 ms), a chat message, a completed DEBIT of 42.50
 * on account `acc-<USER_ID>`, and a notification. Exit code 69 when NATS is not reachable.
 */
import { RealtimeService, type IRealtimeService } from 'realtime-bridge/server';

const EX_USAGE = 64;
const EX_UNAVAILABLE = 69;
const TOKEN = /^[A-Za-z0-9_-]{1,128}$/;

// --- DTOs (realtime.dto.ts) ----------------------------------------------------------------
interface RealtimeMessageDto {
  id: string;
  conversationId: string;
  senderId: string;
  recipientId: string;
  content: string;
  createdAt: string;
}
interface RealtimeTransactionDto {
  transactionId: string;
  accountId: string;
  userId: string;
  amount: number;
  type: 'CREDIT' | 'DEBIT';
  status: 'COMPLETED';
  completedAt: string;
}
interface RealtimeNotificationDto {
  id: string;
  type: string;
  title: string;
  message: string;
  read: boolean;
  createdAt: string;
}

// --- Use cases ------------------------------------------------------------------------------
const newId = (prefix: string) => `${prefix}-ts-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;

export async function sendRealtimeMessage(
  rt: IRealtimeService,
  input: { conversationId: string; senderId: string; recipientId: string; content: string },
): Promise<void> {
  const dto: RealtimeMessageDto = { id: newId('msg'), ...input, createdAt: new Date().toISOString() };
  // The message's id as Nats-Msg-Id: if this call is retried, the chat shows it once.
  await rt.sendEventToUser(input.recipientId, 'message_new', dto, { msgId: dto.id });
}

export async function notifyTransactionCompleted(
  rt: IRealtimeService,
  input: { transactionId: string; accountId: string; userId: string; amount: number; type: 'CREDIT' | 'DEBIT' },
): Promise<void> {
  const dto: RealtimeTransactionDto = { ...input, status: 'COMPLETED', completedAt: new Date().toISOString() };
  await rt.sendEventToUser(input.userId, 'transaction_completed', dto);
}

export async function notifyTyping(
  rt: IRealtimeService,
  input: { conversationId: string; userId: string; recipientId: string; isTyping: boolean },
): Promise<void> {
  const event = input.isTyping ? 'typing_start' : 'typing_stop';
  await rt.sendEventToUser(input.recipientId, event, { conversationId: input.conversationId, userId: input.userId });
}

export async function sendNotification(rt: IRealtimeService, userId: string, title: string, message: string): Promise<void> {
  const dto: RealtimeNotificationDto = {
    id: newId('notif'),
    type: 'info',
    title,
    message,
    read: false,
    createdAt: new Date().toISOString(),
  };
  await rt.sendEventToUser(userId, 'notification', dto);
}

// --- Main -----------------------------------------------------------------------------------
const natsUrl = process.argv[2] || process.env.NATS_URL || 'nats://127.0.0.1:4222';
const userId = process.argv[3] || process.env.USER_ID || '42';
const typingMs = Number(process.argv[4] || process.env.TYPING_MS || 1500);
if (!TOKEN.test(userId) || !Number.isFinite(typingMs)) {
  console.error(`producer: USER_ID must be 1 to 128 characters of [A-Za-z0-9_-] and TYPING_MS a number`);
  process.exit(EX_USAGE);
}

let rt: RealtimeService;
try {
  // No reconnect loop: fail fast with a message a person can act on.
  rt = await RealtimeService.connect({ servers: natsUrl, name: 'realtime-bridge-example-node', timeout: 3000, reconnect: false });
} catch (e) {
  const why = e instanceof Error && e.cause instanceof Error ? e.cause.message : (e as Error).message;
  console.error(`NATS not reachable at ${natsUrl}: is nats-server running? (${why})`);
  process.exit(EX_UNAVAILABLE);
}

const me = 'node-service';
const conversationId = 'demo';
try {
  await notifyTyping(rt, { conversationId, userId: me, recipientId: userId, isTyping: true });
  await rt.flush();
  console.log(`typing_start          → user.${userId}.typing_start (${me} is typing for ${typingMs} ms)`);
  await new Promise((r) => setTimeout(r, typingMs));

  await sendRealtimeMessage(rt, { conversationId, senderId: me, recipientId: userId, content: 'Hello from Node.js (nats.js)' });
  await notifyTyping(rt, { conversationId, userId: me, recipientId: userId, isTyping: false });
  console.log(`message_new           → user.${userId}.message_new`);

  await notifyTransactionCompleted(rt, {
    transactionId: newId('tx'),
    accountId: `acc-${userId}`,
    userId,
    amount: 42.5,
    type: 'DEBIT',
  });
  console.log(`transaction_completed → DEBIT 42.50 on acc-${userId}`);

  await sendNotification(rt, userId, 'Card payment', 'Node service debited 42.50 € (coffee beans)');
  console.log(`notification          → user.${userId}.notification`);
  await rt.close();
} catch (e) {
  console.error(`producer: publishing to ${natsUrl} failed: ${(e as Error).message}`);
  process.exit(EX_UNAVAILABLE);
}
