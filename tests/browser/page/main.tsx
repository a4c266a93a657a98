// Test page for the browser tests: one usePresence per tab, its snapshots kept in
// window.__presence (latest) and window.__history (every change) for the test to read.
import { createElement as h, useEffect } from 'react';
import { createRoot } from 'react-dom/client';
import { usePresence } from '../../../clients/js/src/react';

type Row = { userId: string; sessions: number };
type Seen = { t: number; online: number; sessions: number; users: Row[]; status: string; transport: string; mode: string };

const q = new URLSearchParams(location.search);
const api = q.get('api') ?? location.origin;
const artifactId = q.get('artifact') ?? 'doc-1';
const token = q.get('token') ?? '';
const versionId = q.get('version') ?? undefined;
const idle = q.get('idle');
const w = window as unknown as { __presence?: Seen; __history: Seen[]; __errors: string[] };
w.__history = [];
w.__errors = [];

function App() {
  const p = usePresence(artifactId, {
    baseUrl: api,
    getToken: () => token,
    versionId,
    ...(idle != null ? { idleAfterS: Number(idle) } : {}),
    onError: (err) => w.__errors.push(`${err.status} ${err.operation} ${err.message}`),
  });
  useEffect(() => {
    const seen: Seen = {
      t: performance.timeOrigin + performance.now(),
      online: p.online,
      sessions: p.sessions,
      users: p.users.map((u) => ({ userId: u.userId, sessions: u.sessions })),
      status: p.status,
      transport: p.transport,
      mode: p.mode,
    };
    w.__presence = seen;
    w.__history.push(seen);
  }, [p.online, p.sessions, p.users, p.status, p.transport, p.mode]);
  return h(
    'main',
    { id: 'presence', 'data-online': p.online, 'data-sessions': p.sessions, 'data-transport': p.transport },
    h('p', null, `${p.online} online, ${p.sessions} sessions (${p.transport}, ${p.status})`),
    h('ul', null, p.users.map((u) => h('li', { key: u.userId }, `${u.userId}: ${u.sessions} sessions`))),
  );
}

createRoot(document.getElementById('root')!).render(h(App));
