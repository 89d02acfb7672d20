import { z } from 'zod';
import type { Transport } from './access/types';

/**
 * Live MQTT sessions: what the Connections page lists and what an operator
 * may end. Each node knows only its own sessions; a `SessionDirectory` asks
 * every node (one node: itself) and merges the answers. Nothing here knows
 * Aedes or Redis.
 */

/** One authenticated connection, as the node holding it describes it. */
export interface LiveSession {
  /** `<node id>.<sequence>`: unique in the cluster, and names the node that holds it. */
  id: string;
  node: string;
  mqttClientId: string;
  /** The `clients` row it authenticated as. */
  clientRowId: number;
  username: string;
  remoteAddress: string | null;
  transport: Transport;
  /** Seconds, as CONNECT asked (0: none). */
  keepaliveS: number;
  /** Milliseconds since the epoch, when its CONNACK went out. */
  connectedAt: number;
  subscriptions: number;
  /** Its first SUBSCRIPTION_FILTERS_SHOWN subscription filters, in the order it made them. */
  subscriptionFilters?: string[];
  /** PUBLISH packets it sent (allowed or refused) and their payload bytes. */
  messagesIn?: number;
  bytesIn?: number;
  /** Messages delivered to it and their payload bytes. */
  messagesOut?: number;
  bytesOut?: number;
  /** The groups its permissions came from, in page order. */
  groups: string[];
  /** Over TLS (MQTTS, WSS): the protocol version, e.g. `TLSv1.3`; null otherwise. */
  tlsVersion?: string | null;
  /** The SHA-256 fingerprint of the client certificate it presented, if any. */
  certFingerprint?: string | null;
  /** MQTT protocol level: 3 (3.1), 4 (3.1.1) or 5. */
  protocolVersion?: number;
  /** MQTT 5: the Session Expiry Interval granted, in seconds (after the cap); null for 3.1/3.1.1. */
  sessionExpiryS?: number | null;
}

export type SessionOrder = 'newest' | 'oldest';

/** Subscription filters each session row shows; the rest are counted. */
export const SUBSCRIPTION_FILTERS_SHOWN = 5;

/** Where a page starts or ends: a session's place in the order. */
export interface SessionCursor {
  connectedAt: number;
  id: string;
}

export const CONNECTIONS_PAGE_SIZE = 50;

/** What a page of sessions asks every node. */
export interface SessionRequest {
  /** Text found, in any case, in the MQTT client id or the username. */
  query: string;
  /** Only the sessions of this `clients` row. */
  clientRowId?: number;
  /** Only the sessions whose permissions came (in part) from the group so named; '' : only those with no group. */
  group?: string;
  /** Only this session (looking one up on every node). */
  sessionId?: string;
  order: SessionOrder;
  /** The page after this session (Next)… */
  after?: SessionCursor;
  /** …or before it (Previous)… */
  before?: SessionCursor;
  /** …or the end of the list (Last); none of them: the first page. */
  last?: boolean;
  limit: number;
}

/**
 * One node's answer (and, summed, all of them): at most `limit + 1` sessions
 * next to the request's anchor, how many match, and how many of those lie
 * before the anchor. Bounded whatever the number of sessions.
 */
export interface SessionWindow {
  sessions: LiveSession[];
  total: number;
  beforeAnchor: number;
}

export interface SessionPage {
  sessions: LiveSession[];
  request: SessionRequest;
  total: number;
  /** 1-based position of the first session shown. */
  from: number;
  previous: SessionCursor | null;
  next: SessionCursor | null;
  /** Set when some node's sessions could not be listed: says which and why. */
  missing: string | null;
}

/** The sessions of every node, and the way to end them. */
export interface SessionDirectory {
  window(request: SessionRequest): Promise<SessionWindow & { missing: string | null }>;
  /** Ends one session wherever it is; null when no node holds it (any more). */
  disconnect(sessionId: string): Promise<LiveSession | null>;
  /** Ends every session of a client on every node; the sessions ended. */
  disconnectClient(clientRowId: number): Promise<LiveSession[]>;
  /** Ends every session whose permissions came (in part) from the group so named, on every node. */
  disconnectGroup(groupName: string): Promise<LiveSession[]>;
  /**
   * The MQTT client id of the newest live session of each client row asked
   * for (at most MAX_CLIENT_ROWS_ASKED), on every node; rows with no live
   * session are absent.
   */
  newestClientIds(clientRowIds: readonly number[]): Promise<ReadonlyMap<number, NewestSession>>;
}

/** A client's newest live session, as far as the access it is judged by needs it. */
export interface NewestSession {
  mqttClientId: string;
  connectedAt: number;
}

/** Client rows one `newestClientIds` question may name (a page of clients is 50). */
export const MAX_CLIENT_ROWS_ASKED = 100;

/**
 * The newest of `sessions` for each of `clientRowIds`: one pass over the
 * sessions, an answer no larger than the rows asked for. Merging several
 * nodes' answers is the same reduction over them.
 */
export function newestSessionsOf(sessions: Iterable<LiveSession | (NewestSession & { clientRowId: number })>, clientRowIds: readonly number[]): Map<number, NewestSession> {
  const wanted = new Set(clientRowIds.slice(0, MAX_CLIENT_ROWS_ASKED));
  const newest = new Map<number, NewestSession>();
  if (wanted.size === 0) return newest;
  for (const session of sessions) {
    if (!wanted.has(session.clientRowId)) continue;
    const known = newest.get(session.clientRowId);
    if (!known || known.connectedAt < session.connectedAt) newest.set(session.clientRowId, { mqttClientId: session.mqttClientId, connectedAt: session.connectedAt });
  }
  return newest;
}

/** A directory that knows no session (no broker runs: some tests). */
export const noSessions: SessionDirectory = {
  window: async () => ({ sessions: [], total: 0, beforeAnchor: 0, missing: null }),
  disconnect: async () => null,
  disconnectClient: async () => [],
  disconnectGroup: async () => [],
  newestClientIds: async () => new Map(),
};

const SESSION_ID = /^[0-9A-Za-z-]{1,64}\.[1-9][0-9]{0,15}$/;

export const sessionIdSchema = z.string().regex(SESSION_ID);

/** The session id of a path segment, or null. */
export function parseSessionId(value: string | undefined): string | null {
  return sessionIdSchema.safeParse(value).success ? value! : null;
}

/** A cursor as text for links: `<connectedAt>~<session id>`. */
export function formatSessionCursor(cursor: SessionCursor): string {
  return `${cursor.connectedAt}~${cursor.id}`;
}

export function parseSessionCursor(text: string | undefined): SessionCursor | null {
  const match = /^([0-9]{1,15})~(.{1,90})$/.exec(text ?? '');
  if (!match || !SESSION_ID.test(match[2]!)) return null;
  return { connectedAt: Number(match[1]), id: match[2]! };
}

const requestSchema = z.object({
  query: z.string().max(200).default(''),
  order: z.enum(['newest', 'oldest']).default('newest'),
  group: z.string().max(200).optional(),
});

/** A request from the page's query parameters; anything unreadable falls back to the first page. */
export function sessionRequestFrom(params: { q?: string; order?: string; after?: string; before?: string; page?: string; group?: string }): SessionRequest {
  const parsed = requestSchema.safeParse({ query: params.q?.trim() ?? '', order: params.order || undefined, group: params.group });
  const { query, order, group } = parsed.success ? parsed.data : { query: '', order: 'newest' as const, group: undefined };
  const request: SessionRequest = { query, order, limit: CONNECTIONS_PAGE_SIZE };
  // `group`: absent or "any" for every session, "none" for those without a group, else a group's name as `g:<name>`.
  if (group === 'none') request.group = '';
  else if (group?.startsWith('g:') && group.length > 2) request.group = group.slice(2);
  const after = parseSessionCursor(params.after);
  const before = parseSessionCursor(params.before);
  if (after) request.after = after;
  else if (before) request.before = before;
  else if (params.page === 'last') request.last = true;
  return request;
}

function compareFor(order: SessionOrder) {
  const sign = order === 'oldest' ? 1 : -1;
  return (a: SessionCursor, b: SessionCursor) =>
    sign * (a.connectedAt - b.connectedAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

function matcher(request: SessionRequest): (session: LiveSession) => boolean {
  const needle = request.query.toLowerCase();
  return (session) =>
    (request.clientRowId === undefined || session.clientRowId === request.clientRowId) &&
    (request.sessionId === undefined || session.id === request.sessionId) &&
    (request.group === undefined || (request.group === '' ? session.groups.length === 0 : session.groups.includes(request.group))) &&
    (!needle || session.mqttClientId.toLowerCase().includes(needle) || session.username.toLowerCase().includes(needle));
}

/**
 * The window of `request` among `sessions`: what one node answers (its own
 * sessions), and what the merged answers of all nodes reduce to (their
 * windows' sessions, with `counted` summing the totals they reported).
 */
export function sessionWindow(sessions: Iterable<LiveSession>, request: SessionRequest, counted?: { total: number; beforeAnchor: number }): SessionWindow {
  const compare = compareFor(request.order);
  const matches = matcher(request);
  const found: LiveSession[] = [];
  for (const session of sessions) if (matches(session)) found.push(session);
  found.sort(compare);
  const total = counted?.total ?? found.length;
  const take = request.limit + 1;
  let anchor: number;
  let window: LiveSession[];
  if (request.after) {
    const cursor = request.after;
    anchor = lowerBound(found, (s) => compare(s, cursor) > 0);
    window = found.slice(anchor, anchor + take);
  } else if (request.before) {
    const cursor = request.before;
    anchor = lowerBound(found, (s) => compare(s, cursor) >= 0);
    window = found.slice(Math.max(0, anchor - take), anchor);
  } else if (request.last) {
    anchor = found.length;
    window = found.slice(Math.max(0, anchor - take));
  } else {
    anchor = 0;
    window = found.slice(0, take);
  }
  return { sessions: window, total, beforeAnchor: counted?.beforeAnchor ?? anchor };
}

function lowerBound<T>(items: T[], isAtOrPast: (item: T) => boolean): number {
  let lo = 0;
  let hi = items.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (isAtOrPast(items[mid]!)) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** Merges the windows of several nodes into one. */
export function mergeSessionWindows(windows: SessionWindow[], request: SessionRequest): SessionWindow {
  const counted = { total: 0, beforeAnchor: 0 };
  for (const w of windows) {
    counted.total += w.total;
    counted.beforeAnchor += w.beforeAnchor;
  }
  return sessionWindow(
    windows.flatMap((w) => w.sessions),
    request,
    counted,
  );
}

/** The page a window makes: at most `limit` sessions, where they stand, and the links around them. */
export function pageOfWindow(window: SessionWindow & { missing?: string | null }, request: SessionRequest): SessionPage {
  const { limit } = request;
  const { total, beforeAnchor } = window;
  let shown: LiveSession[];
  let from: number;
  let hasPrevious: boolean;
  let hasNext: boolean;
  if (request.before || request.last) {
    // The window ends at the anchor; the last page holds what full pages leave.
    const count = request.last ? (total > 0 ? ((total - 1) % limit) + 1 : 0) : limit;
    shown = window.sessions.slice(Math.max(0, window.sessions.length - count));
    from = beforeAnchor - shown.length + 1;
    hasPrevious = from > 1;
    hasNext = total - beforeAnchor > 0;
  } else {
    shown = window.sessions.slice(0, limit);
    from = beforeAnchor + 1;
    hasPrevious = beforeAnchor > 0;
    hasNext = window.sessions.length > limit;
  }
  const cursorOf = (s: LiveSession | undefined) => (s ? { connectedAt: s.connectedAt, id: s.id } : null);
  return {
    sessions: shown,
    request,
    total,
    from: Math.max(1, from),
    previous: hasPrevious ? cursorOf(shown[0]) : null,
    next: hasNext ? cursorOf(shown.at(-1)) : null,
    missing: window.missing ?? null,
  };
}

/** A page of the live sessions of every node. */
export async function listConnections(directory: SessionDirectory, request: SessionRequest): Promise<SessionPage> {
  return pageOfWindow(await directory.window(request), request);
}

/** Who asked for a disconnect, for the log (and the audit trail). */
export interface Actor {
  username: string;
}

export interface DisconnectDeps {
  directory: SessionDirectory;
  log: (message: string) => void;
  /** Called once per session ended, for the audit trail. */
  ended?: (session: LiveSession, actor: Actor) => void;
}

function describeSession(session: LiveSession): string {
  return `session ${session.id} (client id ${JSON.stringify(session.mqttClientId)}, username ${JSON.stringify(session.username)}, from ${session.remoteAddress ?? 'unknown'} over ${session.transport}) on node ${session.node}`;
}

/**
 * Closes one session at once, on whichever node holds it (its will, if any,
 * is published: the server closed the connection). Null when it had already
 * ended. Logged with who asked.
 */
export async function disconnectSession(deps: DisconnectDeps, actor: Actor, sessionId: string): Promise<LiveSession | null> {
  const ended = await deps.directory.disconnect(sessionId);
  if (ended) {
    deps.log(`administrator ${JSON.stringify(actor.username)} disconnected ${describeSession(ended)}`);
    deps.ended?.(ended, actor);
  }
  return ended;
}

/** Closes every live session of a client, on every node; logged one line per session. */
export async function disconnectClientSessions(deps: DisconnectDeps, actor: Actor, clientRowId: number): Promise<LiveSession[]> {
  return reportEnded(deps, actor, await deps.directory.disconnectClient(clientRowId));
}

/**
 * Closes every live session that holds permissions of the group `groupName`
 * (its name when they connected), on every node, so they reconnect under
 * the group as saved ("apply now"); logged one line per session.
 */
export async function disconnectGroupSessions(deps: DisconnectDeps, actor: Actor, groupName: string): Promise<LiveSession[]> {
  return reportEnded(deps, actor, await deps.directory.disconnectGroup(groupName));
}

function reportEnded(deps: DisconnectDeps, actor: Actor, ended: LiveSession[]): LiveSession[] {
  for (const session of ended) {
    deps.log(`administrator ${JSON.stringify(actor.username)} disconnected ${describeSession(session)}`);
    deps.ended?.(session, actor);
  }
  return ended;
}
