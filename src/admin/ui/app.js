// gatewatch operator console: plain JavaScript, no framework, no build step (src/admin/ui.rs).
//
// Two rules hold everywhere below:
// - Every value from the API is attacker-influenced (paths, client ids, evidence): it only
//   ever reaches the page as text (textContent, text nodes) or as an attribute value set on
//   an element made here; never as HTML.
// - The admin token lives in the variable `token` and nowhere else: not in storage, not in a
//   cookie, not in the URL. Reloading the page forgets it.
'use strict';

(() => {
  const API = new URL('../api/v1/', document.baseURI); // /ui/ -> /api/v1/, under any prefix
  const POLL_MS = 2000;
  const LIST_LIMIT = 50;
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const KINDS = ['client_id', 'source_ip', 'token', 'route'];

  let token = null;
  let session = 0; // bumped by every unlock and lock: answers from an older session are dropped
  let loop = 0; // bumped by every poll started: an older poll neither renders nor reschedules
  let pollTimer = null;
  let listKey = '';
  let maxSeq = -1; // -1: nothing listed yet (the first list marks nothing as new)
  let selectedId = null;
  let view = null; // { type: 'alert', id } | { type: 'entity', kind, id, from }
  let detailKey = '';
  const detectors = new Set();

  const $ = (id) => document.getElementById(id);

  /** An element with attributes (`class` -> className) and children (strings become text). */
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    append(e, children);
    return e;
  }

  function svg(tag, attrs, ...children) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    append(e, children);
    return e;
  }

  function append(parent, children) {
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      parent.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }

  class Stale extends Error {}

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  /** One path segment. `.` and `..` would be resolved away by the URL parser, encoded or not. */
  function seg(s) {
    const v = String(s);
    if (v === '.' || v === '..' || v === '') throw new ApiError(400, `the id \`${v}\` cannot be asked for in a URL path`);
    return encodeURIComponent(v);
  }

  /** A GET under /api/v1/ with the token. 401 locks the console; an answer to an older session throws Stale. */
  async function api(path) {
    const s = session;
    let r;
    try {
      r = await fetch(new URL(path, API), {
        headers: { Authorization: 'Bearer ' + token, Accept: 'application/json' },
        cache: 'no-store',
        credentials: 'omit',
        redirect: 'error',
      });
    } catch (e) {
      if (s !== session) throw new Stale();
      throw new ApiError(0, 'gatewatch is not reachable (' + e.message + ')');
    }
    if (s !== session) throw new Stale();
    if (r.status === 401) {
      lock('The token was refused (401 Unauthorized). Enter the admin token again.');
      throw new Stale();
    }
    const text = await r.text();
    if (s !== session) throw new Stale();
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch (_) {
      body = null;
    }
    return { status: r.status, ok: r.ok, body };
  }

  function errorText(r) {
    const e = r.body && typeof r.body === 'object' && typeof r.body.error === 'string' ? r.body.error : '';
    return `HTTP ${r.status}` + (e ? ': ' + e : '');
  }

  // ---------------------------------------------------------------- formatting

  const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
  const arr = (v) => (Array.isArray(v) ? v : []);
  const str = (v) => (v === undefined || v === null ? '' : String(v));

  /** `2025-11-21T10:02:05.123Z` -> `2025-11-21 10:02:05`; anything else as it is. */
  function fmtTime(t, short) {
    const m = /^(\d{4})-(\d\d-\d\d)T(\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:?\d\d)?$/.exec(str(t));
    if (!m) return str(t);
    return (short ? m[2] : m[1] + '-' + m[2]) + ' ' + m[3];
  }

  /** `2025-11-21T10:02:05Z` -> [`2025-11-21`, `10:02:05`]; anything else as the first. */
  function timeParts(t) {
    const m = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)/.exec(str(t));
    return m ? [m[1], m[2]] : [str(t), ''];
  }

  function fmtDuration(ms) {
    if (!Number.isFinite(ms) || ms < 0) return '';
    const s = Math.round(ms / 1000);
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return s % 60 ? `${m} min ${s % 60} s` : `${m} min`;
    const h = Math.floor(m / 60);
    return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
  }

  function fmtNum(n) {
    if (!Number.isFinite(n)) return str(n);
    if (Math.abs(n) >= 100 || Number.isInteger(n)) return String(Math.round(n));
    return String(Math.round(n * 10) / 10);
  }

  /** A value of a key/value table: text as it is, anything nested as compact JSON. */
  function valueText(v) {
    if (v === null) return 'null';
    if (typeof v === 'string') return v;
    // A list of plain values with a space after each comma, so that it wraps.
    if (Array.isArray(v) && v.every((x) => x === null || typeof x !== 'object')) return '[' + v.map((x) => JSON.stringify(x)).join(', ') + ']';
    if (typeof v === 'object') return JSON.stringify(v);
    return String(v);
  }

  function badge(sev) {
    const s = str(sev).toLowerCase();
    const known = ['info', 'low', 'medium', 'high', 'critical'].includes(s);
    return el('span', { class: 'sev sev-' + (known ? s : 'unknown') }, s || '?');
  }

  function entityText(e) {
    return isObj(e) ? `${str(e.kind)}:${str(e.id)}` : '';
  }

  /**
   * A key/value table. Nested values are compact JSON, except with `opts.expand`: an object, or
   * a list of objects, one level down becomes a table of its own (what a detector holds).
   */
  function kvTable(obj, opts) {
    const o = opts || {};
    const skip = o.skip || [];
    const t = el('table', { class: 'kv' + (o.nested ? ' nested' : ''), id: o.id });
    const tb = el('tbody');
    for (const [k, v] of Object.entries(obj)) {
      if (skip.includes(k)) continue;
      const nested = v !== null && typeof v === 'object';
      const td = el('td', { class: nested ? 'json' : '' });
      if (o.expand && isObj(v) && Object.keys(v).length) td.append(kvTable(v, { nested: true }));
      else if (o.expand && Array.isArray(v) && v.length && v.length <= 50 && v.every(isObj)) for (const x of v) td.append(kvTable(x, { nested: true }));
      else td.textContent = valueText(v);
      tb.append(el('tr', {}, el('th', { scope: 'row' }, k), td));
    }
    t.append(tb);
    return t;
  }

  // ---------------------------------------------------------------- lock / unlock

  function setStatus(text, bad) {
    const s = $('poll-status');
    s.textContent = text;
    s.classList.toggle('bad', !!bad);
  }

  function lock(message) {
    session++;
    loop++;
    token = null;
    clearTimeout(pollTimer);
    listKey = '';
    maxSeq = -1;
    selectedId = null;
    view = null;
    detailKey = '';
    $('alerts').tBodies[0].replaceChildren();
    $('alert-count').textContent = '';
    $('lookup-id').value = '';
    $('detail').replaceChildren(el('p', { class: 'empty' }, 'Select an alert to see its evidence and timeline, or look up an entity.'));
    setStatus('');
    $('console').hidden = true;
    $('lock').hidden = true;
    $('login').hidden = false;
    document.body.dataset.state = 'locked';
    const msg = $('login-msg');
    msg.textContent = message || '';
    msg.hidden = !message;
    const input = $('token');
    input.value = '';
    input.focus();
  }

  async function unlock(ev) {
    ev.preventDefault();
    const input = $('token');
    const t = input.value.trim();
    if (!t) return;
    input.value = '';
    token = t;
    session++;
    const button = $('unlock');
    button.disabled = true;
    button.textContent = 'Checking…';
    try {
      const r = await api('alerts?limit=1');
      if (!r.ok) setStatus('alerts: ' + errorText(r), true);
      document.body.dataset.state = 'unlocked';
      $('login').hidden = true;
      $('login-msg').hidden = true;
      $('console').hidden = false;
      $('lock').hidden = false;
      loadDetectors();
      poll();
    } catch (e) {
      if (!(e instanceof Stale)) {
        token = null;
        session++;
        const msg = $('login-msg');
        msg.textContent = e.message;
        msg.hidden = false;
      }
    } finally {
      button.disabled = false;
      button.textContent = 'Open console';
    }
  }

  // ---------------------------------------------------------------- the alert list

  async function loadDetectors() {
    try {
      const r = await api('detectors');
      if (r.ok && isObj(r.body)) for (const rule of arr(r.body.rules)) if (isObj(rule) && rule.kind) detectors.add(str(rule.kind));
      fillDetectors();
    } catch (_) {
      // The filter still fills from the alerts seen.
    }
  }

  function fillDetectors() {
    const sel = $('f-detector');
    const have = new Set([...sel.options].map((o) => o.value));
    const missing = [...detectors].filter((d) => !have.has(d));
    if (!missing.length) return;
    const current = sel.value;
    const all = [...new Set([...have, ...detectors])].filter((d) => d !== '').sort();
    sel.replaceChildren(el('option', { value: '' }, 'all'), ...all.map((d) => el('option', { value: d }, d)));
    sel.value = current;
  }

  function poll() {
    const mine = ++loop;
    clearTimeout(pollTimer);
    (async () => {
      try {
        await refreshList(mine);
        await refreshDetail(mine);
        if (mine === loop) setStatus('live · updated ' + new Date().toLocaleTimeString());
      } catch (e) {
        if (!(e instanceof Stale) && mine === loop) setStatus(e.message + ' · retrying', true);
      }
      if (mine === loop) pollTimer = setTimeout(poll, POLL_MS);
    })();
  }

  async function refreshList(mine) {
    const q = new URLSearchParams({ limit: String(LIST_LIMIT) });
    const d = $('f-detector').value;
    const s = $('f-severity').value;
    if (d) q.set('detector', d);
    if (s) q.set('severity', s);
    const r = await api('alerts?' + q);
    if (mine !== loop) throw new Stale();
    if (!r.ok || !isObj(r.body)) throw new ApiError(r.status, 'alerts: ' + errorText(r));
    renderList(arr(r.body.alerts).filter(isObj), r.body.next !== null && r.body.next !== undefined, q.toString());
  }

  function renderList(alerts, more, query) {
    let newDetector = false;
    for (const a of alerts) {
      if (a.detector && !detectors.has(str(a.detector))) {
        detectors.add(str(a.detector));
        newDetector = true;
      }
    }
    if (newDetector) fillDetectors();
    const n = alerts.length;
    $('alert-count').textContent = n === 0 ? '0 alerts' : more ? `newest ${n} shown (more kept)` : `${n} alert${n === 1 ? '' : 's'}`;
    $('alerts-empty').hidden = n > 0;
    const key = query + '|' + alerts.map((a) => str(a.id) + '@' + str(a.seq)).join(',');
    if (key === listKey) return;
    listKey = key;
    const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.id : undefined;
    const first = maxSeq < 0;
    let top = maxSeq;
    const rows = alerts.map((a) => {
      const seq = Number(a.seq);
      const fresh = !first && Number.isFinite(seq) && seq > maxSeq;
      if (Number.isFinite(seq)) top = Math.max(top, seq);
      const ent = entityText(a.entity);
      const tr = el(
        'tr',
        {
          'data-id': str(a.id),
          tabindex: 0,
          class: [a.id === selectedId ? 'sel' : '', fresh ? 'fresh' : ''].join(' ').trim(),
          'aria-selected': a.id === selectedId ? 'true' : 'false',
        },
        el('td', { class: 'c-time mono', title: str(a.window_end) }, el('span', { class: 't' }, timeParts(a.window_end)[1]), el('span', { class: 'd' }, timeParts(a.window_end)[0])),
        el('td', { class: 'c-sev' }, badge(a.severity)),
        el('td', { class: 'c-det' }, str(a.detector)),
        el('td', { class: 'c-rule', title: str(a.rule) }, str(a.rule)),
        el('td', { class: 'c-ent mono', title: ent }, ent),
        el('td', { class: 'c-sum', title: str(a.summary) }, str(a.summary)),
      );
      return tr;
    });
    maxSeq = Math.max(top, 0);
    $('alerts').tBodies[0].replaceChildren(...rows);
    if (focused !== undefined) {
      const row = rowOf(focused);
      if (row) row.focus({ preventScroll: true });
    }
  }

  function rowOf(id) {
    for (const tr of $('alerts').tBodies[0].rows) if (tr.dataset.id === id) return tr;
    return null;
  }

  function markSelected() {
    for (const tr of $('alerts').tBodies[0].rows) {
      const on = tr.dataset.id === selectedId;
      tr.classList.toggle('sel', on);
      tr.setAttribute('aria-selected', on ? 'true' : 'false');
    }
  }

  function selectAlert(id) {
    selectedId = id;
    markSelected();
    openView({ type: 'alert', id });
  }

  // ---------------------------------------------------------------- the detail pane

  function openView(v) {
    view = v;
    detailKey = '';
    $('detail').replaceChildren(el('p', { class: 'empty' }, 'Loading…'));
    $('detail').scrollTop = 0;
    loadDetail(loop).catch((e) => {
      if (!(e instanceof Stale) && view === v) $('detail').replaceChildren(el('p', { class: 'error' }, e.message));
    });
  }

  async function refreshDetail(mine) {
    if (view) await loadDetail(mine);
  }

  async function loadDetail(mine) {
    const v = view;
    let key;
    let render;
    if (v.type === 'alert') {
      const r = await api('alerts/' + seg(v.id));
      key = JSON.stringify([r.status, r.body]);
      render = () =>
        r.ok && isObj(r.body)
          ? renderAlert(r.body)
          : el('p', { class: 'error' }, r.status === 404 ? `Alert ${v.id} is no longer kept (the history keeps the most recent).` : 'alert: ' + errorText(r));
    } else {
      const r = await api(`entities/${seg(v.kind)}/${seg(v.id)}`);
      let fallback = null;
      if (!r.ok || !isObj(r.body)) {
        // No state held (or no entity endpoint): the alerts still kept for it, if any.
        const q = new URLSearchParams({ entity_kind: v.kind, entity_id: v.id, limit: '20' });
        const f = await api('alerts?' + q);
        fallback = f.ok && isObj(f.body) ? arr(f.body.alerts).filter(isObj) : [];
      }
      key = JSON.stringify([r.status, r.body, fallback]);
      render = () => renderEntity(v, r, fallback);
    }
    if (v !== view) throw new Stale();
    if (mine !== undefined && mine !== loop && detailKey !== '') return; // a newer poll renders
    if (key === detailKey) return;
    detailKey = key;
    const pane = $('detail');
    const scroll = pane.scrollTop;
    pane.replaceChildren(render());
    pane.scrollTop = scroll;
  }

  function entityButton(kind, id, from, cls) {
    const b = el('button', { type: 'button', class: 'link ' + (cls || ''), title: `Open the entity view of ${kind} ${id}` }, el('span', { class: 'kind' }, kind), ' ', el('span', { class: 'mono' }, id));
    b.addEventListener('click', () => openView({ type: 'entity', kind, id, from }));
    return b;
  }

  function renderAlert(a) {
    const e = isObj(a.entity) ? a.entity : {};
    const from = { type: 'alert', id: str(a.id) };
    const start = Date.parse(str(a.window_start));
    const end = Date.parse(str(a.window_end));
    const dur = fmtDuration(end - start);
    const fields = [
      ['Detector', el('span', { class: 'mono' }, str(a.detector))],
      ['Rule', el('span', { class: 'mono' }, str(a.rule))],
      ['Entity', e.kind && e.id !== undefined ? entityButton(str(e.kind), str(e.id), from, 'entity-link') : '—'],
      ['Client', a.client_id ? entityButton('client_id', str(a.client_id), from) : '—'],
      ['Token fingerprint', a.token_fingerprint ? entityButton('token', str(a.token_fingerprint), from) : '—'],
      ['Window start', el('span', { class: 'mono', title: str(a.window_start) }, fmtTime(a.window_start))],
      ['Window end', el('span', { class: 'mono', title: str(a.window_end) }, fmtTime(a.window_end), dur ? el('span', { class: 'muted' }, ` (${dur})`) : null)],
      ['Actions', arr(a.actions).length ? arr(a.actions).map((x) => el('span', { class: 'chip' }, str(x))) : el('span', { class: 'muted' }, 'none')],
    ];
    const dl = el('dl', { class: 'fields' });
    for (const [k, v] of fields) dl.append(el('dt', {}, k), el('dd', {}, v));
    const ev = isObj(a.evidence) ? a.evidence : {};
    return el(
      'article',
      { class: 'alert-view', id: 'alert-view', 'data-id': str(a.id) },
      el('div', { class: 'title' }, badge(a.severity), el('h3', {}, str(a.summary) || '(no summary)')),
      el(
        'p',
        { class: 'muted small mono' },
        'alert ' + str(a.id),
        a.seq !== undefined ? ` · #${str(a.seq)}` : '',
        a.received_at ? ` · received ${fmtTime(a.received_at)} UTC` : '',
      ),
      dl,
      el('h4', {}, 'Evidence'),
      Object.keys(ev).length ? kvTable(ev, { id: 'evidence' }) : el('p', { class: 'muted', id: 'evidence-none' }, 'No evidence recorded.'),
      el('h4', {}, 'Timeline'),
      renderTimeline(a),
    );
  }

  function renderTimeline(a) {
    const parts = [
      ['lifecycle', 'Lifecycle', (x) => [str(x.event), '']],
      [
        'notifications',
        'Notifications',
        (x) => [
          `${str(x.sink)}: ${str(x.outcome)}` + (Number(x.attempt) >= 1 ? ` (attempt ${str(x.attempt)})` : ''),
          'outcome-' + str(x.outcome).replace(/[^a-z_]/g, ''),
        ],
      ],
      ['revocations', 'Revocations', (x) => [str(x.verdict) + (x.dry_run === true ? ' (dry run)' : ''), 'verdict-' + str(x.verdict).replace(/[^a-z_]/g, '')]],
    ];
    const rows = [];
    const none = [];
    for (const [field, label, what] of parts) {
      const items = arr(a[field]).filter(isObj);
      if (!items.length) none.push(label);
      for (const x of items) {
        const [text, cls] = what(x);
        rows.push({ at: str(x.at), t: Date.parse(str(x.at)), kind: field === 'lifecycle' ? 'lifecycle' : field.replace(/s$/, ''), text, cls, detail: str(x.detail) });
      }
    }
    rows.sort((x, y) => (Number.isFinite(x.t) ? x.t : Infinity) - (Number.isFinite(y.t) ? y.t : Infinity));
    const out = el('div', { class: 'timeline', id: 'timeline' });
    if (rows.length) {
      const tb = el('tbody');
      for (const r of rows) {
        tb.append(
          el(
            'tr',
            {},
            el('td', { class: 'mono nowrap', title: r.at }, fmtTime(r.at)),
            el('td', {}, el('span', { class: 'tl-kind tl-' + r.kind }, r.kind)),
            el('td', { class: r.cls }, r.text),
            el('td', { class: 'muted' }, r.detail),
          ),
        );
      }
      out.append(el('table', { class: 'list' }, el('thead', {}, el('tr', {}, el('th', {}, 'Time (UTC)'), el('th', {}, 'Kind'), el('th', {}, 'Event'), el('th', {}, 'Detail'))), tb));
    }
    if (none.length) out.append(el('p', { class: 'muted small' }, none.map((l) => `${l}: none recorded`).join(' · ')));
    return out;
  }

  function renderEntity(v, r, fallback) {
    const out = el('article', { class: 'entity-view', id: 'entity-view' });
    if (v.from && v.from.type === 'alert') {
      const back = el('button', { type: 'button', class: 'back ghost' }, '← back to the alert');
      back.addEventListener('click', () => openView(v.from));
      out.append(back);
    }
    out.append(el('div', { class: 'title' }, el('span', { class: 'chip kind' }, v.kind), el('h3', { class: 'mono' }, v.id)));
    let alerts = fallback || [];
    if (r.ok && isObj(r.body)) {
      // Entries with a plot first (a route's latency), otherwise in the order given.
      const plotted = (s) => (isObj(s.held) && Array.isArray(s.held.series) && s.held.series.length ? 0 : 1);
      const state = arr(r.body.state).filter(isObj).sort((a, b) => plotted(a) - plotted(b));
      alerts = arr(r.body.alerts).filter(isObj);
      out.append(el('h4', {}, `What gatewatch holds (${state.length})`));
      if (state.length) for (const s of state) out.append(renderState(s));
      else out.append(el('p', { class: 'entity-empty muted' }, 'No detector holds state for it right now.'));
    } else if (r.status === 404) {
      const why = isObj(r.body) && typeof r.body.error === 'string' ? r.body.error : 'no entity view in this gatewatch (404)';
      out.append(el('p', { class: 'entity-empty notice' }, `gatewatch holds nothing for ${v.kind} ${v.id}: ${why}.`));
    } else {
      out.append(el('p', { class: 'entity-empty error' }, 'entity: ' + errorText(r)));
    }
    out.append(el('h4', {}, `Recent alerts (${alerts.length})`));
    if (!alerts.length) {
      out.append(el('p', { class: 'muted' }, 'None kept.'));
    } else {
      const tb = el('tbody');
      for (const a of alerts) {
        const tr = el(
          'tr',
          { tabindex: 0, 'data-id': str(a.id) },
          el('td', { class: 'mono nowrap', title: str(a.window_end) }, fmtTime(a.window_end, true)),
          el('td', {}, badge(a.severity)),
          el('td', {}, str(a.detector)),
          el('td', { class: 'c-sum' }, str(a.summary)),
        );
        const open = () => selectAlert(str(a.id));
        tr.addEventListener('click', open);
        tr.addEventListener('keydown', (e) => {
          if (e.key === 'Enter') open();
        });
        tb.append(tr);
      }
      out.append(el('table', { class: 'list clickable' }, tb));
    }
    return out;
  }

  function renderState(s) {
    const held = isObj(s.held) ? s.held : {};
    const series = arr(held.series).filter(isObj);
    const card = el(
      'section',
      { class: 'card entity-state' },
      el(
        'header',
        {},
        el('span', { class: 'mono strong' }, str(s.rule)),
        el('span', { class: 'muted' }, ` · ${str(s.detector)}`),
        s.partition !== undefined ? el('span', { class: 'muted' }, ` · ${str(s.partition)}`) : null,
      ),
    );
    // The plots first: a route's latency against its baseline is what one comes to see.
    for (const p of series) card.append(plot(p));
    if (Object.keys(held).some((k) => k !== 'series' || !Array.isArray(held.series))) card.append(kvTable(held, { expand: true, skip: Array.isArray(held.series) ? ['series'] : [] }));
    return card;
  }

  // ---------------------------------------------------------------- the latency plot

  function median(xs) {
    const s = [...xs].sort((a, b) => a - b);
    const m = s.length >> 1;
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
  }

  function niceStep(span, ticks) {
    const raw = span / ticks;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const f of [1, 2, 2.5, 5, 10]) if (f * mag >= raw) return f * mag;
    return 10 * mag;
  }

  /** One `series` element: `recent_ms` as a line against the baseline's median and min..max band. */
  function plot(p) {
    const num = (xs) => arr(xs).map(Number).filter(Number.isFinite);
    const recent = arr(p.recent_ms).map((x) => (x === null ? NaN : Number(x)));
    const base = num(p.baseline_ms);
    const pct = str(p.percentile) || 'latency';
    const win = Number(p.window_ms);
    const bucket = Number(p.bucket_ms);
    const limit = Number(p.threshold_ms); // optional: where the detector calls it slow
    const unit = Number.isFinite(bucket) ? 'bucket' : 'window';
    const caption = el(
      'figcaption',
      {},
      el('span', { class: 'strong' }, `${pct} latency`),
      Number.isFinite(bucket) ? ` per ${fmtDuration(bucket)} bucket` : '',
      Number.isFinite(win) ? (Number.isFinite(bucket) ? `, window ${fmtDuration(win)}` : ` per ${fmtDuration(win)} window`) : '',
      el('span', { class: 'muted' }, ` · ${recent.length} recent, baseline of ${base.length}`),
    );
    const fig = el('figure', { class: 'plot' }, caption);
    const finite = recent.filter(Number.isFinite);
    if (!finite.length && !base.length) {
      fig.append(el('p', { class: 'muted' }, 'No values yet.'));
      return fig;
    }
    const W = 560;
    const H = 190;
    const L = 58;
    const R = 12;
    const T = 10;
    const B = 30;
    const pw = W - L - R;
    const ph = H - T - B;
    const top = Math.max(1, ...finite, ...base, Number.isFinite(limit) ? limit : 0) * 1.08;
    const step = niceStep(top, 4);
    const yMax = Math.ceil(top / step) * step;
    const y = (v) => T + ph - (v / yMax) * ph;
    const n = recent.length;
    const x = (i) => (n <= 1 ? L + pw / 2 : L + (i / (n - 1)) * pw);
    const g = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': `${pct} latency, recent windows against the baseline` });
    for (let v = 0; v <= yMax + step / 2; v += step) {
      g.append(svg('line', { x1: L, x2: L + pw, y1: y(v), y2: y(v), class: 'grid' }));
      g.append(svg('text', { x: L - 6, y: y(v) + 4, class: 'tick', 'text-anchor': 'end' }, `${fmtNum(v)} ms`));
    }
    let hiBase = Infinity;
    if (base.length) {
      const lo = Math.min(...base);
      hiBase = Math.max(...base);
      const med = median(base);
      g.append(svg('rect', { x: L, width: pw, y: y(hiBase), height: Math.max(1, y(lo) - y(hiBase)), class: 'band' }, svg('title', {}, `baseline ${fmtNum(lo)}–${fmtNum(hiBase)} ms`)));
      g.append(svg('line', { x1: L, x2: L + pw, y1: y(med), y2: y(med), class: 'median' }, svg('title', {}, `baseline median ${fmtNum(med)} ms`)));
    }
    if (Number.isFinite(limit)) {
      g.append(svg('line', { x1: L, x2: L + pw, y1: y(limit), y2: y(limit), class: 'threshold' }, svg('title', {}, `threshold ${fmtNum(limit)} ms`)));
      g.append(svg('text', { x: L + pw - 2, y: y(limit) - 4, class: 'tick threshold-label', 'text-anchor': 'end' }, `threshold ${fmtNum(limit)} ms`));
    }
    g.append(svg('line', { x1: L, x2: L, y1: T, y2: T + ph, class: 'axis' }));
    g.append(svg('line', { x1: L, x2: L + pw, y1: T + ph, y2: T + ph, class: 'axis' }));
    let d = '';
    let pen = false;
    recent.forEach((v, i) => {
      if (!Number.isFinite(v)) {
        pen = false;
        return;
      }
      d += `${pen ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)} `;
      pen = true;
    });
    if (d) g.append(svg('path', { d: d.trim(), class: 'recent' }));
    recent.forEach((v, i) => {
      if (Number.isFinite(v)) g.append(svg('circle', { cx: x(i), cy: y(v), r: 2.6, class: v > hiBase ? 'pt hot' : 'pt' }, svg('title', {}, `${fmtNum(v)} ms`)));
    });
    g.append(svg('text', { x: L, y: H - 8, class: 'tick', 'text-anchor': 'start' }, 'oldest'));
    g.append(svg('text', { x: L + pw, y: H - 8, class: 'tick', 'text-anchor': 'end' }, 'newest'));
    g.append(svg('text', { x: L + pw / 2, y: H - 8, class: 'tick', 'text-anchor': 'middle' }, `${pct} of the last ${n} ${unit}${n === 1 ? '' : 's'}`));
    fig.append(g);
    const item = (sw, text) => el('span', { class: 'item' }, el('span', { class: 'sw ' + sw }), text);
    fig.append(
      el(
        'div',
        { class: 'legend small' },
        item('sw-recent', 'recent'),
        base.length ? item('sw-median', `baseline median ${fmtNum(median(base))} ms`) : item('sw-median', 'no baseline yet'),
        base.length ? item('sw-band', `baseline ${fmtNum(Math.min(...base))}–${fmtNum(Math.max(...base))} ms`) : null,
        Number.isFinite(limit) ? item('sw-threshold', `threshold ${fmtNum(limit)} ms`) : null,
      ),
    );
    return fig;
  }

  // ---------------------------------------------------------------- wiring

  document.addEventListener('DOMContentLoaded', () => {
    $('login-form').addEventListener('submit', unlock);
    $('lock').addEventListener('click', () => lock(''));
    $('f-detector').addEventListener('change', () => poll());
    $('f-severity').addEventListener('change', () => poll());
    const body = $('alerts').tBodies[0];
    body.addEventListener('click', (e) => {
      const tr = e.target.closest('tr[data-id]');
      if (tr) selectAlert(tr.dataset.id);
    });
    body.addEventListener('keydown', (e) => {
      const tr = e.target.closest('tr[data-id]');
      if (!tr) return;
      if (e.key === 'Enter' || e.key === ' ') {
        e.preventDefault();
        selectAlert(tr.dataset.id);
      } else if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
        e.preventDefault();
        const next = e.key === 'ArrowDown' ? tr.nextElementSibling : tr.previousElementSibling;
        if (next) {
          next.focus();
          selectAlert(next.dataset.id);
        }
      }
    });
    $('lookup').addEventListener('submit', (e) => {
      e.preventDefault();
      const kind = $('lookup-kind').value;
      const id = $('lookup-id').value.trim();
      if (!token || !KINDS.includes(kind) || !id) return;
      openView({ type: 'entity', kind, id, from: null });
    });
  });
})();
