import { resolveAccess } from '../../src/domain/access/acl';
import type { AccessSnapshot, AuthResult, RuleGrantRow } from '../../src/domain/access/types';
import { createBroker, type Broker, type BrokerDeps } from '../../src/broker';

/** Everything allowed: publish and subscribe on `#`, through one group named "Everything". */
export function allowEverything(clientRowId: number, username: string, mqttClientId: string): AccessSnapshot {
  const rule = { id: 1, position: 0, matchBy: 'client' as const, clientRowId, value: '' };
  const rows: RuleGrantRow[] = (['publish', 'subscribe'] as const).map((action, position) => ({
    rule,
    groupId: 1,
    groupName: 'Everything',
    permission: { position, effect: 'allow', action, topic: '#' },
  }));
  return resolveAccess(rows, { clientRowId, username, mqttClientId });
}

/**
 * A broker on its own (no database): any username with the password "secret"
 * is client row 7 and may do everything. Listens on a free TCP port.
 */
export async function startBareBroker(deps: Partial<BrokerDeps> = {}): Promise<{ broker: Broker; url: string; logs: string[] }> {
  const logs: string[] = [];
  const broker = await createBroker({
    async authenticate(input): Promise<AuthResult> {
      if (input.password?.toString() !== 'secret' || !input.username) return { ok: false, reason: 'bad_credentials' };
      return {
        ok: true,
        principal: { clientRowId: 7, username: input.username, authType: 'password', mqttClientId: input.clientId, transport: input.transport, remoteAddress: input.remoteAddress },
        access: allowEverything(7, input.username, input.clientId),
      };
    },
    log: (line) => logs.push(line),
    ...deps,
  });
  const port = await broker.listenTcp(0, '127.0.0.1');
  return { broker, url: `mqtt://127.0.0.1:${port}`, logs };
}
