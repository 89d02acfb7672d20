import type { Client } from '../src/domain/clients';

/** What Try it starts from: the client id the device uses, and whether it can connect from a browser at all. */
export interface TryItContext {
  clientId: string;
  /** Where the client id comes from: a live session, the last one, or the username (never seen). */
  from: 'live' | 'last' | 'username';
  /** Client ids of its live sessions (connecting with one takes that session over). */
  liveIds: string[];
  tlsOn: boolean;
  mqttsPort: number | null;
}

/** Entries the log keeps; older ones go (it says how many). */
export const TRY_IT_LOG_LIMIT = 200;

/**
 * "Try it" on a client's page: public/try-it.js connects from the browser as
 * this client over the console's own `/mqtt` WebSocket. The password goes
 * only into that CONNECT: its field has no `name`, so no form can send it to
 * the console, and the forms have no action of their own. Without JavaScript
 * the controls stay hidden and the panel says why.
 */
export function TryItPanel(props: { client: Client; context: TryItContext }) {
  const { client, context } = props;
  if (client.authType !== 'password') return <CertificateTryIt client={client} context={context} />;
  const hint =
    context.from === 'live'
      ? 'The ID of its live session: connecting with it takes that session over (MQTT disconnects the device). Change it to try without disturbing the device.'
      : context.from === 'last'
        ? 'The ID its device used last: rows with %c match as they do for it. A device connected with the same ID would be disconnected.'
        : 'Its username, as no device of it has connected yet: rows with %c match this ID. A device connected with the same ID would be disconnected.';
  return (
    <section
      id="try-it"
      aria-labelledby="try-it-title"
      data-try-it
      data-username={client.username}
      data-check-url={`/clients/${client.id}`}
      data-live-ids={JSON.stringify(context.liveIds)}
      data-log-limit={String(TRY_IT_LOG_LIMIT)}
    >
      <h2 id="try-it-title">Try it</h2>
      <p>
        Connect from this browser as <code>{client.username}</code>, over MQTT on this console's WebSocket (<code>/mqtt</code>), then
        subscribe and publish as the device would. The password you type goes only into that MQTT CONNECT: it is not stored, and not
        sent to the console.
      </p>
      <p class="try-it-needs-js" data-try-it-nojs>
        Try it needs JavaScript: it connects from this browser. The effective permissions and the checker work without it.
      </p>
      <div data-try-it-panel hidden>
        <form id="try-connect" class="try-it-form" novalidate>
          <fieldset class="grid">
            <label for="try-client-id">
              MQTT client ID
              <input
                id="try-client-id"
                type="text"
                value={context.clientId}
                autocomplete="off"
                spellcheck={false}
                maxlength={128}
                aria-describedby="try-client-id-hint"
              />
              <small id="try-client-id-hint" data-default-hint={hint}>
                {hint}
              </small>
            </label>
            <label for="try-password">
              Password
              <input id="try-password" type="password" autocomplete="off" />
            </label>
            <label for="try-protocol">
              Protocol
              <select id="try-protocol" aria-describedby="try-protocol-hint">
                <option value="4" selected>
                  MQTT 3.1.1
                </option>
                <option value="5">MQTT 5.0</option>
              </select>
              <small id="try-protocol-hint">MQTT 5.0 is told why: a refused publish or subscription gets a reason code.</small>
            </label>
          </fieldset>
          <div class="form-actions">
            <button type="submit" id="try-connect-button">
              Connect
            </button>
            <button type="button" id="try-disconnect" class="secondary outline" disabled>
              Disconnect
            </button>
          </div>
        </form>
        <p id="try-status" role="status">
          Not connected.
        </p>
        <form id="try-subscribe" class="try-it-form" novalidate>
          <fieldset disabled data-try-it-connected>
            <legend>Subscribe</legend>
            <div class="grid">
              <label for="try-subscribe-topic">
                Topic filter
                <input id="try-subscribe-topic" type="text" autocomplete="off" spellcheck={false} />
              </label>
              <label for="try-subscribe-qos">
                QoS
                <select id="try-subscribe-qos">
                  <option value="0">0</option>
                  <option value="1" selected>
                    1
                  </option>
                </select>
              </label>
            </div>
            <button type="submit">Subscribe</button>
          </fieldset>
        </form>
        <form id="try-publish" class="try-it-form" novalidate>
          <fieldset disabled data-try-it-connected>
            <legend>Publish</legend>
            <div class="grid">
              <label for="try-publish-topic">
                Topic
                <input id="try-publish-topic" type="text" autocomplete="off" spellcheck={false} />
              </label>
              <label for="try-publish-qos">
                QoS
                <select id="try-publish-qos">
                  <option value="0">0</option>
                  <option value="1" selected>
                    1
                  </option>
                </select>
              </label>
            </div>
            <label for="try-publish-payload">
              Message
              <textarea id="try-publish-payload" rows={2}></textarea>
            </label>
            <button type="submit">Publish</button>
          </fieldset>
        </form>
        <div class="try-log-head">
          <h3 id="try-log-title">What happened</h3>
          <div class="form-actions">
            <button type="button" id="try-pause" class="secondary outline" aria-pressed="false">
              Pause
            </button>
            <button type="button" id="try-clear" class="secondary outline">
              Clear
            </button>
          </div>
        </div>
        <p class="help">
          A refused subscription is answered with SUBACK 0x80. A refused publish is acknowledged like any other (MQTT
          3.1.1 cannot say no to one) and delivered to no one: what the permissions decide is shown beside it. The last {TRY_IT_LOG_LIMIT}{' '}
          entries are kept; while paused, messages received are counted, not shown.
        </p>
        <p id="try-log-note" class="help" role="status"></p>
        <div role="log" aria-labelledby="try-log-title" class="try-log" tabindex={0}>
          <ol id="try-log"></ol>
        </div>
      </div>
    </section>
  );
}

/**
 * A certificate client connects with its client certificate, which a page
 * cannot present on the console's WebSocket: the panel says so and shows
 * how to try it from a shell instead of asking for a password it cannot use.
 */
function CertificateTryIt(props: { client: Client; context: TryItContext }) {
  const { client, context } = props;
  const withPassword = client.authType === 'certificate_password';
  const port = context.mqttsPort ?? 8883;
  const command = `mosquitto_sub -h ${'<this host>'} -p ${port} --cafile ca.crt --cert device.crt --key device.key -i ${shellWord(context.clientId)}${withPassword ? ` -u ${shellWord(client.username)} -P '…'` : ''} -t '#' -v`;
  return (
    <section id="try-it" aria-labelledby="try-it-title">
      <h2 id="try-it-title">Try it</h2>
      <p>
        This client connects with its client certificate{withPassword ? ' and its password' : ''}. A page in a browser cannot present a
        client certificate on the console’s WebSocket, so Try it cannot connect as it from here. The effective permissions and the
        checker below work as for any client.
      </p>
      {context.tlsOn ? (
        <>
          <p>From a shell with the device’s certificate and key (Mosquitto’s clients):</p>
          <pre>
            <code>{command}</code>
          </pre>
        </>
      ) : (
        <p class="warning" role="note">
          TLS is off: certificate clients cannot connect at all until certificates are enabled on the <a href="/certificates">Certificates</a>{' '}
          page.
        </p>
      )}
    </section>
  );
}

/** `text` quoted for a POSIX shell when it needs it. */
function shellWord(text: string): string {
  return /^[A-Za-z0-9._:@%+=,/-]+$/.test(text) ? text : `'${text.replace(/'/g, `'\\''`)}'`;
}
