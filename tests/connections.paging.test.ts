import { describe, expect, it } from 'vitest';
import { mergeSessionWindows, pageOfWindow, sessionWindow, type LiveSession, type SessionRequest } from '../src/domain/connections';

const session = (node: string, n: number, connectedAt: number, username = 'dev'): LiveSession => ({
  id: `${node}.${n}`,
  node,
  mqttClientId: `device-${String(connectedAt).padStart(3, '0')}`,
  clientRowId: 1,
  username,
  remoteAddress: '10.0.0.1',
  transport: 'tcp',
  keepaliveS: 60,
  connectedAt,
  subscriptions: 0,
  groups: [],
});

// 23 sessions spread over three nodes, connected at times 0..22.
const nodes = ['n1', 'n2', 'n3'];
const all = Array.from({ length: 23 }, (_, t) => session(nodes[t % 3]!, t + 1, t));
const ofNode = (node: string) => all.filter((s) => s.node === node);
const clientIds = (sessions: LiveSession[]) => sessions.map((s) => s.mqttClientId);

/** The page as several nodes answer it: each its own window, merged. */
function pageAcrossNodes(request: SessionRequest) {
  const merged = mergeSessionWindows(nodes.map((node) => sessionWindow(ofNode(node), request)), request);
  return pageOfWindow(merged, request);
}

describe('paging live sessions across nodes', () => {
  const base = { query: '', order: 'oldest' as const, limit: 10 };

  it('gives each node a bounded window, whatever it holds', () => {
    for (const node of nodes) expect(sessionWindow(ofNode(node), base).sessions.length).toBeLessThanOrEqual(base.limit + 1);
  });

  it('walks Next and Previous across nodes as one list, with positions and the total', () => {
    const first = pageAcrossNodes(base);
    expect(clientIds(first.sessions)).toEqual(clientIds(all.slice(0, 10)));
    expect([first.from, first.total, first.previous]).toEqual([1, 23, null]);

    const second = pageAcrossNodes({ ...base, after: first.next! });
    expect(clientIds(second.sessions)).toEqual(clientIds(all.slice(10, 20)));
    expect(second.from).toBe(11);

    const third = pageAcrossNodes({ ...base, after: second.next! });
    expect(clientIds(third.sessions)).toEqual(clientIds(all.slice(20)));
    expect([third.from, third.next]).toEqual([21, null]);

    const back = pageAcrossNodes({ ...base, before: third.previous! });
    expect(clientIds(back.sessions)).toEqual(clientIds(all.slice(10, 20)));
    expect(back.from).toBe(11);
  });

  it('shows the last page with what full pages leave, newest first too', () => {
    const last = pageAcrossNodes({ ...base, last: true });
    expect(clientIds(last.sessions)).toEqual(clientIds(all.slice(20)));
    expect(last.from).toBe(21);
    const newestFirst = pageAcrossNodes({ ...base, order: 'newest' });
    expect(clientIds(newestFirst.sessions)).toEqual(clientIds(all.slice(13).reverse()));
  });

  it('counts and pages only the sessions a search matches', () => {
    const page = pageAcrossNodes({ ...base, query: 'DEVICE-01' });
    expect(clientIds(page.sessions)).toEqual(clientIds(all.slice(10, 20)));
    expect(page.total).toBe(10);
    expect(page.next).toBeNull();
  });
});
