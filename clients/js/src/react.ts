import { useEffect, useState, useSyncExternalStore } from 'react';
import type { PresenceError } from './errors.js';
import { EMPTY_SNAPSHOT, createPresence } from './presence.js';
import type {
  LeaveResponse,
  Presence,
  PresenceMode,
  PresenceOptions,
  PresenceSnapshot,
  PresenceState,
  PresenceStatus,
  PresenceTransport,
  PresenceUser,
} from './types.js';

export type UsePresenceOptions = Omit<PresenceOptions, 'artifactId' | 'autoStart'>;

export interface UsePresenceResult {
  online: number;
  sessions: number;
  users: readonly PresenceUser[];
  views: number | null;
  uniqueViewers: number | null;
  status: PresenceStatus;
  transport: PresenceTransport;
  /** `interval` in a large room (counts exact, `users` a sample), else `exact`. */
  mode: PresenceMode;
  error: PresenceError | null;
  /** This tab's session id, once the instance exists. */
  sessionId: string | null;
  setState(state: PresenceState | undefined): void;
  setVersion(versionId: string): void;
  leave(): Promise<LeaveResponse | null>;
}

const noopSubscribe = (): (() => void) => () => undefined;
const emptySnapshot = (): PresenceSnapshot => EMPTY_SNAPSHOT;

function stateKey(state: PresenceState | undefined): string | undefined {
  return state === undefined ? undefined : JSON.stringify(state);
}

/**
 * Presence of the current tab on `artifactId` plus the live list of who else is there.
 * The instance is created in an effect and destroyed on unmount or when `artifactId` /
 * `options.baseUrl` change; `versionId` and `state` changes are sent as heartbeats.
 * Pass a falsy `artifactId` to stay idle.
 */
export function usePresence(artifactId: string | null | undefined, options: UsePresenceOptions): UsePresenceResult {
  // Mutable box (like a ref) with the latest options, so callbacks never go stale.
  const [box] = useState(() => ({ options, presence: null as Presence | null }));
  box.options = options;
  const [presence, setPresence] = useState<Presence | null>(null);
  const baseUrl = options.baseUrl;

  useEffect(() => {
    if (!artifactId) return undefined;
    const p = createPresence({
      ...box.options,
      artifactId,
      getToken: () => box.options.getToken(),
      onError: (err) => box.options.onError?.(err),
    });
    box.presence = p;
    setPresence(p);
    return () => {
      p.destroy();
      if (box.presence === p) box.presence = null;
      setPresence((current) => (current === p ? null : current));
    };
  }, [artifactId, baseUrl, box]);

  const versionId = options.versionId;
  useEffect(() => {
    if (presence && versionId && versionId !== presence.versionId) presence.setVersion(versionId);
  }, [presence, versionId]);

  const key = stateKey(options.state);
  useEffect(() => {
    if (presence && key !== stateKey(presence.state)) presence.setState(box.options.state);
  }, [presence, key, box]);

  const snapshot = useSyncExternalStore(
    presence ? presence.subscribe : noopSubscribe,
    presence ? presence.getSnapshot : emptySnapshot,
    emptySnapshot,
  );

  const [actions] = useState(() => ({
    setState: (state: PresenceState | undefined) => box.presence?.setState(state),
    setVersion: (v: string) => box.presence?.setVersion(v),
    leave: () => (box.presence ? box.presence.leave() : Promise.resolve(null)),
  }));

  return {
    online: snapshot.online,
    sessions: snapshot.sessions,
    users: snapshot.users,
    views: snapshot.views,
    uniqueViewers: snapshot.uniqueViewers,
    status: snapshot.status,
    transport: snapshot.transport,
    mode: snapshot.mode,
    error: snapshot.error,
    sessionId: presence ? presence.sessionId : null,
    ...actions,
  };
}
