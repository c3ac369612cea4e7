// The console's only way to the server: the session endpoints and GraphQL operations by name, from
// operations.graphql. Every request sends the session's CSRF token; the session cookie itself is HttpOnly.

let csrfToken = null;
let operations = null;
export let session = null;

/** An error answered by the server, in words, with its GraphQL code (or HTTP status). */
export class ApiError extends Error {
  constructor(message, code) {
    super(message);
    this.code = code;
  }
}

/** Fired when the session has ended (signed out elsewhere, key revoked, idle too long). */
export const sessionEnded = new EventTarget();

async function loadOperations() {
  if (operations) return operations;
  const response = await fetch('operations.graphql', { cache: 'no-cache' });
  const text = await response.text();
  operations = new Map();
  let name = null;
  let lines = [];
  const flush = () => { if (name) operations.set(name, lines.join('\n')); };
  for (const line of text.split('\n')) {
    const m = /^(query|mutation|subscription) ([A-Za-z0-9_]+)/.exec(line);
    if (m) { flush(); name = m[2]; lines = []; }
    if (name && !line.startsWith('#')) lines.push(line);
  }
  flush();
  return operations;
}

async function readError(response) {
  let body = null;
  try { body = await response.json(); } catch { /* not JSON */ }
  const error = body?.error ?? body?.errors?.[0];
  const code = error?.code ?? error?.extensions?.code ?? String(response.status);
  let message = error?.message ?? `the server answered ${response.status}`;
  if (response.status === 429) {
    const wait = response.headers.get('retry-after');
    message = `Too many attempts from this address; try again in ${wait ?? 'a few'} seconds.`;
  }
  return new ApiError(message, code);
}

/** Who is signed in, or null. */
export async function currentSession() {
  const response = await fetch('session', { headers: { Accept: 'application/json' } });
  if (!response.ok) { session = null; csrfToken = null; return null; }
  session = await response.json();
  csrfToken = session.csrfToken;
  return session;
}

/** Exchanges a key for a session cookie; throws ApiError with the server's words. */
export async function signIn(key) {
  const response = await fetch('session', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ key }),
  });
  if (!response.ok) throw await readError(response);
  session = await response.json();
  csrfToken = session.csrfToken;
  return session;
}

export async function signOut() {
  await fetch('session', { method: 'DELETE', headers: { 'X-Lathe-CSRF': csrfToken ?? '' } });
  session = null;
  csrfToken = null;
}

/** Whether the signed-in key holds `scope`: what it forbids is not offered. */
export function can(scope) {
  return Boolean(session?.scopes?.includes(scope));
}

/** Runs the operation `name` of operations.graphql; resolves to its data, or throws ApiError. */
export async function gql(name, variables = {}) {
  const ops = await loadOperations();
  const query = ops.get(name);
  if (!query) throw new ApiError(`the console has no operation ${name}`, 'CONSOLE');
  const response = await fetch('/graphql', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-Lathe-CSRF': csrfToken ?? '' },
    body: JSON.stringify({ query, variables, operationName: name }),
  });
  let body = null;
  try { body = await response.json(); } catch { /* handled below */ }
  const first = body?.errors?.[0];
  if (response.status === 401 || first?.extensions?.code === 'UNAUTHENTICATED') {
    sessionEnded.dispatchEvent(new Event('ended'));
    throw new ApiError(first?.message ?? 'signed out', 'UNAUTHENTICATED');
  }
  if (first) throw new ApiError(first.message, first.extensions?.code);
  if (!response.ok || !body) throw new ApiError(`the server answered ${response.status}`, String(response.status));
  return body.data;
}

/**
 * Runs the subscription `name` over `/graphql/ws` (graphql-transport-ws; the session cookie authenticates the
 * upgrade). Calls `onEvent(data)` per message and `onState(open)` when the socket comes up or goes down; reconnects
 * with a growing pause. Returns a function that closes it for good.
 */
export function subscribe(name, variables, onEvent, onState) {
  let socket = null;
  let closed = false;
  let pause = 1000;
  let retry = null;
  const connect = async () => {
    const ops = await loadOperations();
    if (closed) return;
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/graphql/ws`;
    socket = new WebSocket(url, 'graphql-transport-ws');
    socket.onopen = () => socket.send(JSON.stringify({ type: 'connection_init', payload: {} }));
    socket.onmessage = (message) => {
      let frame;
      try { frame = JSON.parse(message.data); } catch { return; }
      if (frame.type === 'connection_ack') {
        pause = 1000;
        socket.send(JSON.stringify({ id: '1', type: 'subscribe',
          payload: { query: ops.get(name), variables: variables(), operationName: name } }));
        document.documentElement.dataset.live = 'socket';
        onState(true);
      } else if (frame.type === 'ping') {
        socket.send(JSON.stringify({ type: 'pong' }));
      } else if (frame.type === 'next') {
        onEvent(frame.payload?.data ?? null);
      } else if (frame.type === 'error') {
        socket.close();
      }
    };
    socket.onclose = () => {
      document.documentElement.dataset.live = 'polling';
      onState(false);
      if (closed) return;
      retry = setTimeout(connect, pause);
      pause = Math.min(pause * 2, 30000);
    };
  };
  connect();
  return () => { closed = true; clearTimeout(retry); socket?.close(); };
}

/**
 * Keeps `render` fed with the operation's latest data while `alive()` holds. With `subscription`, each of its
 * messages refetches (a burst of messages refetches once); without one, or while its socket is down, the data is
 * refetched every `everyMs`. Also refetched at once when the tab becomes visible again.
 */
export function live(name, variables, render, { everyMs = 2000, alive, subscription = null }) {
  let timer = null;
  let stopped = false;
  let socketUp = false;
  let pending = null;
  const fetchNow = async () => {
    try { render(await gql(name, variables()), null); } catch (error) { render(null, error); }
  };
  const tick = async () => {
    if (stopped || !alive()) { stop(); return; }
    if (document.visibilityState === 'visible') await fetchNow();
    // With a live socket, a slow poll only guards against a missed message.
    if (!stopped) timer = setTimeout(tick, socketUp ? 30000 : everyMs);
  };
  const soon = () => {
    if (pending || stopped) return;
    pending = setTimeout(() => { pending = null; if (alive()) fetchNow(); }, 150);
  };
  const closeSocket = subscription
    ? subscribe(subscription, () => ({}), soon, (up) => { socketUp = up; if (up) soon(); })
    : () => {};
  const onVisible = () => { if (document.visibilityState === 'visible') soon(); };
  document.addEventListener('visibilitychange', onVisible);
  const stop = () => {
    stopped = true;
    clearTimeout(timer);
    clearTimeout(pending);
    closeSocket();
    document.removeEventListener('visibilitychange', onVisible);
  };
  tick();
  return stop;
}
