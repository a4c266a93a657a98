/* Fakes for the browser globals createPresence() uses, and a deterministic clock. */
import type { PresenceOptions } from '../src/index.js';

/** Lets pending promises (fetch, res.json(), getToken) settle. */
export async function flush(rounds = 20): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

interface Timer {
  at: number;
  seq: number;
  fn: () => void;
}

export class FakeClock {
  now = 0;
  private seq = 0;
  private timers = new Map<number, Timer>();

  setTimeout = (fn: () => void, ms: number): number => {
    const id = ++this.seq;
    this.timers.set(id, { at: this.now + Math.max(0, Number(ms) || 0), seq: id, fn });
    return id;
  };

  clearTimeout = (id: unknown): void => {
    this.timers.delete(id as number);
  };

  /** Delays (from now) of the pending timers, sorted. */
  pending(): number[] {
    return Array.from(this.timers.values(), (t) => t.at - this.now).sort((a, b) => a - b);
  }

  /** Moves time forward, firing due timers in order and letting promises settle after each. */
  async advance(ms: number): Promise<void> {
    const target = this.now + ms;
    await flush();
    for (;;) {
      let next: [number, Timer] | null = null;
      for (const entry of this.timers) {
        if (entry[1].at <= target && (!next || entry[1].at < next[1].at || (entry[1].at === next[1].at && entry[1].seq < next[1].seq))) {
          next = entry;
        }
      }
      if (!next) break;
      this.timers.delete(next[0]);
      this.now = next[1].at;
      next[1].fn();
      await flush();
    }
    this.now = target;
    await flush();
  }
}

export interface Call {
  at: number;
  method: string;
  url: string;
  path: string;
  headers: Record<string, string>;
  body: any;
  keepalive: boolean;
}

export type Handler = (call: Call) => Response | undefined | Promise<Response | undefined>;

export function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  const type = status >= 400 ? 'application/problem+json' : 'application/json';
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': type, ...headers } });
}

export function problem(status: number, title: string, headers: Record<string, string> = {}): Response {
  return json(status, { type: 'about:blank', title, status, detail: title }, headers);
}

export const BASE = 'https://presence.test';

/** A scripted presence-svc: records every request; `handler` may answer, else the defaults do. */
export class FakeServer {
  calls: Call[] = [];
  handler: Handler | null = null;
  intervalS = 10;
  online = 1;
  sessions = 1;
  validTokens = new Set(['t1']);

  constructor(private clock: FakeClock) {}

  fetch = async (input: string, init: RequestInit = {}): Promise<Response> => {
    const url = new URL(input);
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries((init.headers as Record<string, string>) ?? {})) headers[k.toLowerCase()] = v;
    let body: any = init.body;
    if (typeof body === 'string') {
      try {
        body = JSON.parse(body);
      } catch {
        // keep the raw string
      }
    }
    const call: Call = {
      at: this.clock.now,
      method: init.method ?? 'GET',
      url: input,
      path: url.pathname,
      headers,
      body,
      keepalive: init.keepalive === true,
    };
    this.calls.push(call);
    const custom = this.handler ? await this.handler(call) : undefined;
    if (custom) return custom;
    return this.defaultAnswer(call);
  };

  private defaultAnswer(call: Call): Response {
    const token = (call.headers['authorization'] ?? '').replace(/^Bearer /, '');
    if (!this.validTokens.has(token)) return problem(401, 'Unauthorized');
    if (call.path === '/v1/heartbeat') return json(200, { online: this.online, sessions: this.sessions, intervalS: this.intervalS });
    if (call.path === '/v1/views') return json(200, { counted: true, views: 7, uniqueViewers: 3 });
    if (call.path === '/v1/leave') return json(200, { online: 0, sessions: 0 });
    if (call.path.endsWith('/presence')) {
      return json(200, {
        online: 2,
        sessions: 3,
        users: [
          { userId: 'u1', name: 'Ann', avatarUrl: null, versionId: 'v1', lastSeen: '2024-01-01T00:00:00Z', sessions: 2, state: null },
          { userId: 'u2', name: 'Bob', avatarUrl: null, versionId: 'v1', lastSeen: '2024-01-01T00:00:00Z', sessions: 1, state: null },
        ],
        nextCursor: null,
      });
    }
    return problem(404, 'Not Found');
  }

  to(path: string): Call[] {
    return this.calls.filter((c) => c.path === path || c.path.endsWith(path));
  }

  get heartbeats(): Call[] {
    return this.to('/v1/heartbeat');
  }
}

type Listener = (event: any) => void;

export class FakeTarget {
  private listeners = new Map<string, Set<Listener>>();
  addEventListener(type: string, fn: Listener): void {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type)!.add(fn);
  }
  removeEventListener(type: string, fn: Listener): void {
    this.listeners.get(type)?.delete(fn);
  }
  dispatch(type: string, event: Record<string, unknown> = {}): void {
    for (const fn of Array.from(this.listeners.get(type) ?? [])) fn({ type, ...event });
  }
  listenerCount(type?: string): number {
    if (type) return this.listeners.get(type)?.size ?? 0;
    let n = 0;
    for (const set of this.listeners.values()) n += set.size;
    return n;
  }
}

export class FakeDocument extends FakeTarget {
  visibilityState: 'visible' | 'hidden' = 'visible';
  setVisibility(state: 'visible' | 'hidden'): void {
    this.visibilityState = state;
    this.dispatch('visibilitychange');
  }
}

export class FakeStorage {
  map = new Map<string, string>();
  getItem(key: string): string | null {
    return this.map.has(key) ? this.map.get(key)! : null;
  }
  setItem(key: string, value: string): void {
    this.map.set(key, String(value));
  }
}

export class FakeEventSource extends FakeTarget {
  static instances: FakeEventSource[] = [];
  readyState = 0;
  closed = false;
  constructor(public url: string) {
    super();
    FakeEventSource.instances.push(this);
  }
  close(): void {
    this.readyState = 2;
    this.closed = true;
  }
  open(): void {
    this.readyState = 1;
    this.dispatch('open');
  }
  emit(type: string, data: unknown, id?: string): void {
    this.dispatch(type, { data: JSON.stringify(data), lastEventId: id ?? '' });
  }
  /** closed=true: non-200 answer (browser gives up); false: network drop (browser retries). */
  fail(closed: boolean): void {
    this.readyState = closed ? 2 : 0;
    this.dispatch('error');
  }
}

export interface Beacon {
  url: string;
  data: Blob;
}

export function makeEnv() {
  const clock = new FakeClock();
  const server = new FakeServer(clock);
  const document = new FakeDocument();
  const window = new FakeTarget();
  const storage = new FakeStorage();
  const beacons: Beacon[] = [];
  const navigator = {
    sendBeacon(url: string, data: Blob): boolean {
      beacons.push({ url, data });
      return true;
    },
  };
  const errors: any[] = [];
  const env = {
    clock,
    server,
    document,
    window,
    storage,
    navigator,
    beacons,
    errors,
    tokens: ['t1'] as string[],
    tokenCalls: 0,
    randomValue: 0.5,
    eventSources: [] as FakeEventSource[],
    /** A session's EventSource class that records its own instances. */
    EventSource: null as unknown as typeof FakeEventSource,
    options(extra: Partial<PresenceOptions> = {}): PresenceOptions {
      return {
        baseUrl: BASE,
        artifactId: 'art-1',
        getToken: async () => {
          const i = Math.min(env.tokenCalls, env.tokens.length - 1);
          env.tokenCalls++;
          return env.tokens[i]!;
        },
        onError: (err) => errors.push(err),
        fetch: server.fetch,
        EventSource: env.EventSource,
        document,
        window,
        sessionStorage: storage,
        navigator,
        setTimeout: clock.setTimeout,
        clearTimeout: clock.clearTimeout,
        random: () => env.randomValue,
        now: () => clock.now,
        idleAfterS: 0, // these fakes send no input: idle detection only where a test turns it on
        ...extra,
      };
    },
  };
  env.EventSource = class extends FakeEventSource {
    constructor(url: string) {
      super(url);
      env.eventSources.push(this);
    }
  };
  return env;
}

export type Env = ReturnType<typeof makeEnv>;
