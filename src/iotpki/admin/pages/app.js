// The dashboard: plain DOM over the admin JSON API (/admin/api/v1, docs/http-api.md). Every
// value from the API is set as text, never as markup. Charts are inline SVG drawn here.
'use strict';

const API = '/admin/api/v1';
let session = null;
let timer = null;

function el(tag, attrs, ...children) {
  const svg = ['svg', 'rect', 'text', 'g', 'line', 'title'].includes(tag);
  const e = svg ? document.createElementNS('http://www.w3.org/2000/svg', tag)
                : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(typeof c === 'object' ? c : String(c));
  }
  return e;
}

async function api(path, options) {
  const r = await fetch(API + path, Object.assign({credentials: 'same-origin'}, options));
  const body = await r.json().catch(() => ({error: r.statusText}));
  if (!r.ok) throw new Error(body.error || ('HTTP ' + r.status));
  return body;
}

async function act(path, body) {
  return api(path, {
    method: 'POST',
    headers: {'Content-Type': 'application/json', 'X-CSRF-Token': session.csrf_token},
    body: JSON.stringify(body || {}),
  });
}

function status(text, error) {
  const s = document.getElementById('status');
  s.textContent = text;
  s.className = error ? 'error' : '';
}

function card(label, n, id) {
  return el('div', {class: 'card'}, el('div', {class: 'n', id: id || ''}, n),
            el('div', {class: 'label'}, label));
}

function table(headers, rows) {
  return el('table', {}, el('tr', {}, headers.map((h) => el('th', {}, h))),
            rows.map((r) => el('tr', r.attrs || {}, r.cells.map((c) =>
              (c instanceof Node) ? el('td', {}, c)
              : el('td', {class: typeof c === 'number' ? 'num' : ''}, c ?? '')))));
}

// A bar chart: one bar per item, the label under every `tick`-th bar.
function barChart(items, opts) {
  const w = opts.width || 900, h = opts.height || 200, pad = 28;
  const max = Math.max(1, ...items.map((i) => i.n));
  const bw = Math.max(1, (w - pad) / Math.max(1, items.length));
  const svg = el('svg', {class: 'chart', width: w, height: h + pad, viewBox: `0 0 ${w} ${h + pad}`,
                         role: 'img', 'aria-label': opts.title || 'chart'});
  svg.append(el('text', {x: 2, y: 10}, max));
  items.forEach((item, i) => {
    const bh = Math.round((item.n / max) * (h - 14));
    const x = pad + i * bw;
    svg.append(el('rect', {class: 'bar', x, y: h - bh, width: Math.max(1, bw - 1), height: bh},
                  el('title', {}, `${item.label}: ${item.n}`)));
    if (opts.tick && i % opts.tick === 0) {
      svg.append(el('text', {x, y: h + 14}, item.label));
    }
  });
  svg.append(el('line', {x1: pad, y1: h, x2: w, y2: h, stroke: '#999'}));
  return svg;
}

const views = {
  async overview(main) {
    const o = await api('/overview');
    main.append(el('h1', {}, 'Fleet overview'));
    main.append(el('div', {class: 'cards'}, card('devices', o.devices.total, 'count-total'),
        Object.entries(o.devices.by_state).map(([s, n]) => card(s, n, 'count-' + s))));
    main.append(el('h2', {}, 'Expiring working certificates'));
    main.append(el('div', {class: 'cards'},
        o.expiring.map((e) => card(`within ${e.within_days} days`, e.n, 'expiring-' + e.within_days))));
    main.append(el('h2', {}, 'Certificates issued per day, last 30 days'));
    main.append(barChart(o.issued_per_day.map((d) => ({label: d.date.slice(5), n: d.n})),
                         {width: 600, height: 120, tick: 1, title: 'certificates issued per day'}));
    main.append(table(['day', 'issued', 'birth (IDevID)', 'working (LDevID)'],
        o.issued_per_day.map((d) => ({attrs: {class: 'issued-day'}, cells: [d.date, d.n,
          d.by_profile.idevid || 0, d.by_profile.ldevid || 0]}))));
    main.append(el('h2', {}, 'Devices by model'));
    main.append(barChart(o.by_model.slice(0, 40).map((m) => ({label: m.model, n: m.n})),
                         {width: 600, height: 120, tick: 1, title: 'devices by model'}));
    main.append(table(['model', 'devices'], o.by_model.map((m) => ({cells: [m.model, m.n]}))));
    main.append(el('h2', {}, 'Devices by batch'));
    main.append(table(['batch', 'devices'], o.by_batch.slice(0, 100).map((b) => ({cells: [b.batch, b.n]}))));
    main.append(el('h2', {}, 'Campaigns'));
    main.append(table(['state', 'campaigns'], Object.entries(o.campaigns).map(([s, n]) => ({cells: [s, n]}))));
  },

  async expiry(main) {
    const e = await api('/expiry?days=365');
    main.append(el('h1', {}, 'Expiry horizon'));
    main.append(el('p', {}, `Devices by the day their first working certificate expires, ${e.from} to ${e.to}: `,
                   el('strong', {id: 'expiry-total'}, e.total)));
    // Whole days, zero-filled, so the chart's x axis is time.
    const byDate = new Map(e.days.map((d) => [d.date, d.n]));
    const start = Date.parse(e.from + 'T00:00:00Z');
    const items = [];
    for (let i = 0; i < 365; i++) {
      const label = new Date(start + i * 86400000).toISOString().slice(0, 10);
      items.push({label, n: byDate.get(label) || 0});
    }
    main.append(barChart(items, {width: 1000, height: 220, tick: 60, title: 'expiry histogram'}));
    main.append(el('h2', {}, 'Busiest days'));
    const top = [...e.days].sort((a, b) => b.n - a.n).slice(0, 15);
    main.append(table(['date', 'devices'], top.map((d) => ({cells: [d.date, d.n]}))));
  },

  async campaigns(main) {
    const {campaigns} = await api('/campaigns');
    main.append(el('h1', {}, 'Rotation campaigns'));
    if (!campaigns.length) main.append(el('p', {}, 'No campaigns (iotpki campaign create makes one).'));
    const canAct = session.role === 'operator';
    const button = (c, verb) => el('button', {'data-action': verb, 'data-campaign': c.name,
        onclick: async () => {
          try {
            const r = await act(`/campaigns/${encodeURIComponent(c.name)}/${verb}`);
            status(`campaign ${r.name}: ${r.from} -> ${r.state}`);
          } catch (err) { status(err.message, true); }
          show();
        }}, verb);
    main.append(table(['name', 'state', 'jobs', 'wave', 'pending', 'notified', 'enrolled', 'confirmed',
                       'failed', 'failure rate', 'halts above', ''],
        campaigns.map((c) => ({attrs: {'data-campaign': c.name}, cells: [
          c.name, el('span', {class: 'state'}, c.state + (c.reason ? ` (${c.reason})` : '')), c.jobs,
          `${c.current_wave + 1}/${c.waves}`, c.counts.pending, c.counts.notified, c.counts.enrolled,
          c.counts.confirmed, c.counts.failed, (100 * c.failure_rate).toFixed(1) + '%',
          (100 * c.max_failure_rate).toFixed(1) + '%',
          canAct ? el('span', {}, c.state === 'running' ? button(c, 'pause') : null,
                      ['paused', 'halted'].includes(c.state) ? button(c, 'resume') : null,
                      ['running', 'paused', 'halted'].includes(c.state) ? button(c, 'cancel') : null)
                 : 'read-only']}))));
    for (const c of campaigns.slice(0, 5)) {
      main.append(el('h2', {}, `${c.name}: jobs per wave`));
      main.append(table(['wave', 'pending', 'notified', 'enrolled', 'confirmed', 'failed', 'failure rate'],
          c.per_wave.slice(0, 50).map((w) => ({cells: [w.wave + 1, w.pending, w.notified, w.enrolled,
              w.confirmed, w.failed, (100 * w.failure_rate).toFixed(1) + '%']}))));
      const f = await api(`/campaigns/${encodeURIComponent(c.name)}/failures?limit=20`);
      if (f.failures.length) {
        main.append(el('h2', {}, `${c.name}: failures`));
        main.append(table(['device', 'wave', 'state', 'attempts', 'last error'],
            f.failures.map((j) => ({cells: [el('a', {href: '#device/' + j.device_id, class: 'mono'}, j.device_id),
                                            j.wave + 1, j.state, j.attempts, j.last_error]}))));
      }
    }
    // Follow a running campaign live.
    timer = setTimeout(show, 5000);
  },

  async device(main, arg) {
    main.append(el('h1', {}, 'Devices'));
    const input = el('input', {name: 'q', placeholder: 'device id (64 hex digits) or serial', value: arg || ''});
    main.append(el('form', {class: 'search', onsubmit: (ev) => {
      ev.preventDefault();
      location.hash = '#device/' + encodeURIComponent(input.value.trim());
    }}, input, el('button', {type: 'submit'}, 'Search')));
    if (!arg) {
      const page = await api('/devices?limit=25');
      main.append(el('h2', {}, 'First devices of the inventory'));
      main.append(table(['device', 'serial', 'model', 'batch', 'state'], page.devices.map((d) => ({cells: [
        el('a', {href: '#device/' + d.device_id, class: 'mono'}, d.device_id.slice(0, 16) + '…'),
        d.serial, d.model, d.batch, d.state]}))));
      return;
    }
    const d = await api('/devices/' + encodeURIComponent(arg));
    const dev = d.device;
    main.append(el('h2', {}, 'Device ' + dev.serial));
    main.append(table(['field', 'value'], Object.entries(dev).map(([k, v]) => ({cells: [k, v]}))));
    const canAct = session.role === 'operator';
    if (canAct && dev.state !== 'decommissioned') {
      main.append(el('button', {onclick: async () => {
        if (!confirm('Decommission this device and revoke every certificate?')) return;
        try { await act(`/devices/${dev.device_id}/decommission`); status('decommissioned'); }
        catch (err) { status(err.message, true); }
        show();
      }}, 'Decommission'));
    }
    main.append(el('h2', {}, 'Certificates'));
    main.append(table(['slot', 'serial', 'profile', 'issuer', 'not after', 'status', 'revoked', ''],
        d.certificates.map((c) => ({cells: [c.slot, el('span', {class: 'mono'}, c.serial), c.profile, c.issuer,
          c.not_after, c.status, c.revoked_at ? `${c.revoked_at} (${c.reason})` : '',
          canAct && c.status === 'valid' ? el('button', {onclick: async () => {
            const reason = prompt('Reason (keyCompromise, superseded, cessationOfOperation, affiliationChanged, unspecified)', 'keyCompromise');
            if (!reason) return;
            try { await act(`/certificates/${c.serial}/revoke`, {reason}); status('revoked ' + c.serial); }
            catch (err) { status(err.message, true); }
            show();
          }}, 'revoke') : '']}))));
    // The device's audit rows, newest first, a keyset page at a time.
    main.append(el('h2', {}, 'Audit rows'));
    const audit = el('div', {id: 'device-audit'});
    main.append(audit);
    const more = async (before) => {
      const a = await api(`/devices/${dev.device_id}/audit?limit=20` + (before ? '&before=' + before : ''));
      audit.append(table(['seq', 'time', 'actor', 'action', 'details'],
          a.audit.map((r) => ({attrs: {class: 'audit-row'}, cells: [r.seq, r.time, r.actor, r.action,
            el('span', {class: 'mono'}, r.details)]}))));
      if (a.next_before) {
        const b = el('button', {onclick: () => { b.remove(); more(a.next_before); }}, 'older rows');
        audit.append(b);
      }
    };
    await more(null);
  },

  async revocations(main, cursor) {
    const st = await api('/status');
    main.append(el('h1', {}, 'Revocations and certificate status'));
    main.append(table(['CA', 'revoked', 'CRL number', 'this update', 'next update', 'age', 'CRL', 'OCSP responder'],
        st.cas.map((c) => ({cells: [c.ca, c.revoked,
          c.crl ? c.crl.number : '', c.crl ? c.crl.this_update : 'not published here',
          c.crl ? c.crl.next_update : '',
          c.crl ? el('span', {class: c.crl.stale ? 'bad' : 'ok'}, `${Math.round(c.crl.age_seconds / 60)} min` + (c.crl.stale ? ' STALE' : '')) : '',
          c.crl ? el('a', {href: c.crl.url}, c.crl.url) : '',
          c.ocsp ? el('span', {class: c.ocsp.valid ? 'ok' : 'bad'}, `${c.ocsp.responder_serial.slice(0, 12)}… until ${c.ocsp.not_after}`) : 'none']}))));
    const r = await api('/revocations?limit=50' + (cursor ? '&cursor=' + encodeURIComponent(cursor) : ''));
    main.append(el('h2', {}, 'Revoked certificates, oldest first'));
    main.append(table(['revoked at', 'serial', 'device', 'profile', 'issuer', 'reason'],
        r.revocations.map((c) => ({cells: [c.revoked_at, el('span', {class: 'mono'}, c.serial),
          c.device_id ? el('a', {href: '#device/' + c.device_id, class: 'mono'}, c.device_id.slice(0, 16) + '…') : '',
          c.profile, c.issuer, c.reason]}))));
    if (r.next_cursor) {
      main.append(el('a', {href: '#revocations/' + encodeURIComponent(r.next_cursor)}, 'next page'));
    }
  },

  async audit(main) {
    const a = await api('/audit');
    main.append(el('h1', {}, 'Audit log'));
    if (a.head) {
      main.append(el('p', {}, `Head: row ${a.head.seq} (${a.head.action}, ${a.head.time}) `,
                     el('span', {class: 'mono'}, a.head.hash)));
    }
    const v = a.last_verification;
    if (!v) {
      main.append(el('p', {}, 'The chain has not been verified by this server yet.'));
    } else {
      main.append(el('p', {id: 'audit-verdict', class: v.intact ? 'ok' : 'bad'},
          v.intact ? `Intact: ${v.rows} rows verified up to row ${v.last_seq}, ${v.finished_at}.`
                   : `BROKEN: ${v.explanation} (${v.finished_at})`));
    }
    main.append(el('p', {}, 'The same check by hand: iotpki audit verify --dir DIR'));
  },
};

async function show() {
  clearTimeout(timer);
  const [name, ...rest] = (location.hash.slice(1) || 'overview').split('/');
  const arg = rest.length ? decodeURIComponent(rest.join('/')) : '';
  const view = views[name] || views.overview;
  for (const a of document.querySelectorAll('header nav a')) {
    a.classList.toggle('active', a.getAttribute('href') === '#' + name);
  }
  const main = el('main', {id: 'view', 'data-view': name});
  try {
    await view(main, arg);
    main.setAttribute('data-ready', '1');
  } catch (err) {
    main.append(el('p', {class: 'bad'}, err.message));
    main.setAttribute('data-ready', '1');
  }
  document.getElementById('view').replaceWith(main);
}

async function start() {
  try {
    session = await api('/session');
    document.getElementById('who').textContent = `${session.operator} (${session.role})`;
  } catch (err) {
    status(err.message, true);
    return;
  }
  window.addEventListener('hashchange', show);
  show();
}

start();
