import { useState, type FormEvent } from 'react';

const ID = /^[A-Za-z0-9_-]{1,128}$/;

export function SignIn({ onSignIn }: { onSignIn: (s: { userId: string; peerId: string }) => void }) {
  const [userId, setUserId] = useState('42');
  const [peerId, setPeerId] = useState('7');
  const valid = ID.test(userId) && ID.test(peerId);
  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (valid) onSignIn({ userId, peerId });
  };
  return (
    <div className="signin-page">
      <form className="card signin" onSubmit={submit}>
        <div className="brand big">
          <span className="logo" aria-hidden />
          Realtime Bridge <span className="muted">demo</span>
        </div>
        <p className="muted">
          Chat with a typing indicator, a live balance and a notification bell, fed by NATS through the bridge's
          Server-Sent Events.
        </p>
        <label>
          Sign in as user id
          <input id="signin-user" value={userId} onChange={(e) => setUserId(e.target.value.trim())} autoFocus />
        </label>
        <label>
          Chat with user id
          <input id="signin-peer" value={peerId} onChange={(e) => setPeerId(e.target.value.trim())} />
        </label>
        {!valid && <p className="error">Ids are 1 to 128 characters of A–Z a–z 0–9 _ -</p>}
        <button className="primary" type="submit" disabled={!valid}>
          Sign in
        </button>
        <p className="fineprint">
          Dev sign-in: the demo's server signs a token for any id. A real app signs one for the user of its session.
        </p>
      </form>
    </div>
  );
}
