// Gatehouse console: small enhancements on top of server-rendered forms.
// Everything here is optional: without JavaScript the forms still work.
(() => {
  'use strict';

  const ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789-_.~!@#%^*';
  const GENERATED_LENGTH = 24;

  /** A password of GENERATED_LENGTH characters drawn without modulo bias. */
  function generatePassword() {
    const out = [];
    const limit = 256 - (256 % ALPHABET.length);
    while (out.length < GENERATED_LENGTH) {
      const bytes = crypto.getRandomValues(new Uint8Array(GENERATED_LENGTH * 2));
      for (const b of bytes) {
        if (b < limit && out.length < GENERATED_LENGTH) out.push(ALPHABET[b % ALPHABET.length]);
      }
    }
    return out.join('');
  }

  function setStatus(id, text) {
    const status = document.querySelector(`[data-copy-status="${CSS.escape(id)}"]`);
    if (status) status.textContent = text;
  }

  function enhance(root) {
    root.querySelectorAll('[data-password-tools]').forEach((tools) => {
      tools.hidden = false;
    });
    root.querySelectorAll('[data-live-stream]').forEach((tail) => startLiveTail(tail));
    // With JavaScript the filter form opens the live tail instead of collecting for 5 seconds.
    root.querySelectorAll('form.live-form button[name=collect]').forEach((button) => {
      button.removeAttribute('name');
      button.textContent = 'Watch live';
    });
  }

  document.addEventListener('click', async (event) => {
    const target = event.target instanceof Element ? event.target : null;
    if (!target) return;

    const generate = target.closest('[data-generate-password]');
    if (generate) {
      const id = generate.getAttribute('data-generate-password');
      const input = document.getElementById(id);
      if (!input) return;
      // Client passwords come from the server with a token saying it made them
      // (such a password is stored with a fast hash; a typed one with Argon2id).
      // If the server cannot be asked, one made here is stored as typed.
      const token = document.getElementById(`${id}-generated`);
      let password = null;
      let proof = '';
      const url = generate.getAttribute('data-generate-url');
      if (url) {
        try {
          const response = await fetch(url, { headers: { Accept: 'application/json' }, credentials: 'same-origin', cache: 'no-store' });
          if (response.ok) {
            const body = await response.json();
            if (typeof body.password === 'string' && typeof body.token === 'string') {
              password = body.password;
              proof = body.token;
            }
          }
        } catch {}
      }
      if (password === null) password = generatePassword();
      if (token) token.value = proof;
      input.value = password;
      input.type = 'text'; // visible, so it can be read and copied before saving
      input.focus();
      input.select();
      setStatus(id, 'A new password is in the field. Copy it now: it is not shown again after saving.');
      return;
    }

    const copy = target.closest('[data-copy-password]');
    if (copy) {
      const id = copy.getAttribute('data-copy-password');
      const input = document.getElementById(id);
      if (!input || !input.value) {
        setStatus(id, 'Nothing to copy yet.');
        return;
      }
      try {
        await navigator.clipboard.writeText(input.value);
        setStatus(id, 'Copied.');
      } catch {
        input.type = 'text';
        input.select();
        setStatus(id, 'Select and copy the password by hand (Ctrl+C).');
      }
      return;
    }
  });

  // An edited generated password is a typed one: its token no longer applies
  // (the server would refuse it anyway).
  document.addEventListener('input', (event) => {
    const target = event.target;
    if (!(target instanceof HTMLInputElement) || !target.id) return;
    const token = document.getElementById(`${target.id}-generated`);
    if (token) token.value = '';
  });

  // Close an open row menu when focus or a click moves elsewhere, or on Escape.
  document.addEventListener('click', (event) => {
    // A click in the confirmation dialog leaves the menu that opened it open:
    // Cancel gives focus back to its item.
    if (event.target instanceof Element && event.target.closest('dialog')) return;
    document.querySelectorAll('details.dropdown[open]').forEach((menu) => {
      if (!menu.contains(event.target)) menu.removeAttribute('open');
    });
  });
  document.addEventListener('keydown', (event) => {
    if (event.key !== 'Escape') return;
    const menu = event.target instanceof Element ? event.target.closest('details.dropdown[open]') : null;
    if (menu) {
      menu.removeAttribute('open');
      menu.querySelector('summary')?.focus();
    }
  });

  // hx-confirm asks in a <dialog> (styled by Pico, focus kept inside) rather
  // than the browser's window.confirm. Its buttons are those of the
  // confirmation pages (ConfirmFooter): the way back first, the action last.
  // An element may offer one checkbox (data-confirm-option, -option-label):
  // ticked, the request carries `?<name>=1`. data-confirm-safe: an action
  // that destroys nothing, its button not marked dangerous.
  let confirmDialog = null;
  function confirmInDialog(message, confirmLabel, option, safe) {
    if (!confirmDialog) {
      confirmDialog = document.createElement('dialog');
      confirmDialog.setAttribute('aria-labelledby', 'confirm-dialog-message');
      confirmDialog.innerHTML =
        '<article><p id="confirm-dialog-message"></p>' +
        '<label class="confirm-option" hidden><input type="checkbox" name="confirm-option"> <span></span></label>' +
        '<footer class="confirm-actions">' +
        '<button type="button" class="secondary outline" value="cancel">Cancel</button> ' +
        '<button type="button" class="danger" value="confirm"></button></footer></article>';
      document.body.append(confirmDialog);
    }
    confirmDialog.querySelector('#confirm-dialog-message').textContent = message;
    const confirmButton = confirmDialog.querySelector('button[value="confirm"]');
    confirmButton.textContent = confirmLabel;
    confirmButton.className = safe ? '' : 'danger';
    const optionLabel = confirmDialog.querySelector('.confirm-option');
    const optionBox = optionLabel.querySelector('input');
    optionLabel.hidden = !option;
    optionBox.checked = false;
    optionLabel.querySelector('span').textContent = option ? option.label : '';
    return new Promise((resolve) => {
      const finish = (answer) => {
        confirmDialog.removeEventListener('click', onClick);
        confirmDialog.removeEventListener('cancel', onCancel);
        confirmDialog.close();
        resolve({ yes: answer, option: answer && option && optionBox.checked });
      };
      const onClick = (event) => {
        const button = event.target instanceof Element ? event.target.closest('button') : null;
        if (button) finish(button.value === 'confirm');
      };
      const onCancel = () => finish(false);
      confirmDialog.addEventListener('click', onClick);
      confirmDialog.addEventListener('cancel', onCancel);
      confirmDialog.showModal();
      confirmDialog.querySelector('button[value="cancel"]').focus();
    });
  }

  document.addEventListener('htmx:confirm', (event) => {
    const source = event.target instanceof Element ? event.target : null;
    const message = source?.getAttribute('hx-confirm');
    if (!message || typeof event.detail?.issueRequest !== 'function') return;
    event.preventDefault();
    const label = source.getAttribute('data-confirm-label') || 'Confirm';
    const name = source.getAttribute('data-confirm-option');
    const option = name ? { name, label: source.getAttribute('data-confirm-option-label') || name } : null;
    confirmInDialog(message, label, option, source.hasAttribute('data-confirm-safe')).then((answer) => {
      if (!answer.yes) return event.detail.dropRequest();
      const request = event.detail.ctx && event.detail.ctx.request;
      if (answer.option && request && typeof request.action === 'string') {
        request.action += `${request.action.includes('?') ? '&' : '?'}${encodeURIComponent(name)}=1`;
      }
      event.detail.issueRequest();
    });
  });

  // A table that refreshes itself (Connections) skips a refresh while the
  // operator is using it: a row menu or a confirmation open, or focus inside,
  // which the swap would otherwise take away.
  document.addEventListener('htmx:before:request', (event) => {
    const source = event.target instanceof Element ? event.target : null;
    if (!source || !source.hasAttribute('data-live-refresh')) return;
    const busy =
      source.querySelector('details.dropdown[open]') ||
      document.querySelector('dialog[open]') ||
      (document.activeElement && document.activeElement !== source && source.contains(document.activeElement));
    if (busy) event.preventDefault();
  });

  // Group rules: a rule by Client offers the client usernames as suggestions;
  // rules by MQTT Client ID or certificate fingerprint do not.
  function syncMatchBy(select) {
    const input = document.getElementById(select.getAttribute('data-match-by'));
    if (!input) return;
    const byClient = select.value === 'client';
    if (byClient) input.setAttribute('list', 'client-usernames');
    else input.removeAttribute('list');
    input.placeholder = byClient ? 'client username' : select.value === 'certificate' ? 'SHA-256 fingerprint' : 'sensor-*';
  }

  // Group rules: the closed group picker shows the groups checked.
  function syncGroupPicker(picker) {
    const label = picker.querySelector('summary [data-chosen]');
    if (!label) return;
    const names = [...picker.querySelectorAll('input[type=checkbox]:checked')].map((box) => box.parentElement.textContent.trim());
    label.textContent = names.length ? names.join(', ') : 'Choose groups';
  }

  document.addEventListener('change', (event) => {
    const target = event.target instanceof Element ? event.target : null;
    if (!target) return;
    if (target.matches('select[data-match-by]')) syncMatchBy(target);
    const picker = target.closest('details.group-picker');
    if (picker) syncGroupPicker(picker);
  });

  // After a swap that removed what the operator was using (a deleted row,
  // its menu with it), focus would fall to <body>, and a keyboard or screen
  // reader would start again from the top. It goes to the region around what
  // was swapped instead (a table's region, else <main>). htmx reports such a
  // swap on the removed element, whose events no longer reach the document:
  // an extension hook hears them all.
  if (window.htmx && typeof window.htmx.registerExtension === 'function') {
    const around = new WeakMap();
    window.htmx.registerExtension('gatehouse-focus', {
      htmx_before_swap(elt, detail) {
        const target = detail && detail.ctx && detail.ctx.target;
        if (!(target instanceof Element)) return;
        // The element that asked, as it is now: htmx may name another later.
        around.set(detail.ctx, {
          source: detail.ctx.sourceElement,
          container: target.closest('.table-scroll') || target.closest('section[id]') || document.getElementById('main'),
        });
      },
      htmx_finally_swap(elt, detail) {
        const ctx = detail && detail.ctx;
        const kept = ctx && around.get(ctx);
        if (!kept || !kept.container.isConnected) return;
        const container = kept.container;
        const lost = !document.activeElement || document.activeElement === document.body;
        if (!lost || (kept.source instanceof Element && kept.source.isConnected)) return;
        if (!container.hasAttribute('tabindex')) container.setAttribute('tabindex', '-1');
        container.focus({ preventScroll: true });
      },
    });
  }

  // Group rules: a search (or a change) that swaps the table keeps the rows
  // open for editing as they are: their ids go with the request, the server
  // answers placeholders marked hx-preserve, and htmx keeps the rows in place.
  document.addEventListener('htmx:config:request', (event) => {
    const request = event.detail && event.detail.ctx && event.detail.ctx.request;
    if (!request || !request.headers || !document.getElementById('rule-results')) return;
    const ids = [...document.querySelectorAll('#rule-rows tr.editing[id^="rule-"]')].map((row) => row.id.slice('rule-'.length));
    if (ids.length) request.headers['X-Rules-Editing'] = ids.join(',');
  });

  // Group rules: leaving the page with a rule form changed and not saved (the
  // add form, or a row open for editing) asks first. A form is unsaved once
  // anything in it changes, or when it came back refused (data-unsaved);
  // submitting it leaves freely.
  let leavingOnPurpose = false;
  const markUnsaved = (event) => {
    const form = event.target instanceof Element ? event.target.closest('form[data-rule-form]') : null;
    if (form) form.setAttribute('data-unsaved', 'true');
  };
  document.addEventListener('change', markUnsaved);
  document.addEventListener('input', markUnsaved);
  document.addEventListener('submit', (event) => {
    if (event.target instanceof Element && event.target.matches('form[data-rule-form]')) leavingOnPurpose = true;
  }, true);
  window.addEventListener('beforeunload', (event) => {
    if (leavingOnPurpose || !document.querySelector('form[data-rule-form][data-unsaved="true"]')) return;
    event.preventDefault();
    event.returnValue = '';
  });

  // Topics: the live tail. The server streams the filter's messages as
  // server-sent events (JSON; payloads as text or hex, put in text nodes
  // only); the table keeps the last LIVE_ROWS. Pause closes the stream,
  // Resume opens it again; Clear empties the table.
  const LIVE_ROWS = 200;
  function startLiveTail(tail) {
    if (tail.dataset.liveStarted) return;
    tail.dataset.liveStarted = 'true';
    tail.hidden = false;
    const rows = tail.querySelector('[data-live-rows]');
    const status = tail.querySelector('.live-status');
    const pause = tail.querySelector('[data-live-pause]');
    let source = null;
    const cell = (text, code) => {
      const td = document.createElement('td');
      if (code) {
        const c = document.createElement('code');
        c.textContent = text;
        td.append(c);
      } else td.textContent = text;
      return td;
    };
    const add = (tr) => {
      rows.prepend(tr);
      while (rows.children.length > LIVE_ROWS) rows.lastElementChild.remove();
    };
    const open = () => {
      source = new EventSource(tail.getAttribute('data-live-stream'));
      source.addEventListener('ready', () => { status.textContent = 'Watching: new messages appear at the top.'; });
      source.addEventListener('message', (event) => {
        const m = JSON.parse(event.data);
        const tr = document.createElement('tr');
        tr.append(
          cell(new Date(m.at).toISOString().slice(11, 23)),
          cell(m.topic + (m.retain ? ' (retained)' : ''), true),
          cell(m.kind === 'empty' ? '(empty)' : (m.kind === 'hex' ? 'hex ' : '') + m.text + (m.cut ? ` … (${m.size} B)` : ''), true),
          cell(`${m.size} B`),
        );
        tr.dataset.kind = m.kind;
        add(tr);
      });
      source.addEventListener('skipped', (event) => {
        const { count } = JSON.parse(event.data);
        const tr = document.createElement('tr');
        const td = cell(`${count} more ${count === 1 ? 'message' : 'messages'} not shown (at most 10 a second are).`);
        td.colSpan = 4;
        tr.append(td);
        add(tr);
      });
      source.addEventListener('error', () => { status.textContent = 'The stream was interrupted; reconnecting…'; });
    };
    pause.addEventListener('click', () => {
      if (source) {
        source.close();
        source = null;
        pause.textContent = 'Resume';
        status.textContent = 'Paused: messages meanwhile are not shown.';
      } else {
        pause.textContent = 'Pause';
        open();
      }
    });
    tail.querySelector('[data-live-clear]').addEventListener('click', () => rows.replaceChildren());
    open();
  }

  document.addEventListener('DOMContentLoaded', () => enhance(document));
  document.addEventListener('htmx:after:swap', (event) => {
    // A rule form that came back (refused, or done): leaving asks again if one is still unsaved.
    leavingOnPurpose = false;
    const target = event.target instanceof Element ? event.target : document;
    enhance(target.isConnected ? target : document);
  });
})();
