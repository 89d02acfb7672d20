import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import {
  MAX_CLIENT_ROWS_ASKED,
  mergeSessionWindows,
  newestSessionsOf,
  type NewestSession,
  sessionWindow,
  type LiveSession,
  type SessionDirectory,
  type SessionRequest,
  type SessionWindow,
} from '../domain/connections';

/** What a node knows of its own sessions (the broker). */
export interface LocalSessions {
  liveSessions(): Iterable<LiveSession>;
  liveSession(sessionId: string): LiveSession | undefined;
  endSessions(sessionIds: Iterable<string>): Promise<LiveSession[]>;
}

/** One node: its own sessions are all there is. */
export function createLocalDirectory(local: LocalSessions): SessionDirectory {
  return {
    window: async (request) => ({ ...sessionWindow(local.liveSessions(), request), missing: null }),
    async disconnect(sessionId) {
      const [ended] = await local.endSessions([sessionId]);
      return ended ?? null;
    },
    disconnectClient(clientRowId) {
      const ids: string[] = [];
      for (const session of local.liveSessions()) if (session.clientRowId === clientRowId) ids.push(session.id);
      return local.endSessions(ids);
    },
    disconnectGroup(groupName) {
      const ids: string[] = [];
      for (const session of local.liveSessions()) if (session.groups.includes(groupName)) ids.push(session.id);
      return local.endSessions(ids);
    },
    newestClientIds: async (clientRowIds) => newestSessionsOf(local.liveSessions(), clientRowIds),
  };
}

/** A node's answer to `newestClientIds`, as it travels. */
type NewestAnswer = Array<NewestSession & { clientRowId: number }>;

/** `newestSessionsOf`'s map as it travels, and as it merges with the other nodes' answers. */
function newestAnswer(newest: ReadonlyMap<number, NewestSession>): NewestAnswer {
  return [...newest].map(([clientRowId, session]) => ({ clientRowId, ...session }));
}

type Ask =
  | { op: 'window'; request: SessionRequest }
  | { op: 'disconnect'; sessionId: string }
  | { op: 'disconnectClient'; clientRowId: number }
  | { op: 'disconnectGroup'; groupName: string }
  | { op: 'newestClientIds'; clientRowIds: number[] };

interface AskMessage {
  id: string;
  from: string;
  ask: Ask;
}

interface AnswerMessage {
  id: string;
  node: string;
  result?: unknown;
  error?: string;
}

export interface ClusterDirectoryOptions {
  /** For publishing (commands); a second connection is opened from it to listen. */
  redis: Redis;
  nodeId: string;
  local: LocalSessions;
  /** How long to wait for the other nodes' answers. */
  timeoutMs?: number;
  prefix?: string;
  log?: (message: string) => void;
}

export interface ClusterDirectory extends SessionDirectory {
  close(): Promise<void>;
}

/**
 * Several nodes: each keeps its sessions in memory and answers questions
 * about them over Redis pub/sub. A list asks every node at once for the
 * window of its sessions around the page (at most a page and one, however
 * many sessions it holds) and merges the answers; a disconnect is sent to
 * the node whose id begins the session id; "disconnect all of a client" asks
 * every node. Redis tells how many listeners got a question, which is how
 * many answers to wait for; a node silent past `timeoutMs` is reported as
 * missing rather than waited for. Nothing is stored in Redis.
 */
export async function startClusterDirectory(options: ClusterDirectoryOptions): Promise<ClusterDirectory> {
  const { redis, nodeId, local } = options;
  const prefix = options.prefix ?? 'gatehouse:';
  const timeoutMs = options.timeoutMs ?? 2000;
  const log = options.log ?? (() => {});
  // Pub/sub ignores Redis' logical databases: the channels name theirs, so
  // clusters sharing one Redis server on different databases never meet.
  const base = `${prefix}db${redis.options.db ?? 0}:sessions:`;
  const everyNode = `${base}ask`;
  const nodeChannel = (id: string) => `${base}ask:${id}`;
  const answerChannel = (id: string) => `${base}answer:${id}`;
  const answers = answerChannel(nodeId);
  const localDirectory = createLocalDirectory(local);
  const pending = new Map<string, { results: AnswerMessage[]; expected: number; done: () => void }>();

  const listener = redis.duplicate();
  listener.on('error', () => {}); // reconnects by itself; see the questions' timeouts
  await listener.subscribe(everyNode, nodeChannel(nodeId), answers);

  listener.on('message', (channel, text) => {
    let message: AskMessage | AnswerMessage;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    if (channel === answers) {
      const waiting = pending.get(message.id);
      if (!waiting) return;
      waiting.results.push(message as AnswerMessage);
      if (waiting.results.length >= waiting.expected) waiting.done();
      return;
    }
    const question = message as AskMessage;
    if (question.from === nodeId) return;
    answer(question.ask).then(
      (result) => reply(question, { id: question.id, node: nodeId, result }),
      (error: unknown) => reply(question, { id: question.id, node: nodeId, error: (error as Error).message }),
    );
  });

  // Answers go out on the connection that also carries this node's session
  // counts, after them: a disconnect's answer arrives after its count changed.
  function reply(question: AskMessage, message: AnswerMessage) {
    redis.publish(answerChannel(question.from), JSON.stringify(message)).catch((error: Error) => log(`could not answer a question about sessions: ${error.message}`));
  }

  async function answer(ask: Ask): Promise<unknown> {
    switch (ask.op) {
      case 'window':
        return sessionWindow(local.liveSessions(), ask.request);
      case 'disconnect':
        return localDirectory.disconnect(ask.sessionId);
      case 'disconnectClient':
        return localDirectory.disconnectClient(ask.clientRowId);
      case 'disconnectGroup':
        return localDirectory.disconnectGroup(ask.groupName);
      case 'newestClientIds': {
        const rows = Array.isArray(ask.clientRowIds) ? ask.clientRowIds.filter(Number.isInteger) : [];
        return newestAnswer(newestSessionsOf(local.liveSessions(), rows));
      }
    }
  }

  /** Publishes `ask` on `channel`; resolves with the answers, and how many did not come. */
  async function askNodes(channel: string, ask: Ask, listenersThatAreUs: number): Promise<{ results: AnswerMessage[]; silent: number }> {
    const id = randomUUID();
    const results: AnswerMessage[] = [];
    let done!: () => void;
    const finished = new Promise<void>((resolve) => (done = resolve));
    const entry = { results, expected: Infinity, done };
    // With Redis away ioredis queues commands until it is back: the page
    // would wait for it. Not reachable now is an answer of its own.
    if (redis.status !== 'ready') throw new Error(`the connection is ${redis.status}`);
    pending.set(id, entry);
    // The time limit covers the PUBLISH too, which a Redis lost meanwhile never answers.
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      done();
    }, timeoutMs);
    try {
      const published = redis.publish(channel, JSON.stringify({ id, from: nodeId, ask } satisfies AskMessage)).then((receivers) => {
        entry.expected = Math.max(0, receivers - listenersThatAreUs);
        if (results.length >= entry.expected) done();
      });
      published.catch(() => done());
      await finished;
      if (!timedOut) await published; // a failed PUBLISH throws here
      else if (entry.expected === Infinity) throw new Error(`Redis did not answer within ${timeoutMs} ms`);
      return { results: [...results], silent: Math.max(0, entry.expected - results.length) };
    } finally {
      clearTimeout(timer);
      pending.delete(id);
    }
  }

  /** Ends sessions here and asks every other node to end theirs; all that were ended. */
  async function disconnectEverywhere(here: () => Promise<LiveSession[]>, ask: Ask, what: string): Promise<LiveSession[]> {
    const [own, asked] = await Promise.allSettled([here(), askNodes(everyNode, ask, 1)]);
    if (own.status === 'rejected') throw own.reason;
    const ended = [...own.value];
    // This node's sessions are ended (and reported) whatever became of the others.
    if (asked.status === 'rejected') log(`could not ask the other nodes to disconnect ${what}: ${(asked.reason as Error).message}`);
    else for (const answer of asked.value.results) if (Array.isArray(answer.result)) ended.push(...(answer.result as LiveSession[]));
    return ended;
  }

  return {
    async window(request) {
      const own = sessionWindow(local.liveSessions(), request);
      let asked;
      try {
        asked = await askNodes(everyNode, { op: 'window', request }, 1);
      } catch (error) {
        return { ...own, missing: `Redis could not be reached (${(error as Error).message}): only this node's sessions are listed.` };
      }
      const windows: SessionWindow[] = [own];
      let failed = asked.silent;
      for (const answer of asked.results) {
        if (answer.error || !answer.result) failed++;
        else windows.push(answer.result as SessionWindow);
      }
      const missing = failed === 0 ? null : `${failed === 1 ? '1 other node' : `${failed} other nodes`} did not answer in time: ${failed === 1 ? 'its' : 'their'} sessions are not listed.`;
      return { ...mergeSessionWindows(windows, request), missing };
    },

    async disconnect(sessionId) {
      const node = sessionId.slice(0, sessionId.lastIndexOf('.'));
      if (node === nodeId) return localDirectory.disconnect(sessionId);
      const { results } = await askNodes(nodeChannel(node), { op: 'disconnect', sessionId }, 0);
      const answer = results[0];
      if (!answer) return null; // that node is gone, and its sessions with it
      if (answer.error) throw new Error(`node ${node} could not disconnect ${sessionId}: ${answer.error}`);
      return (answer.result as LiveSession | null) ?? null;
    },

    disconnectClient(clientRowId) {
      return disconnectEverywhere(() => localDirectory.disconnectClient(clientRowId), { op: 'disconnectClient', clientRowId }, `client ${clientRowId}`);
    },

    disconnectGroup(groupName) {
      return disconnectEverywhere(() => localDirectory.disconnectGroup(groupName), { op: 'disconnectGroup', groupName }, `the sessions of group ${JSON.stringify(groupName)}`);
    },

    // Every node is asked at once; each scans its own sessions and answers
    // with at most one id per row asked for. A node that cannot answer leaves
    // its clients judged by what else is known (their last-seen id).
    async newestClientIds(clientRowIds) {
      const rows = clientRowIds.slice(0, MAX_CLIENT_ROWS_ASKED);
      const own = newestSessionsOf(local.liveSessions(), rows);
      if (rows.length === 0) return own;
      let asked;
      try {
        asked = await askNodes(everyNode, { op: 'newestClientIds', clientRowIds: [...rows] }, 1);
      } catch (error) {
        log(`could not ask the other nodes for their sessions' client ids: ${(error as Error).message}`);
        return own;
      }
      const answers = asked.results.flatMap((answer) => (Array.isArray(answer.result) ? (answer.result as NewestAnswer) : []));
      return newestSessionsOf([...newestAnswer(own), ...answers], rows);
    },

    async close() {
      for (const waiting of pending.values()) waiting.done();
      listener.disconnect();
    },
  };
}
