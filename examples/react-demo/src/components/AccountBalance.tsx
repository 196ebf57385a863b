import { useEffect, useState } from 'react';
import { useRealtimeTransactions } from 'realtime-bridge/react';
import { fetchAccount, type Account } from '../api';
import { clock, money } from '../format';

interface Tx {
  id: string;
  cents: number; // signed
  at?: string;
}

/**
 * The original `AccountBalance`: `transaction_completed` credits and debits the balance at
 * once, through useRealtimeTransactions. Amounts are kept in cents.
 */
export function AccountBalance({ userId }: { userId: string }) {
  const [account, setAccount] = useState<Account | null>(null);
  // Balance = the initial balance (from the app's backend) + what arrived since.
  const [deltaCents, setDeltaCents] = useState(0);
  const [recent, setRecent] = useState<Tx[]>([]);
  const [flash, setFlash] = useState<'up' | 'down' | null>(null);
  // Every event, once, in order (a burst is rendered at once: `events` is only a window).
  useRealtimeTransactions(userId, {
    onEvent: (_event, _data, e) => {
      const d = e.data;
      if (e.event !== 'transaction_completed' || !d) return;
      if (d.accountId && account && d.accountId !== account.accountId) return;
      const amount = Math.round(Number(d.amount) * 100);
      const signed = !Number.isFinite(amount) ? 0 : d.type === 'CREDIT' ? amount : d.type === 'DEBIT' ? -amount : 0;
      if (!signed) return;
      setDeltaCents((c) => c + signed);
      setRecent((r) => [{ id: String(d.transactionId ?? e.id), cents: signed, at: e.timestamp }, ...r].slice(0, 5));
      setFlash(signed > 0 ? 'up' : 'down');
    },
  });

  useEffect(() => {
    fetchAccount(userId).then(setAccount, () => {});
  }, [userId]);

  useEffect(() => {
    if (!flash) return undefined;
    const t = setTimeout(() => setFlash(null), 900);
    return () => clearTimeout(t);
  }, [flash, deltaCents]);

  const cents = account ? Math.round(account.balance * 100) + deltaCents : null;

  return (
    <section className="card balance" aria-label="Balance">
      <div className="card-head">
        <div>
          <h2>Balance</h2>
          <div className="muted small">{account ? `account ${account.accountId}` : '…'}</div>
        </div>
        <span className="pill">transaction_completed</span>
      </div>
      <div id="balance" className={`amount ${flash ?? ''}`}>
        {cents === null ? '…' : money(cents, account?.currency)}
      </div>
      <ul className="txs">
        {recent.length === 0 && <li className="muted small">No transactions yet.</li>}
        {recent.map((t) => (
          <li key={t.id}>
            <span className={t.cents >= 0 ? 'credit' : 'debit'}>
              {t.cents >= 0 ? '+' : '−'}
              {money(Math.abs(t.cents), account?.currency)}
            </span>
            <span className="muted small">{t.cents >= 0 ? 'credit' : 'debit'} · {clock(t.at)}</span>
          </li>
        ))}
      </ul>
    </section>
  );
}
