export { createPresence, EMPTY_SNAPSHOT } from './presence.js';
export { PresenceError, parseRetryAfter } from './errors.js';
export type { PresenceOperation, ProblemDetails } from './errors.js';
export { DEFAULT_SESSION_KEY, SESSION_ID_PATTERN, randomSessionId } from './session.js';
export type {
  DocumentLike,
  EventSourceConstructor,
  EventSourceLike,
  FetchLike,
  HeartbeatResponse,
  LeaveResponse,
  NavigatorLike,
  Presence,
  PresenceListener,
  PresenceMode,
  PresenceOptions,
  PresencePage,
  PresenceSnapshot,
  PresenceState,
  PresenceStatus,
  PresenceTransport,
  PresenceUser,
  Privacy,
  PrivacySettings,
  StorageLike,
  ViewResponse,
  Visibility,
  WindowLike,
} from './types.js';
