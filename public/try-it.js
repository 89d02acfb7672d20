// "Try it" on a client's page: an MQTT client in the browser (mqtt.js'
// browser bundle, /static/mqtt.min.js) connected as this client over the
// console's own WebSocket endpoint, /mqtt. The password goes into the MQTT
// CONNECT and nowhere else: it is read from a field with no name, never
// stored, and the field is emptied once connected.
(() => {
  'use strict';

  const panel = document.querySelector('[data-try-it]');
  if (!panel) return;
  const nojs = panel.querySelector('[data-try-it-nojs]');
  if (!window.mqtt || typeof window.mqtt.connect !== 'function') {
    if (nojs) nojs.textContent = 'Try it could not load its MQTT client (/static/mqtt.min.js). The effective permissions and the checker still work.';
    return;
  }
  nojs?.remove();
  panel.querySelector('[data-try-it-panel]').hidden = false;

  const username = panel.getAttribute('data-username');
  const checkUrl = panel.getAttribute('data-check-url');
  const $ = (id) => document.getElementById(id);
  const clientIdInput = $('try-client-id');
  const passwordInput = $('try-password');
  const connectButton = $('try-connect-button');
  const disconnectButton = $('try-disconnect');
  const status = $('try-status');
  const log = $('try-log');

  // The page fills in the client id the device uses (live, last seen, or its
  // username), so `%c` rows match as they do for the device. The hint warns
  // while it is the id of a live session: connecting takes that session over.
  let liveIds = [];
  try {
    liveIds = JSON.parse(panel.getAttribute('data-live-ids') || '[]');
  } catch {}
  const hint = $('try-client-id-hint');
  const defaultHint = hint ? hint.getAttribute('data-default-hint') : '';
  clientIdInput.addEventListener('input', () => {
    if (!hint) return;
    hint.textContent = liveIds.includes(clientIdInput.value.trim())
      ? 'A device is connected with this ID now: connecting takes its session over (MQTT disconnects it).'
      : clientIdInput.value.trim() === clientIdInput.defaultValue
        ? defaultHint
        : 'Rows with %c are checked against this ID. A device connected with the same ID would be disconnected.';
  });

  // The log: at most `limit` entries (older ones go, and the note says how
  // many); Pause stops showing received messages (counted meanwhile); Clear empties it.
  const limit = Number(panel.getAttribute('data-log-limit')) || 200;
  const note = $('try-log-note');
  const pauseButton = $('try-pause');
  let dropped = 0;
  let paused = false;
  let skipped = 0;
  function updateNote() {
    const parts = [];
    if (dropped > 0) parts.push(`${dropped} older ${dropped === 1 ? 'entry' : 'entries'} removed (the last ${limit} are kept).`);
    if (paused) parts.push(`Paused: ${skipped} ${skipped === 1 ? 'message' : 'messages'} received and not shown.`);
    note.textContent = parts.join(' ');
  }
  pauseButton.addEventListener('click', () => {
    paused = !paused;
    pauseButton.setAttribute('aria-pressed', String(paused));
    pauseButton.textContent = paused ? 'Resume' : 'Pause';
    if (!paused && skipped > 0) entry('info', 'Resumed', `${skipped} ${skipped === 1 ? 'message was' : 'messages were'} received while paused and not shown.`);
    skipped = 0;
    updateNote();
  });
  $('try-clear').addEventListener('click', () => {
    log.replaceChildren();
    dropped = 0;
    updateNote();
  });

  /** CONNACK return codes of MQTT 3.1.1, as Gatehouse uses them. */
  const connackText = {
    1: 'unacceptable protocol version (CONNACK 1)',
    2: 'client ID rejected (CONNACK 2)',
    3: 'the broker cannot check credentials now, or this username or address failed too often: wait and retry (CONNACK 3)',
    4: 'bad username or password (CONNACK 4)',
    5: 'not authorized (CONNACK 5)',
    // MQTT 5.0 reason codes (README, "MQTT 5").
    0x85: 'client ID not valid (CONNACK 0x85)',
    0x86: 'bad username or password (CONNACK 0x86)',
    0x87: 'not authorized (CONNACK 0x87)',
    0x88: 'the broker cannot check credentials now: wait and retry (CONNACK 0x88)',
    0x97: 'this username or address failed too often: wait and retry (CONNACK 0x97)',
  };
  const hex = (code) => `0x${code.toString(16).toUpperCase().padStart(2, '0')}`;

  let client = null;
  let connectedAs = null;

  function entry(kind, label, text, payload) {
    const item = document.createElement('li');
    item.setAttribute('data-kind', kind);
    const time = document.createElement('time');
    const now = new Date();
    time.dateTime = now.toISOString();
    time.textContent = now.toTimeString().slice(0, 8);
    const strong = document.createElement('span');
    strong.className = 'try-log-kind';
    strong.textContent = label;
    item.append(time, ' ', strong, ': ', text);
    if (payload !== undefined) {
      const pre = document.createElement('pre');
      pre.textContent = payload;
      item.append(pre);
    }
    log.append(item);
    while (log.childElementCount > limit) {
      log.firstElementChild.remove();
      dropped++;
    }
    if (dropped > 0) updateNote();
    log.parentElement.scrollTop = log.parentElement.scrollHeight;
    return item;
  }

  function setConnected(connected) {
    panel.querySelectorAll('[data-try-it-connected]').forEach((fieldset) => {
      fieldset.disabled = !connected;
    });
    connectButton.disabled = connected || client !== null;
    disconnectButton.disabled = !connected;
    clientIdInput.readOnly = connected;
  }

  /** Text of a payload: UTF-8 when it is, otherwise its size. */
  function describePayload(bytes) {
    try {
      const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
      return text.length > 2000 ? `${text.slice(0, 2000)}… (${bytes.length} bytes)` : text;
    } catch {
      return `(${bytes.length} bytes, not UTF-8 text)`;
    }
  }

  /**
   * What the permission checker (this page's own, /clients/:id) decides for
   * this client ID: the functions the broker uses. Null when it cannot say.
   */
  async function checkAccess(action, topic) {
    const query = new URLSearchParams({ clientId: connectedAs ?? clientIdInput.value, action, topic });
    try {
      const response = await fetch(`${checkUrl}?${query}`, { headers: { 'HX-Request': 'true' }, credentials: 'same-origin' });
      if (!response.ok) return null;
      const result = new DOMParser().parseFromString(await response.text(), 'text/html').getElementById('check-result');
      if (!result) return null;
      const text = [...result.querySelectorAll('p')].map((p) => p.textContent.replace(/\s+/g, ' ').trim()).join(' ');
      return { allowed: result.classList.contains('allowed'), text };
    } catch {
      return null;
    }
  }

  /** Shows the effective permissions of the client ID connected with, in the checker beside. */
  function showPermissionsFor(clientId) {
    const field = $('check-clientId');
    const form = field?.form;
    if (!field || !form || field.value === clientId) return;
    field.value = clientId;
    form.requestSubmit();
  }

  $('try-connect').addEventListener('submit', (event) => {
    event.preventDefault();
    if (client) return;
    const clientId = clientIdInput.value.trim();
    const password = passwordInput.value;
    if (!clientId || !password) {
      status.textContent = !clientId ? 'Enter an MQTT client ID.' : 'Enter the client’s password.';
      (!clientId ? clientIdInput : passwordInput).focus();
      return;
    }
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/mqtt`;
    status.textContent = `Connecting as ${username} with client ID ${clientId}…`;
    let failure = null;
    const protocolVersion = $('try-protocol').value === '5' ? 5 : 4;
    const protocolName = protocolVersion === 5 ? 'MQTT 5.0' : 'MQTT 3.1.1';
    // timerVariant native: mqtt.js' default timers run in a Worker made from a
    // blob: URL, which the console's CSP does not allow.
    client = window.mqtt.connect(url, {
      username,
      password,
      clientId,
      clean: true,
      protocolVersion,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      timerVariant: 'native',
    });
    setConnected(false);
    const current = client;
    current.on('connect', () => {
      connectedAs = clientId;
      passwordInput.value = '';
      status.textContent = `Connected as ${username} with client ID ${clientId}.`;
      entry('info', 'Connected', `CONNACK 0: accepted as ${username}, client ID ${clientId}, ${protocolName}.`);
      setConnected(true);
      showPermissionsFor(clientId);
    });
    current.on('error', (error) => {
      failure =
        typeof error.code === 'number' && connackText[error.code]
          ? `Refused: ${connackText[error.code]}.`
          : typeof error.code === 'number' && error.code >= 0x80
            ? `Refused: CONNACK ${hex(error.code)}.`
            : `Error: ${error.message}.`;
      entry('refused', 'Not connected', failure);
    });
    current.on('message', (topic, payload, packet) => {
      if (paused) {
        skipped++;
        updateNote();
        return;
      }
      // MQTT 5.0: the user properties the publisher attached, as name=value.
      const properties = Object.entries(packet.properties?.userProperties ?? {}).flatMap(([name, value]) =>
        (Array.isArray(value) ? value : [value]).map((one) => `${name}=${one}`),
      );
      const extra = properties.length ? `, user properties ${properties.join(', ')}` : '';
      entry('received', 'Received', `on ${topic} (QoS ${packet.qos}${packet.retain ? ', retained' : ''}${extra})`, describePayload(payload));
    });
    current.on('close', () => {
      if (client !== current) return;
      const was = connectedAs;
      client = null;
      connectedAs = null;
      current.end(true);
      status.textContent = failure ?? (was ? 'Disconnected.' : 'Not connected.');
      if (was) entry('info', 'Disconnected', `client ID ${was}.`);
      setConnected(false);
    });
  });

  disconnectButton.addEventListener('click', () => {
    client?.end();
  });

  $('try-subscribe').addEventListener('submit', (event) => {
    event.preventDefault();
    const filter = $('try-subscribe-topic').value;
    const qos = Number($('try-subscribe-qos').value);
    if (!client || !filter) return;
    client.subscribe(filter, { qos }, async (error, _granted, packet) => {
      // mqtt.js reports a SUBACK 0x80 (5.0: any reason code from 0x80) as an error; the SUBACK itself is in packet.
      const code = packet?.granted?.[0];
      if (typeof code === 'number' && code >= 0x80) {
        const item = entry('refused', 'Subscription refused', `SUBACK ${hex(code)} for ${filter}: the broker will send nothing on it.`);
        const decision = await checkAccess('subscribe', filter);
        if (decision) item.append(` Permissions: ${decision.text}`);
      } else if (typeof code === 'number') {
        entry('info', 'Subscribed', `${filter} (SUBACK granted QoS ${code}).`);
      } else {
        entry('refused', 'Subscription failed', `${filter}: ${error ? error.message : 'no SUBACK'}.`);
      }
    });
  });

  $('try-publish').addEventListener('submit', (event) => {
    event.preventDefault();
    const topic = $('try-publish-topic').value;
    const payload = $('try-publish-payload').value;
    const qos = Number($('try-publish-qos').value);
    if (!client || !topic) return;
    client.publish(topic, payload, { qos }, async (error) => {
      if (error && typeof error.code === 'number' && error.code >= 0x80) {
        // MQTT 5.0: the broker refused it with a reason code (0x87: the permissions do not allow it).
        const item = entry('refused', 'Publish refused', `${topic}: ${qos === 2 ? 'PUBREC' : 'PUBACK'} ${hex(error.code)}, delivered to no one.`, payload);
        const decision = await checkAccess('publish', topic);
        if (decision) item.append(` Permissions: ${decision.text}`);
        return;
      }
      if (error) {
        entry('refused', 'Not published', `${topic}: ${error.message}.`);
        return;
      }
      const answer = qos === 0 ? 'sent (QoS 0: the broker does not answer)' : 'PUBACK received';
      const item = entry('sent', 'Published', `on ${topic}, ${answer}.`, payload);
      const decision = await checkAccess('publish', topic);
      if (!decision) return;
      if (decision.allowed) {
        item.append(` Permissions: ${decision.text}`);
      } else {
        item.setAttribute('data-kind', 'refused');
        item.querySelector('.try-log-kind').textContent = 'Publish refused';
        item.append(
          qos === 0
            ? ` At QoS 0 the broker does not answer, so a refused publish is not told (at QoS 1, MQTT 5.0 gets PUBACK 0x87); it is delivered to no one. Permissions: ${decision.text}`
            : ` The broker acknowledges a refused publish like any other (MQTT 3.1.1 has no way to refuse one) and delivers it to no one. Permissions: ${decision.text}`,
        );
      }
    });
  });

  window.addEventListener('pagehide', () => client?.end(true));
})();
