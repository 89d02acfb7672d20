import type { Client } from '../src/domain/clients';

/**
 * "Try it" on a client's page: public/try-it.js connects from the browser as
 * this client over the console's own `/mqtt` WebSocket. The password goes
 * only into that CONNECT: its field has no `name`, so no form can send it to
 * the console, and the forms have no action of their own. Without JavaScript
 * the controls stay hidden and the panel says why.
 */
export function TryItPanel(props: { client: Client }) {
  const { client } = props;
  return (
    <section id="try-it" aria-labelledby="try-it-title" data-try-it data-username={client.username} data-check-url={`/clients/${client.id}`}>
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
              <input id="try-client-id" type="text" autocomplete="off" spellcheck={false} maxlength={128} aria-describedby="try-client-id-hint" />
              <small id="try-client-id-hint">A device connected with the same ID would be disconnected: use an ID no device uses.</small>
            </label>
            <label for="try-password">
              Password
              <input id="try-password" type="password" autocomplete="off" />
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
        <h3 id="try-log-title">What happened</h3>
        <p class="help">
          A refused subscription is answered with SUBACK 0x80. A refused publish is acknowledged like any other (MQTT
          3.1.1 cannot say no to one) and delivered to no one: what the permissions decide is shown beside it.
        </p>
        <div role="log" aria-labelledby="try-log-title" class="try-log" tabindex={0}>
          <ol id="try-log"></ol>
        </div>
      </div>
    </section>
  );
}
