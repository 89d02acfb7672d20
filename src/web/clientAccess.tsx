import { Hono } from 'hono';
import { decide } from '../domain/access/acl';
import { normalizeFingerprint } from '../domain/certificates';
import { getClient, type Client } from '../domain/clients';
import type { FieldErrors } from '../domain/errors';
import { MAX_CLIENT_ID_PATTERN_LENGTH } from '../domain/groupRules';
import { topicFilterProblem, topicNameProblem } from '../domain/topics';
import { ClientAccessPage, ClientAccessSection, type CheckValues } from '../../views/clientAccess';
import { ClientSessionsSection } from '../../views/connections';
import { NotFoundPage } from '../../views/layout';
import { disconnectedNotice, sessionsOf } from './clients';
import { importedPasswordFormat } from '../domain/rehash';
import type { AppEnv } from './env';
import { isHtmx, parseId } from './http';

/**
 * `/clients/:id`: a client's effective permissions and the checker. The
 * answer comes from the rules as CONNECT finds them and `decide`, the functions the broker uses.
 */
export function clientAccessRoutes() {
  const routes = new Hono<AppEnv>();

  routes.get('/:id{[0-9]+}', async (c) => {
    const id = parseId(c.req.param('id'));
    const client = id === null ? null : await getClient(c.var.db, id);
    if (!client) {
      return c.html(<NotFoundPage message="This client does not exist (it may have been deleted)." section="clients" />, 404);
    }
    // Without a client id asked for, the one the device uses: its live
    // session's, else its last session's, else its username (`%c` rows then
    // match as they do for the device).
    const sessionsPage = await sessionsOf(c, client.id);
    const liveIds = [...new Set(sessionsPage.sessions.map((s) => s.mqttClientId))];
    const usual = usualClientId(client, liveIds);
    const check: CheckValues = {
      clientId: c.req.query('clientId') ?? usual.clientId,
      action: c.req.query('action') === 'subscribe' ? 'subscribe' : 'publish',
      topic: c.req.query('topic') ?? '',
      // Rules by certificate fingerprint apply to certificate clients only.
      fingerprint: client.authType === 'password' ? undefined : (c.req.query('fingerprint') ?? client.certFingerprint ?? ''),
    };
    const errors: FieldErrors = {};
    if (check.clientId.length > MAX_CLIENT_ID_PATTERN_LENGTH) errors.clientId = `Use at most ${MAX_CLIENT_ID_PATTERN_LENGTH} characters.`;
    // [MQTT-1.5.3-2] No MQTT string holds U+0000; the broker refuses such a client id too.
    else if (check.clientId.includes('\u0000')) errors.clientId = 'A client ID cannot contain a NUL character.';
    if (check.topic) {
      if (!check.clientId) errors.clientId = 'Enter the MQTT client ID the device connects with.';
      const problem = check.action === 'publish' ? topicNameProblem(check.topic) : topicFilterProblem(check.topic);
      if (problem) errors.topic = problem;
    }
    const certFingerprint = check.fingerprint ? (normalizeFingerprint(check.fingerprint) ?? undefined) : undefined;
    if (check.fingerprint && !certFingerprint) errors.fingerprint = 'Enter a SHA-256 fingerprint: 64 hexadecimal digits, colons allowed.';
    const mqttClientId = check.clientId && !errors.clientId ? check.clientId : undefined;
    const access = await c.var.access.accessOf({ clientRowId: client.id, username: client.username, mqttClientId, certFingerprint });
    const hasErrors = Object.keys(errors).length > 0;
    const decision = check.topic && !hasErrors ? decide(access, check.action, check.topic) : undefined;
    const asked = c.req.query('clientId');
    const idFrom: 'live' | 'last' | 'username' | 'entered' = asked === undefined || asked === usual.clientId ? usual.from : 'entered';
    const props = { client, access, check, errors, decision, idFrom };
    if (isHtmx(c)) return c.html(<ClientAccessSection {...props} />, hasErrors ? 422 : 200);
    const sessions = <ClientSessionsSection client={client} page={sessionsPage} notice={disconnectedNotice(c.req.query('disconnected'))} />;
    const imported = await importedPasswordFormat(c.var.db, client.id);
    const tls = c.var.tls?.status();
    return c.html(
      <ClientAccessPage {...props} sessions={sessions} importedPasswordFormat={imported} tryIt={{ ...usual, liveIds, tlsOn: Boolean(tls?.source), mqttsPort: tls?.mqttsPort ?? null }} />,
      hasErrors ? 422 : 200,
    );
  });

  return routes;
}

/** The client id a client's device uses, as far as the console knows, and where it comes from. */
export function usualClientId(client: Pick<Client, 'username' | 'lastClientId'>, liveIds: readonly string[]): { clientId: string; from: 'live' | 'last' | 'username' } {
  if (liveIds[0] !== undefined) return { clientId: liveIds[0], from: 'live' };
  if (client.lastClientId) return { clientId: client.lastClientId, from: 'last' };
  return { clientId: client.username, from: 'username' };
}
