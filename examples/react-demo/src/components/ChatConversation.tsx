import { useEffect, useRef, useState, type FormEvent } from 'react';
import { useRealtimeMessages } from 'realtime-bridge/react';
import { sendMessage, sendTyping } from '../api';
import { clock, hue, initials } from '../format';

/** A typing indicator with no typing_stop (a producer that died) fades after this long. */
const TYPING_EXPIRES_MS = 8000;
/** Stop "typing" this long after the last keystroke. */
const TYPING_IDLE_MS = 2500;

interface Message {
  id: string;
  senderId: string;
  content: string;
  createdAt?: string;
}

/**
 * The original `ChatConversation`: `message_new`, `typing_start` and `typing_stop` through
 * useRealtimeMessages. Messages typed here go to the demo's backend, which publishes them.
 */
export function ChatConversation({
  conversationId,
  currentUserId,
  recipientId,
  emptyHint,
}: {
  conversationId: string;
  currentUserId: string;
  recipientId: string;
  emptyHint: string;
}) {
  const [messages, setMessages] = useState<Message[]>([]);
  // Who is typing, and until when (expiry).
  const [typing, setTyping] = useState<Record<string, number>>({});

  // Every event, once, in order (a burst is rendered at once: `events` is only a window).
  useRealtimeMessages(currentUserId, {
    onEvent: (_event, _data, e) => {
      const d = e.data ?? {};
      if (d.conversationId && d.conversationId !== conversationId) return;
      if (e.event === 'message_new') {
        const senderId = String(d.senderId ?? 'unknown');
        const id = String(d.id ?? e.id);
        setMessages((prev) =>
          prev.some((m) => m.id === id)
            ? prev
            : [...prev, { id, senderId, content: String(d.content ?? d.text ?? ''), createdAt: d.createdAt ?? e.timestamp }].slice(-200),
        );
        // A message from someone ends their typing.
        setTyping(({ [senderId]: _, ...rest }) => rest);
      } else if (e.event === 'typing_start' && d.userId && d.userId !== currentUserId) {
        setTyping((t) => ({ ...t, [String(d.userId)]: Date.now() + TYPING_EXPIRES_MS }));
      } else if (e.event === 'typing_stop' && d.userId) {
        setTyping(({ [String(d.userId)]: _, ...rest }) => rest);
      }
    },
  });

  // Expire stale typing indicators.
  useEffect(() => {
    const names = Object.keys(typing);
    if (!names.length) return undefined;
    const next = Math.min(...Object.values(typing)) - Date.now();
    const t = setTimeout(() => {
      const now = Date.now();
      setTyping((cur) => Object.fromEntries(Object.entries(cur).filter(([, until]) => until > now)));
    }, Math.max(50, next));
    return () => clearTimeout(t);
  }, [typing]);

  // Keep the newest message in view.
  const list = useRef<HTMLDivElement>(null);
  useEffect(() => {
    list.current?.scrollTo({ top: list.current.scrollHeight, behavior: 'smooth' });
  }, [messages.length, typing]);

  const typers = Object.keys(typing);
  return (
    <section className="card chat" aria-label="Chat">
      <div className="card-head">
        <div>
          <h2>Conversation</h2>
          <div className="muted small">
            #{conversationId} · you are <b>{currentUserId}</b>, writing to <b>{recipientId}</b>
          </div>
        </div>
        <span className="pill">message_new · typing_start · typing_stop</span>
      </div>
      <div className="messages" ref={list} id="messages">
        {messages.length === 0 && (
          <div className="empty">
            <svg className="empty-icon" viewBox="0 0 24 24" width="36" height="36" aria-hidden>
              <path
                fill="currentColor"
                d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2Zm3 6.5a1.5 1.5 0 1 0 0-3 1.5 1.5 0 0 0 0 3Zm5 0a1.5 1.5 0 1 0 0-3 1.5 1.5 0 0 0 0 3Zm5 0a1.5 1.5 0 1 0 0-3 1.5 1.5 0 0 0 0 3Z"
              />
            </svg>
            No messages yet. Run a producer in a terminal:
            <code>{emptyHint}</code>
          </div>
        )}
        {messages.map((m) => {
          const mine = m.senderId === currentUserId;
          return (
            <div key={m.id} className={`msg ${mine ? 'mine' : 'theirs'}`} data-sender={m.senderId}>
              {!mine && (
                <span className="avatar" style={{ ['--h' as string]: hue(m.senderId) }} title={m.senderId}>
                  {initials(m.senderId)}
                </span>
              )}
              <div className="bubble">
                {!mine && <div className="sender">{m.senderId}</div>}
                <div className="content">{m.content}</div>
                <div className="time">{clock(m.createdAt)}</div>
              </div>
            </div>
          );
        })}
      </div>
      <div className={`typing ${typers.length ? 'on' : ''}`} id="typing" aria-live="polite">
        {typers.length > 0 && (
          <>
            <span className="dots" aria-hidden>
              <i />
              <i />
              <i />
            </span>
            {typers.join(', ')} {typers.length > 1 ? 'are' : 'is'} typing…
          </>
        )}
      </div>
      <Composer conversationId={conversationId} currentUserId={currentUserId} recipientId={recipientId} />
    </section>
  );
}

function Composer({ conversationId, currentUserId, recipientId }: { conversationId: string; currentUserId: string; recipientId: string }) {
  const [text, setText] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const typingSent = useRef(false);
  const idle = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);

  const setTypingRemote = (isTyping: boolean) => {
    if (typingSent.current === isTyping) return;
    typingSent.current = isTyping;
    sendTyping({ conversationId, userId: currentUserId, recipientId, isTyping }).catch(() => {});
  };
  useEffect(() => () => clearTimeout(idle.current), []);

  const onChange = (v: string) => {
    setText(v);
    clearTimeout(idle.current);
    if (v.trim()) {
      setTypingRemote(true); // the original handleTyping
      idle.current = setTimeout(() => setTypingRemote(false), TYPING_IDLE_MS);
    } else {
      setTypingRemote(false);
    }
  };

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const content = text.trim();
    if (!content || busy) return;
    setBusy(true);
    setError(null);
    clearTimeout(idle.current);
    try {
      await sendMessage({ conversationId, senderId: currentUserId, recipientId, content });
      setText('');
      typingSent.current = false; // the message itself ends the typing indicator on the other side
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form className="composer" onSubmit={submit}>
      <input
        id="chat-input"
        value={text}
        onChange={(e) => onChange(e.target.value)}
        placeholder={`Message ${recipientId}…`}
        autoComplete="off"
        maxLength={2000}
      />
      <button id="chat-send" className="primary" type="submit" disabled={busy || !text.trim()}>
        Send
      </button>
      {error && <div className="error composer-error">{error}</div>}
    </form>
  );
}
