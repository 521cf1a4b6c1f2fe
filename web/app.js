/* streamvisor web console.
 *
 * Plain JS, no framework, nothing fetched but this daemon's own API.  The
 * page runs under a strict Content-Security-Policy (script-src 'self',
 * style-src 'self'): no inline script, style or event handler anywhere.
 * Everything that comes from the API (worker names, errors, run output,
 * dead-letter fields: data written by untrusted producers) is put into the
 * page with textContent or createElement, never parsed as HTML.
 *
 * Live data: GET /api/v1/status every 2 s; the sparklines keep 15 min of
 * those polls in memory (nothing is stored in the browser). */
'use strict';

(function () {
  const POLL_MS = 2000;
  const HISTORY_MS = 15 * 60 * 1000;
  const SVG_NS = 'http://www.w3.org/2000/svg';

  const session = { authenticated: false, token_configured: false, actions: [], node: '' };
  let lastState = null;
  let lastStateAt = 0;          /* Date.now() when lastState arrived */
  const history = [];           /* {t, processed, lag, restarts} */
  let pollTimer = null;
  let pollBusy = false;
  let tick = 0;
  const deadPages = [];         /* the "after" cursor of each page shown (null: first) */
  let deadNext = null;
  let deadTotal = null;          /* the dead letters counted in the last status */
  let deadGen = 0;              /* the latest dead-letter load: older answers are dropped */

  /* ------------------------------------------------------------ helpers */

  function $(id) { return document.getElementById(id); }

  /* el('td', {class: 'x', dataset: {worker: n}}, 'text' | Node | [..]) */
  function el(tag, attrs, content) {
    const e = document.createElement(tag);
    if (attrs) {
      for (const k of Object.keys(attrs)) {
        const v = attrs[k];
        if (v === undefined || v === null) continue;
        if (k === 'class') e.className = v;
        else if (k === 'dataset') Object.assign(e.dataset, v);
        else if (k === 'text') e.textContent = v;
        else e.setAttribute(k, v);
      }
    }
    append(e, content);
    return e;
  }

  function append(parent, content) {
    if (content === undefined || content === null) return;
    if (Array.isArray(content)) { for (const c of content) append(parent, c); return; }
    if (content instanceof Node) { parent.appendChild(content); return; }
    parent.appendChild(document.createTextNode(String(content)));
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  /* A value as display text: null/undefined as '–', objects as JSON. */
  function txt(v) {
    if (v === undefined || v === null) return '–';
    if (typeof v === 'object') {
      if (typeof v.b64 === 'string' && Object.keys(v).length === 1) return b64Text(v.b64);
      return JSON.stringify(v);
    }
    return String(v);
  }

  /* Bytes declared {"b64": ...} by the daemon (not UTF-8, or with NUL):
   * shown as text, with every byte that is not printable UTF-8 escaped
   * \xNN like streamvisorctl does. */
  function b64Text(b64) {
    let bin;
    try { bin = atob(b64); } catch (e) { return '(bad base64)'; }
    return binText(bin);
  }

  /* The length of the well-formed UTF-8 character (RFC 3629: no overlong
   * forms, no surrogates, at most U+10FFFF) of 2..4 bytes at bin[i], else
   * 0.  Checked by hand: a TextDecoder per character made a megabyte of
   * random bytes take seconds. */
  function utf8Len(bin, i) {
    const b = bin.charCodeAt(i);
    let n, lo = 0x80, hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) n = 2;
    else if (b >= 0xe0 && b <= 0xef) { n = 3; if (b === 0xe0) lo = 0xa0; else if (b === 0xed) hi = 0x9f; }
    else if (b >= 0xf0 && b <= 0xf4) { n = 4; if (b === 0xf0) lo = 0x90; else if (b === 0xf4) hi = 0x8f; }
    else return 0;
    if (i + n > bin.length) return 0;
    const b1 = bin.charCodeAt(i + 1);
    if (b1 < lo || b1 > hi) return 0;
    for (let k = 2; k < n; k++) {
      const c = bin.charCodeAt(i + k);
      if (c < 0x80 || c > 0xbf) return 0;
    }
    return n;
  }

  /* A binary string (one char per byte) as escaped text. */
  function binText(bin) {
    const parts = [];
    let run = 0;               /* start of the printable ASCII run being copied */
    let i = 0;
    const flush = () => { if (run < i) parts.push(bin.slice(run, i)); };
    while (i < bin.length) {
      const b = bin.charCodeAt(i);
      if (b >= 0x20 && b < 0x7f && b !== 0x5c) { i++; continue; }
      flush();
      const n = b >= 0x80 ? utf8Len(bin, i) : 0;
      if (n) {
        let cp = n === 2 ? b & 0x1f : n === 3 ? b & 0x0f : b & 0x07;
        for (let k = 1; k < n; k++) cp = (cp << 6) | (bin.charCodeAt(i + k) & 0x3f);
        parts.push(String.fromCodePoint(cp));
        i += n;
      } else if (b === 0x5c) {
        parts.push('\\\\');
        i++;
      } else {
        parts.push('\\x' + (b < 16 ? '0' : '') + b.toString(16));
        i++;
      }
      run = i;
    }
    flush();
    return parts.join('');
  }

  function fmtDuration(ms) {
    if (ms === undefined || ms === null || typeof ms !== 'number') return '–';
    if (ms < 0) ms = 0;
    if (ms < 1000) return ms + ' ms';
    const s = Math.floor(ms / 1000);
    if (s < 60) return (ms / 1000).toFixed(ms < 10000 ? 1 : 0) + ' s';
    const m = Math.floor(s / 60);
    if (m < 60) return m + 'm' + String(s % 60).padStart(2, '0') + 's';
    const h = Math.floor(m / 60);
    if (h < 48) return h + 'h' + String(m % 60).padStart(2, '0') + 'm';
    return Math.floor(h / 24) + 'd' + (h % 24) + 'h';
  }

  function fmtNum(n) {
    if (typeof n !== 'number') return txt(n);
    if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(n >= 1e7 ? 0 : 1) + 'M';
    if (Math.abs(n) >= 1e4) return (n / 1e3).toFixed(n >= 1e5 ? 0 : 1) + 'k';
    return String(Math.round(n * 100) / 100);
  }

  function fmtTime(ms) {
    if (typeof ms !== 'number') return '–';
    const d = new Date(ms);
    if (!isFinite(d.getTime())) return String(ms); /* out of Date's range */
    return d.toISOString().replace('T', ' ').replace('Z', ' UTC');
  }

  function setText(node, v) {
    const t = typeof v === 'string' ? v : txt(v);
    if (node.textContent !== t) node.textContent = t;
  }

  function showMessage(text, kind) {
    const m = $('message');
    m.textContent = text;
    m.className = 'message ' + (kind || 'info');
    m.dataset.kind = kind || 'info';
    m.dataset.at = String(Date.now());
  }

  function hideMessage() {
    const m = $('message');
    m.className = 'message hidden';
    m.textContent = '';
  }

  /* ------------------------------------------------------------ API */

  /* Returns {status, data, headers}; data is the parsed JSON body, or
   * null (no body, not JSON).  Never throws for HTTP errors; a network
   * failure gives status 0. */
  async function api(method, path, body) {
    const opts = { method: method, credentials: 'same-origin', headers: { 'Accept': 'application/json' }, cache: 'no-store' };
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    let r;
    try {
      r = await fetch(path, opts);
    } catch (e) {
      return { status: 0, data: null, headers: null, error: String(e) };
    }
    let data = null;
    const text = await r.text();
    if (text) {
      try { data = JSON.parse(text); } catch (e) { data = null; }
    }
    return { status: r.status, data: data, headers: r.headers, text: text };
  }

  function errorText(res) {
    if (res.status === 0) return 'the daemon does not answer (' + (res.error || 'network error') + ')';
    const d = res.data;
    let msg = d && typeof d.error === 'string' ? d.error : (res.text ? res.text.slice(0, 300) : '');
    if (res.status === 401) msg = 'log in first (' + (msg || 'unauthorized') + ')';
    return 'HTTP ' + res.status + (msg ? ': ' + msg : '');
  }

  function allowed(action) {
    return session.authenticated && session.actions.indexOf(action) >= 0;
  }

  /* POST /api/v1/ctl; shows the outcome in #message. */
  async function ctl(command, args, label) {
    const what = label || [command].concat(args).join(' ');
    showMessage(what + ' …', 'pending');
    const res = await api('POST', '/api/v1/ctl', { command: command, args: args });
    if (res.status === 200 && res.data && res.data.ok !== false) {
      showMessage(what + ': done', 'ok');
      schedulePoll(200);
      return res;
    }
    if (res.status === 401) await loadSession();
    showMessage(what + ' failed: ' + errorText(res), 'error');
    return res;
  }

  /* ------------------------------------------------------------ session */

  async function loadSession() {
    const res = await api('GET', '/api/v1/session');
    if (res.status === 200 && res.data) {
      session.authenticated = !!res.data.authenticated;
      session.token_configured = !!res.data.token_configured;
      session.actions = Array.isArray(res.data.actions) ? res.data.actions.filter(a => typeof a === 'string') : [];
      session.node = typeof res.data.node === 'string' ? res.data.node : '';
    }
    renderSession();
  }

  function renderSession() {
    setText($('node'), session.node);
    const login = $('login-section');
    login.classList.toggle('hidden', session.authenticated || !session.token_configured);
    $('logout').classList.toggle('hidden', !session.authenticated);
    let st;
    if (session.authenticated) st = 'logged in';
    else if (session.token_configured) st = 'read only (not logged in)';
    else st = 'read only (no token configured)';
    setText($('session-state'), st);
    document.body.classList.toggle('authenticated', session.authenticated);
    for (const b of document.querySelectorAll('button[data-action]')) updateButton(b);
  }

  function updateButton(b) {
    const a = b.dataset.action;
    const ok = allowed(a);
    b.disabled = !ok;
    b.title = ok ? '' : (session.authenticated ? a + ' is not in http.actions' : 'log in to ' + a);
  }

  async function login(ev) {
    ev.preventDefault();
    const input = $('token');
    const token = input.value;
    if (!token) { showMessage('enter the token', 'error'); return; }
    const res = await api('POST', '/api/v1/login', { token: token });
    input.value = '';
    if (res.status === 204 || res.status === 200) {
      showMessage('logged in', 'ok');
      await loadSession();
      loadDead(null, true);
      reopenRun();
    } else if (res.status === 401) {
      showMessage('login failed: wrong token (HTTP 401)', 'error');
    } else if (res.status === 429) {
      showMessage('login failed: too many failed logins, wait a minute (HTTP 429)', 'error');
    } else {
      showMessage('login failed: ' + errorText(res), 'error');
    }
  }

  async function logout() {
    const res = await api('POST', '/api/v1/logout', {});
    if (res.status === 204 || res.status === 200) showMessage('logged out', 'ok');
    else showMessage('logout: ' + errorText(res), 'error');
    await loadSession();
    clear($('dead-body'));
    clear($('run-view'));
    $('run-raw').textContent = '';
  }

  /* ------------------------------------------------------------ polling */

  function schedulePoll(ms) {
    if (pollTimer) clearTimeout(pollTimer);
    pollTimer = setTimeout(poll, ms);
  }

  async function poll() {
    pollTimer = null;
    if (pollBusy) { schedulePoll(POLL_MS); return; }
    pollBusy = true;
    try {
      const res = await api('GET', '/api/v1/status');
      if (res.status === 200 && res.data) {
        lastState = res.data;
        lastStateAt = Date.now();
        renderState(res.data);
        $('updated').classList.remove('stale');
      } else {
        setText($('updated'), 'status: ' + errorText(res));
        $('updated').classList.add('stale');
        if (res.status === 401 && !session.authenticated) {
          $('login-section').classList.remove('hidden');
        }
      }
      if (tick % 5 === 0) loadEvents();
      tick++;
    } finally {
      pollBusy = false;
      schedulePoll(POLL_MS);
    }
  }

  function renderState(s) {
    if (typeof s.node === 'string' && !session.node) { session.node = s.node; setText($('node'), s.node); }
    const redis = $('redis');
    const up = s.redis_up === true || s.redis === 'ok';
    setText(redis, 'redis ' + (up ? 'up' : 'down'));
    redis.classList.toggle('bad', !up);
    setText($('updated'), 'updated ' + new Date().toLocaleTimeString());
    const workers = Array.isArray(s.workers) ? s.workers : [];
    /* one view failing on odd data must not stop the others */
    const steps = [() => renderWorkers(workers), () => renderPools(s, workers), () => renderGroups(s),
                   () => renderPatterns(s), () => renderDeadStreams(s), () => recordHistory(s, workers), renderCharts];
    for (const f of steps) {
      try { f(); } catch (e) { console.error('render: ' + e); }
    }
  }

  /* ------------------------------------------------------------ workers */

  const WORKER_CELLS = ['name', 'pool', 'state', 'health', 'pid', 'uptime', 'beat', 'status', 'doing',
                        'processed', 'failed', 'restarts', 'last-error'];

  function workerRow(w) {
    const tr = el('tr', { dataset: { worker: w.name } });
    for (const c of WORKER_CELLS) tr.appendChild(el('td', { class: c }));
    const acts = el('td', { class: 'actions' });
    for (const a of ['restart', 'stop', 'start']) {
      const b = el('button', { type: 'button', class: a, dataset: { action: a } }, a);
      updateButton(b);
      acts.appendChild(b);
    }
    tr.appendChild(acts);
    return tr;
  }

  /* What a worker is doing: its tool calls in hand, else "current". */
  function doing(w) {
    const parts = [];
    if (Array.isArray(w.calls)) {
      for (const c of w.calls) {
        if (!c || typeof c !== 'object') continue;
        parts.push(txt(c.tool) + ' ' + txt(c.call_id) + ' (run ' + txt(c.run) + ', ' + txt(c.state) + ')');
      }
      if (w.calls_more > 0) parts.push('+' + w.calls_more + ' more');
    }
    if (!parts.length && w.current !== undefined && w.current !== null) parts.push(txt(w.current));
    return parts.join('; ');
  }

  function renderWorkers(workers) {
    const body = $('workers-body');
    const rows = new Map();
    for (const tr of Array.from(body.children)) rows.set(tr.dataset.worker, tr);
    const seen = new Set();
    let prev = null;
    let bad = 0;
    for (const w of workers) {
      if (!w || typeof w.name !== 'string' || seen.has(w.name)) continue;
      seen.add(w.name);
      let tr = rows.get(w.name);
      if (!tr) tr = workerRow(w);
      /* keep the daemon's order */
      const want = prev ? prev.nextSibling : body.firstChild;
      if (want !== tr) body.insertBefore(tr, want);
      prev = tr;
      const cell = c => tr.querySelector('td.' + c);
      setText(cell('name'), w.name);
      setText(cell('pool'), w.pool);
      setText(cell('state'), w.state);
      setText(cell('health'), w.health);
      setText(cell('pid'), w.pid);
      setText(cell('uptime'), fmtDuration(w.uptime_ms));
      setText(cell('beat'), w.beat_age_ms === null || w.beat_age_ms === undefined ? '–' : fmtDuration(w.beat_age_ms) + ' ago');
      setText(cell('status'), (w.paused ? 'paused' : txt(w.status)));
      setText(cell('doing'), doing(w) || '');
      setText(cell('processed'), w.processed);
      setText(cell('failed'), w.failed);
      setText(cell('restarts'), w.restarts);
      setText(cell('last-error'), w.last_error === null || w.last_error === undefined ? '' : txt(w.last_error));
      tr.dataset.state = String(w.state);
      tr.dataset.pid = w.pid === null || w.pid === undefined ? '' : String(w.pid);
      const cls = v => (String(v).toLowerCase().replace(/[^a-z_]/g, '') || 'none');
      tr.className = 'state-' + cls(w.state) + ' health-' + cls(w.health);
      if (w.state !== 'RUNNING' || (w.health && w.health !== 'ok')) bad++;
    }
    for (const [name, tr] of rows) if (!seen.has(name)) tr.remove();
    setText($('workers-count'), seen.size + ' (' + (seen.size - bad) + ' healthy)');
  }

  function onWorkerClick(ev) {
    const b = ev.target.closest('button[data-action]');
    if (!b) return;
    const tr = b.closest('tr[data-worker]');
    if (!tr) return;
    const a = b.dataset.action;
    const name = tr.dataset.worker;
    if (a === 'stop' && !window.confirm('Stop ' + name + '?')) return;
    ctl(a, [name]);
  }

  /* ------------------------------------------------------------ pools */

  function renderPools(s, workers) {
    const body = $('pools-body');
    const conf = s.config && Array.isArray(s.config.pools) ? s.config.pools : [];
    const counters = new Map();
    if (Array.isArray(s.pools)) for (const p of s.pools) if (p && typeof p.name === 'string') counters.set(p.name, p);
    const names = [];
    for (const p of conf) if (p && typeof p.name === 'string' && names.indexOf(p.name) < 0) names.push(p.name);
    for (const n of counters.keys()) if (names.indexOf(n) < 0) names.push(n);
    const rows = new Map();
    for (const tr of Array.from(body.children)) rows.set(tr.dataset.pool, tr);
    const seen = new Set();
    let prev = null;
    for (const name of names) {
      seen.add(name);
      const c = counters.get(name) || {};
      const cf = conf.find(p => p && p.name === name) || {};
      const ws = workers.filter(w => w && w.pool === name);
      let tr = rows.get(name);
      if (!tr) {
        tr = el('tr', { dataset: { pool: name } });
        for (const k of ['name', 'kind', 'workers', 'processed', 'failed', 'dead-lettered', 'conflicts', 'reruns', 'paused'])
          tr.appendChild(el('td', { class: k }));
        const scale = el('td', { class: 'scale' });
        const input = el('input', { type: 'number', min: '0', max: '1000', class: 'scale-count', 'aria-label': 'workers of ' + name });
        scale.appendChild(input);
        const sb = el('button', { type: 'button', class: 'scale', dataset: { action: 'scale' } }, 'scale');
        updateButton(sb);
        scale.appendChild(sb);
        tr.appendChild(scale);
        const acts = el('td', { class: 'actions' });
        for (const a of ['pause', 'resume']) {
          const b = el('button', { type: 'button', class: a, dataset: { action: a } }, a);
          updateButton(b);
          acts.appendChild(b);
        }
        tr.appendChild(acts);
      }
      const want = prev ? prev.nextSibling : body.firstChild;
      if (want !== tr) body.insertBefore(tr, want);
      prev = tr;
      const cell = k => tr.querySelector('td.' + k);
      setText(cell('name'), name);
      setText(cell('kind'), cf.kind !== undefined ? cf.kind : (ws[0] ? ws[0].kind : null));
      const running = ws.filter(w => w.state === 'RUNNING').length;
      setText(cell('workers'), running + '/' + ws.length + (typeof cf.count === 'number' && cf.count !== ws.length ? ' (count ' + cf.count + ')' : ''));
      setText(cell('processed'), c.processed);
      setText(cell('failed'), c.failed);
      setText(cell('dead-lettered'), c.dead_lettered);
      setText(cell('conflicts'), c.conflicts);
      setText(cell('reruns'), c.reruns);
      const paused = ws.filter(w => w.paused).length;
      setText(cell('paused'), ws.length === 0 ? '–' : paused === 0 ? 'no' : paused === ws.length ? 'yes' : paused + '/' + ws.length);
      const input = tr.querySelector('input.scale-count');
      if (document.activeElement !== input && !input.dataset.edited) {
        const v = String(typeof cf.count === 'number' ? cf.count : ws.length);
        if (input.value !== v) input.value = v;
      }
    }
    for (const [name, tr] of rows) if (!seen.has(name)) tr.remove();
  }

  function onPoolClick(ev) {
    const b = ev.target.closest('button[data-action]');
    if (!b) return;
    const tr = b.closest('tr[data-pool]');
    if (!tr) return;
    const pool = tr.dataset.pool;
    const a = b.dataset.action;
    if (a === 'scale') {
      const input = tr.querySelector('input.scale-count');
      const n = input.value.trim();
      if (!/^[0-9]+$/.test(n)) { showMessage('scale: the count must be a number', 'error'); return; }
      delete input.dataset.edited;
      ctl('scale', [pool, n]);
    } else {
      ctl(a, [pool]);
    }
  }

  /* ------------------------------------------------------------ streams */

  function deadCount(s, stream) {
    const d = s.dead;
    if (d && typeof d === 'object' && !Array.isArray(d) && typeof d[stream] === 'number') return d[stream];
    return null;
  }

  function fillRows(body, rows, keyOf, cells) {
    const frag = document.createDocumentFragment();
    for (const r of rows) {
      const tr = el('tr', { dataset: { key: keyOf(r) } });
      for (const [cls, v] of cells(r)) tr.appendChild(el('td', { class: cls }, v));
      frag.appendChild(tr);
    }
    clear(body);
    body.appendChild(frag);
  }

  function renderGroups(s) {
    const groups = Array.isArray(s.groups) ? s.groups.filter(g => g && typeof g === 'object') : [];
    fillRows($('groups-body'), groups, g => txt(g.stream) + '\u0000' + txt(g.group), g => {
      const notes = [];
      if (g.missing) notes.push('missing');
      if (g.configured === false) notes.push('not configured');
      if (g.pinned) notes.push('pins retention');
      return [['stream', txt(g.stream)], ['group', txt(g.group)], ['length', txt(g.length)], ['lag', txt(g.lag)],
              ['pending', txt(g.pending)], ['oldest-idle', fmtDuration(g.oldest_pending_idle_ms)],
              ['dead', txt(deadCount(s, g.stream))], ['notes', notes.join(', ')]];
    });
    if (!groups.length) $('groups-body').appendChild(el('tr', null, el('td', { colspan: '8', class: 'empty' }, s.groups === null ? 'no figures yet (the monitor reports every heartbeat)' : 'no streams')));
  }

  function renderPatterns(s) {
    const pats = Array.isArray(s.patterns) ? s.patterns.filter(p => p && typeof p === 'object') : [];
    fillRows($('patterns-body'), pats, p => txt(p.pattern) + '\u0000' + txt(p.group), p => [
      ['pattern', txt(p.pattern)], ['group', txt(p.group)], ['pools', Array.isArray(p.pools) ? p.pools.map(txt).join(', ') : txt(p.pools)],
      ['matched', txt(p.matched)], ['active', txt(p.active)], ['lag', txt(p.lag)], ['pending', txt(p.pending)],
      ['oldest-idle', fmtDuration(p.oldest_pending_idle_ms)], ['missing', txt(p.missing)], ['age', fmtDuration(p.age_ms)]]);
    $('patterns-box').classList.toggle('hidden', !pats.length);
  }

  /* ------------------------------------------------------------ sparklines */

  function sumOf(arr, f) {
    let n = 0;
    let any = false;
    for (const x of arr) { const v = f(x); if (typeof v === 'number' && isFinite(v)) { n += v; any = true; } }
    return any ? n : null;
  }

  function recordHistory(s, workers) {
    const t = Date.now();
    const pools = Array.isArray(s.pools) ? s.pools : [];
    let processed = sumOf(pools, p => p && p.processed);
    if (processed === null) processed = sumOf(workers, w => w && w.processed);
    const lag = sumOf((Array.isArray(s.groups) ? s.groups : []).concat(Array.isArray(s.patterns) ? s.patterns : []), g => g && g.lag);
    const restarts = sumOf(workers, w => w && w.restarts);
    history.push({ t: t, processed: processed, lag: lag, restarts: restarts });
    while (history.length && history[0].t < t - HISTORY_MS) history.shift();
  }

  function series(key) {
    const out = [];
    if (key === 'rate') {
      for (let i = 1; i < history.length; i++) {
        const a = history[i - 1], b = history[i];
        if (a.processed === null || b.processed === null) continue;
        const dt = (b.t - a.t) / 1000;
        if (dt <= 0) continue;
        const d = b.processed - a.processed;
        out.push({ t: b.t, v: d < 0 ? 0 : d / dt }); /* counters restart with a pool's carry lost */
      }
      return out;
    }
    for (const h of history) if (h[key] !== null) out.push({ t: h.t, v: h[key] });
    return out;
  }

  function sparkline(container, pts, now) {
    const W = 240, H = 48, P = 2;
    let svg = container.querySelector('svg');
    if (!svg) {
      svg = document.createElementNS(SVG_NS, 'svg');
      svg.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
      svg.setAttribute('preserveAspectRatio', 'none');
      svg.setAttribute('class', 'sparkline');
      svg.setAttribute('role', 'img');
      const base = document.createElementNS(SVG_NS, 'line');
      base.setAttribute('x1', '0'); base.setAttribute('x2', String(W));
      base.setAttribute('y1', String(H - P)); base.setAttribute('y2', String(H - P));
      base.setAttribute('class', 'base');
      svg.appendChild(base);
      const area = document.createElementNS(SVG_NS, 'polygon');
      area.setAttribute('class', 'area');
      svg.appendChild(area);
      const line = document.createElementNS(SVG_NS, 'polyline');
      line.setAttribute('class', 'line');
      svg.appendChild(line);
      const title = document.createElementNS(SVG_NS, 'title');
      svg.appendChild(title);
      container.appendChild(svg);
    }
    let max = 0;
    for (const p of pts) if (p.v > max) max = p.v;
    if (max <= 0) max = 1;
    const t0 = now - HISTORY_MS;
    const coords = pts.map(p => {
      const x = Math.max(0, Math.min(W, (p.t - t0) / HISTORY_MS * W));
      const y = H - P - (p.v / max) * (H - 2 * P);
      return x.toFixed(1) + ',' + y.toFixed(1);
    });
    svg.querySelector('polyline').setAttribute('points', coords.join(' '));
    const area = pts.length ? [coords[0].split(',')[0] + ',' + (H - P)].concat(coords, [coords[coords.length - 1].split(',')[0] + ',' + (H - P)]) : [];
    svg.querySelector('polygon').setAttribute('points', area.join(' '));
    svg.querySelector('title').textContent = 'max ' + fmtNum(max) + ' over the last 15 min';
  }

  function renderCharts() {
    const now = Date.now();
    const rate = series('rate'), lag = series('lag'), rs = series('restarts');
    sparkline($('chart-processed'), rate, now);
    sparkline($('chart-lag'), lag, now);
    sparkline($('chart-restarts'), rs, now);
    setText($('chart-processed-now'), rate.length ? fmtNum(rate[rate.length - 1].v) : '–');
    setText($('chart-lag-now'), lag.length ? fmtNum(lag[lag.length - 1].v) : '–');
    setText($('chart-restarts-now'), rs.length ? fmtNum(rs[rs.length - 1].v) : '–');
  }

  /* ------------------------------------------------------------ dead letters */

  function renderDeadStreams(s) {
    const sel = $('dead-stream');
    const names = new Set();
    if (s.dead && typeof s.dead === 'object' && !Array.isArray(s.dead)) for (const k of Object.keys(s.dead)) names.add(k);
    if (Array.isArray(s.groups)) for (const g of s.groups) if (g && typeof g.stream === 'string') names.add(g.stream);
    const have = new Set(Array.from(sel.options).map(o => o.value));
    for (const n of Array.from(names).sort()) {
      if (have.has(n)) continue;
      sel.appendChild(el('option', { value: n }, n));
    }
    for (const o of Array.from(sel.options)) {
      if (!o.value) continue;
      const c = deadCount(s, o.value);
      const label = o.value + (c === null ? '' : ' (' + c + ')');
      if (o.textContent !== label) o.textContent = label;
    }
    /* new or removed dead letters: refresh the first page (a later page
     * stays as the user paged it) */
    let total = null;
    if (s.dead && typeof s.dead === 'object' && !Array.isArray(s.dead))
      for (const k of Object.keys(s.dead)) if (typeof s.dead[k] === 'number') total = (total || 0) + s.dead[k];
    if (total !== null && deadTotal !== null && total !== deadTotal && session.authenticated && deadPages.length <= 1)
      loadDead(null, true);
    deadTotal = total;
  }

  function deadQuery(after) {
    const q = new URLSearchParams();
    const stream = $('dead-stream').value;
    if (stream) q.set('stream', stream);
    const n = parseInt($('dead-limit').value, 10);
    q.set('limit', String(n > 0 && n <= 1000 ? n : 50));
    if (after) q.set('after', after);
    return q.toString();
  }

  /* load the page after `after` (null: the first); push it on the pager
   * unless reload. */
  async function loadDead(after, reload) {
    if (!session.authenticated) {
      setText($('dead-note'), session.token_configured ? 'log in to see the dead letters' : 'dead letters need http.token_file');
      clear($('dead-body'));
      return;
    }
    const gen = ++deadGen;
    const res = await api('GET', '/api/v1/dead?' + deadQuery(after));
    if (gen !== deadGen) return; /* a newer load was started meanwhile */
    if (res.status !== 200 || !res.data || res.data.ok === false) {
      setText($('dead-note'), 'dead letters: ' + errorText(res));
      return;
    }
    if (!reload) deadPages.push(after);
    else if (!deadPages.length) deadPages.push(after);
    const d = res.data;
    const entries = Array.isArray(d.entries) ? d.entries : [];
    deadNext = d.next !== undefined && d.next !== null ? txt(d.next) : null;
    $('dead-next').disabled = !deadNext;
    $('dead-first').disabled = deadPages.length <= 1 && !after;
    let note = entries.length + ' dead letter' + (entries.length === 1 ? '' : 's') + ' on this page';
    if (deadNext) note += '; more on the next page';
    if (d.truncated) note += '; more pattern streams than the daemon walks: pick a stream';
    setText($('dead-note'), note);
    renderDead(entries);
  }

  function fieldsSummary(e) {
    const parts = [];
    if (Array.isArray(e.fields)) {
      for (const f of e.fields) {
        if (!f || typeof f !== 'object') continue;
        let v = txt(f.value);
        if (v.length > 120) v = v.slice(0, 120) + '…';
        parts.push(txt(f.name) + '=' + v + (f.cut ? '…' : ''));
      }
    }
    if (e.fields_cut) parts.push('…');
    return parts.join('  ');
  }

  function renderDead(entries) {
    const body = $('dead-body');
    clear(body);
    for (const e of entries) {
      if (!e || typeof e !== 'object') continue;
      const id = txt(e.id);
      const stream = txt(e.stream);
      const tr = el('tr', { dataset: { dead: id, stream: stream } });
      tr.appendChild(el('td', { class: 'id' }, id));
      tr.appendChild(el('td', { class: 'stream' }, stream));
      tr.appendChild(el('td', { class: 'origin' }, txt(e.origin_id)));
      tr.appendChild(el('td', { class: 'reason' }, txt(e.reason)));
      tr.appendChild(el('td', { class: 'deliveries' }, txt(e.deliveries)));
      tr.appendChild(el('td', { class: 'groups' }, Array.isArray(e.groups) ? e.groups.map(txt).join(', ') : txt(e.groups)));
      tr.appendChild(el('td', { class: 'fields' }, fieldsSummary(e)));
      const acts = el('td', { class: 'actions' });
      acts.appendChild(el('button', { type: 'button', class: 'show' }, 'show'));
      for (const [a, label] of [['dead retry', 'retry'], ['dead purge', 'purge']]) {
        const b = el('button', { type: 'button', class: label, dataset: { action: a } }, label);
        updateButton(b);
        acts.appendChild(b);
      }
      tr.appendChild(acts);
      body.appendChild(tr);
    }
    if (!body.children.length) body.appendChild(el('tr', null, el('td', { colspan: '8', class: 'empty' }, 'no dead letters')));
  }

  /* The server's wall clock now, estimated from the last status. */
  function serverNow() {
    if (lastState && typeof lastState.wall_ms === 'number') return lastState.wall_ms + (Date.now() - lastStateAt);
    return Date.now();
  }

  async function onDeadClick(ev) {
    const b = ev.target.closest('button');
    if (!b) return;
    const tr = b.closest('tr[data-dead]');
    if (!tr) return;
    const id = tr.dataset.dead;
    const stream = tr.dataset.stream;
    if (b.classList.contains('show')) { showDead(id, stream); return; }
    if (b.classList.contains('retry')) {
      const res = await ctl('dead', ['retry', id, '--stream', stream], 'dead retry ' + id);
      if (res.status === 200) {
        hideDeadDetail(id);
        loadDead(deadPages.length ? deadPages[deadPages.length - 1] : null, true);
      }
      return;
    }
    if (b.classList.contains('purge')) {
      /* The daemon purges by age (dead purge --older-than MS): this
       * letter and every older one of its stream. */
      const m = /^([0-9]+)-[0-9]+$/.exec(id);
      if (!m) { showMessage('purge: not a dead letter id: ' + id, 'error'); return; }
      const older = Math.max(0, Math.floor(serverNow()) - (parseInt(m[1], 10) + 1));
      if (!window.confirm('Purge dead letter ' + id + ' and every older dead letter of ' + stream + '?')) return;
      const res = await ctl('dead', ['purge', '--older-than', String(older), '--stream', stream], 'dead purge up to ' + id);
      if (res.status === 200) {
        hideDeadDetail(null);
        loadDead(null, true);
      }
    }
  }

  async function purgeStream() {
    const stream = $('dead-stream').value;
    if (!stream) { showMessage('pick a stream to purge', 'error'); return; }
    if (!window.confirm('Purge every dead letter of ' + stream + '?')) return;
    const res = await ctl('dead', ['purge', '--stream', stream], 'dead purge ' + stream);
    if (res.status === 200) {
      hideDeadDetail(null);
      loadDead(null, true);
    }
  }

  /* Hide the detail box when it shows letter id (any letter: null). */
  function hideDeadDetail(id) {
    const box = $('dead-detail');
    if (id === null || box.dataset.dead === id) {
      clear(box);
      box.classList.add('hidden');
      delete box.dataset.dead;
    }
  }

  async function showDead(id, stream) {
    const box = $('dead-detail');
    clear(box);
    box.dataset.dead = id;
    box.classList.remove('hidden');
    box.appendChild(el('h3', null, 'dead letter ' + id));
    const res = await api('GET', '/api/v1/dead/' + encodeURIComponent(id) + '?stream=' + encodeURIComponent(stream));
    if (res.status !== 200 || !res.data || res.data.ok === false) {
      box.appendChild(el('p', { class: 'error' }, errorText(res)));
      return;
    }
    const d = res.data;
    const dl = el('dl', { class: 'kv' });
    for (const k of ['id', 'stream', 'origin_id', 'origin_stream', 'group', 'groups', 'consumer', 'reason', 'deliveries', 'size', 'nfields']) {
      if (!(k in d)) continue;
      dl.appendChild(el('dt', null, k));
      dl.appendChild(el('dd', null, Array.isArray(d[k]) ? d[k].map(txt).join(', ') : txt(d[k])));
    }
    box.appendChild(dl);
    /* The original fields: parts of base64 chunks, names and values in
     * turn (item 2k the name, 2k+1 the value). */
    const items = [];
    if (Array.isArray(d.parts)) {
      for (const p of d.parts) {
        if (!p || typeof p.item !== 'number' || typeof p.b64 !== 'string') continue;
        let bin = '';
        try { bin = atob(p.b64); } catch (e) { bin = ''; }
        items[p.item] = (items[p.item] || '') + bin;
      }
    }
    const table = el('table', { class: 'fields' }, el('thead', null, el('tr', null, [el('th', null, 'field'), el('th', null, 'value')])));
    const tb = el('tbody');
    for (let i = 0; i < items.length; i += 2) {
      tb.appendChild(el('tr', null, [el('td', { class: 'name' }, binText(items[i] || '')),
                                     el('td', null, el('pre', { class: 'value' }, binText(items[i + 1] || '')))]));
    }
    table.appendChild(tb);
    box.appendChild(table);
    if (d.next) box.appendChild(el('p', { class: 'hint' }, 'the letter is larger than one reply; the rest is left out here (streamvisorctl dead show ' + id + ' --raw FILE)'));
  }

  /* ------------------------------------------------------------ runs */

  let lastRun = null;
  let runGen = 0;               /* bumped by every open: a stale wait drops its answer */

  function reopenRun() { if (lastRun) openRun(lastRun.id, lastRun.pool); }

  /* The body text re-indented, token by token, without parsing it: numbers
   * stay exactly as the daemon wrote them (JSON.parse would round integers
   * above 2^53). */
  function prettyJSON(text) {
    let out = '';
    let depth = 0;
    let inStr = false;
    const nl = () => '\n' + '  '.repeat(depth);
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (inStr) {
        out += c;
        if (c === '\\') { out += text[++i] || ''; continue; }
        if (c === '"') inStr = false;
        continue;
      }
      if (c === ' ' || c === '\n' || c === '\r' || c === '\t') continue;
      if (c === '"') { inStr = true; out += c; continue; }
      if (c === '{' || c === '[') {
        const close = c === '{' ? '}' : ']';
        let j = i + 1;
        while (j < text.length && ' \n\r\t'.indexOf(text[j]) >= 0) j++;
        if (text[j] === close) { out += c + close; i = j; continue; }
        depth++;
        out += c + nl();
        continue;
      }
      if (c === '}' || c === ']') { depth = Math.max(0, depth - 1); out += nl() + c; continue; }
      if (c === ',') { out += ',' + nl(); continue; }
      if (c === ':') { out += ': '; continue; }
      out += c;
    }
    return out;
  }

  function runPath(id, pool, wait) {
    const q = new URLSearchParams();
    if (pool) q.set('pool', pool);
    if (wait) q.set('wait', String(wait));
    const qs = q.toString();
    return '/api/v1/runs/' + encodeURIComponent(id) + (qs ? '?' + qs : '');
  }

  async function openRun(id, pool) {
    const view = $('run-view');
    const raw = $('run-raw');
    const gen = ++runGen;
    clear(view);
    raw.textContent = '';
    if (!id) { showMessage('enter a run id', 'error'); return; }
    lastRun = { id: id, pool: pool };
    view.appendChild(el('p', { class: 'hint' }, 'loading ' + id + ' …'));
    let res = await api('GET', runPath(id, pool, 0));
    /* A run in progress: long-poll (?wait=) until it is complete, another
     * run is opened, or an answer is not a snapshot. */
    for (;;) {
      if (gen !== runGen) return;
      if (!showRun(id, res)) return;
      if (res.data.complete !== false) return;
      const t0 = Date.now();
      const again = await api('GET', runPath(id, pool, 25));
      /* never faster than one request per 2 s, whatever the server does */
      if (Date.now() - t0 < POLL_MS) await new Promise(r => setTimeout(r, POLL_MS - (Date.now() - t0)));
      if (gen !== runGen) return;
      if (again.status !== 200 && again.status !== 202) return; /* keep what is shown */
      res = again;
    }
  }

  /* Render one answer of /api/v1/runs/ID; false when it is no snapshot. */
  function showRun(id, res) {
    const view = $('run-view');
    const raw = $('run-raw');
    clear(view);
    raw.textContent = '';
    if (res.status === 404) {
      view.appendChild(el('p', { class: 'error run-missing' }, 'no such run: ' + id));
      return false;
    }
    if ((res.status !== 200 && res.status !== 202) || !res.data || typeof res.data !== 'object' || Array.isArray(res.data)) {
      view.appendChild(el('p', { class: 'error' }, 'run ' + id + ': ' + errorText(res)));
      return false;
    }
    const hpool = res.headers ? res.headers.get('X-Streamvisor-Pool') : null;
    renderRun(view, res.data, hpool);
    if (res.data.complete === false)
      view.appendChild(el('p', { class: 'hint live' }, 'not complete: updating as events arrive'));
    raw.textContent = prettyJSON(res.text || JSON.stringify(res.data));
    return true;
  }

  function kvList(pairs) {
    const dl = el('dl', { class: 'kv' });
    for (const [k, v] of pairs) {
      dl.appendChild(el('dt', null, k));
      dl.appendChild(el('dd', { class: 'v-' + k.replace(/[^a-z0-9]+/gi, '-') }, v));
    }
    return dl;
  }

  function block(v) {
    if (typeof v === 'string') return el('pre', { class: 'text' }, v);
    return el('pre', { class: 'json' }, JSON.stringify(v, null, 2));
  }

  function renderRun(view, s, pool) {
    const head = el('div', { class: 'run-head' });
    head.appendChild(el('h3', null, ['run ', el('span', { class: 'run-name' }, txt(s.id))]));
    head.appendChild(el('span', { class: 'badge run-status status-' + String(s.status).replace(/[^a-z_]/gi, '') }, txt(s.status)));
    if (s.complete === true) head.appendChild(el('span', { class: 'badge complete' }, 'complete'));
    else if (s.complete === false) head.appendChild(el('span', { class: 'badge incomplete' }, 'not complete'));
    view.appendChild(head);

    const pairs = [];
    if (pool) pairs.push(['pool', pool]);
    for (const k of ['model', 'created_ms', 'completed_ms', 'event_count', 'last_seq', 'gapless', 'ignored_events']) {
      if (!(k in s)) continue;
      const v = s[k];
      pairs.push([k.replace(/_/g, ' '), (k.endsWith('_ms') && typeof v === 'number') ? fmtTime(v) : txt(v)]);
    }
    if (s.metadata !== undefined && s.metadata !== null) pairs.push(['metadata', txt(s.metadata)]);
    view.appendChild(kvList(pairs));

    if (s.error !== undefined && s.error !== null) {
      view.appendChild(el('h4', null, 'error'));
      view.appendChild(el('div', { class: 'run-error' }, block(s.error)));
    }

    /* output items, tool calls with their outputs */
    if (Array.isArray(s.output)) {
      view.appendChild(el('h4', null, 'output (' + s.output.length + ' item' + (s.output.length === 1 ? '' : 's') + ')'));
      const outputs = new Map();
      const calls = new Set();
      for (const it of s.output) {
        if (it && it.type === 'tool_call' && typeof it.call_id === 'string') calls.add(it.call_id);
      }
      for (const it of s.output) {
        if (it && it.type === 'tool_output' && typeof it.call_id === 'string' && calls.has(it.call_id)) {
          if (!outputs.has(it.call_id)) outputs.set(it.call_id, []);
          outputs.get(it.call_id).push(it);
        }
      }
      const list = el('ol', { class: 'items' });
      for (const it of s.output) {
        if (!it || typeof it !== 'object') { list.appendChild(el('li', { class: 'item' }, block(it))); continue; }
        if (it.type === 'tool_output' && typeof it.call_id === 'string' && calls.has(it.call_id)) continue; /* shown under its call */
        list.appendChild(renderItem(it, outputs));
      }
      view.appendChild(list);
    }

    if (s.usage && typeof s.usage === 'object') {
      view.appendChild(el('h4', null, 'usage'));
      view.appendChild(kvList(Object.keys(s.usage).map(k => [k.replace(/_/g, ' '), txt(s.usage[k])])));
    }

    if (Array.isArray(s.anomalies)) {
      view.appendChild(el('h4', null, 'anomalies (' + s.anomalies.length + ')'));
      if (s.anomalies.length) {
        const ul = el('ul', { class: 'anomalies' });
        for (const a of s.anomalies) {
          if (a && typeof a === 'object') ul.appendChild(el('li', { class: 'anomaly' }, [el('span', { class: 'atype' }, txt(a.type)), ' seq ' + txt(a.seq) + ': ', el('span', { class: 'amsg' }, txt(a.message))]));
          else ul.appendChild(el('li', { class: 'anomaly' }, txt(a)));
        }
        view.appendChild(ul);
      }
    }

    /* other reducers (merge): every other key as it is */
    const known = new Set(['id', 'status', 'complete', 'model', 'created_ms', 'completed_ms', 'event_count', 'last_seq',
                           'gapless', 'ignored_events', 'metadata', 'error', 'output', 'usage', 'anomalies']);
    const rest = Object.keys(s).filter(k => !known.has(k));
    if (rest.length) {
      view.appendChild(el('h4', null, 'other fields'));
      const dl = el('dl', { class: 'kv' });
      for (const k of rest) {
        dl.appendChild(el('dt', null, k));
        dl.appendChild(el('dd', null, typeof s[k] === 'object' && s[k] !== null ? block(s[k]) : txt(s[k])));
      }
      view.appendChild(dl);
    }
  }

  function renderItem(it, outputs) {
    const li = el('li', { class: 'item item-' + String(it.type).replace(/[^a-z_]/gi, '') });
    const head = el('div', { class: 'item-head' });
    head.appendChild(el('span', { class: 'itype' }, txt(it.type)));
    if (it.role !== undefined && it.role !== null) head.appendChild(el('span', { class: 'role' }, txt(it.role)));
    if (it.name !== undefined && it.name !== null) head.appendChild(el('span', { class: 'tname' }, txt(it.name)));
    if (it.call_id !== undefined && it.call_id !== null) head.appendChild(el('span', { class: 'call-id' }, 'call ' + txt(it.call_id)));
    if (it.id !== undefined && it.id !== null) head.appendChild(el('span', { class: 'item-id' }, txt(it.id)));
    if (it.status !== undefined) head.appendChild(el('span', { class: 'istatus' }, txt(it.status)));
    li.appendChild(head);
    if (it.type === 'message' || it.type === 'reasoning') {
      li.appendChild(el('pre', { class: 'content' }, typeof it.content === 'string' ? it.content : txt(it.content)));
    } else if (it.type === 'tool_call') {
      li.appendChild(el('div', { class: 'label' }, 'arguments'));
      li.appendChild(block(it.arguments === undefined ? null : it.arguments));
      const outs = outputs.get(it.call_id) || [];
      if (!outs.length) li.appendChild(el('div', { class: 'label pending' }, 'no output yet'));
      for (const o of outs) li.appendChild(renderOutput(o));
    } else if (it.type === 'tool_output') {
      li.appendChild(renderOutput(it));
    } else {
      li.appendChild(block(it));
    }
    return li;
  }

  function renderOutput(o) {
    const box = el('div', { class: 'tool-output' + (o.is_error ? ' is-error' : '') });
    const meta = ['output'];
    if (o.is_error) meta.push('error');
    if (o.exit_code !== undefined && o.exit_code !== null) meta.push('exit ' + txt(o.exit_code));
    if (o.duration_ms !== undefined && o.duration_ms !== null) meta.push(fmtDuration(o.duration_ms));
    if (o.truncated) meta.push('truncated');
    box.appendChild(el('div', { class: 'label' }, meta.join(' · ')));
    box.appendChild(block(o.output === undefined ? null : o.output));
    return box;
  }

  /* ------------------------------------------------------------ events */

  async function loadEvents() {
    const res = await api('GET', '/api/v1/events?limit=50');
    const body = $('events-body');
    if (res.status !== 200 || !res.data || res.data.ok === false) {
      clear(body);
      body.appendChild(el('tr', null, el('td', { colspan: '4', class: 'error' }, 'events: ' + errorText(res))));
      return;
    }
    const d = res.data;
    const list = Array.isArray(d.events) ? d.events : Array.isArray(d.entries) ? d.entries : [];
    clear(body);
    for (const ev of list) {
      if (!ev || typeof ev !== 'object') continue;
      /* {"id": "MS-SEQ", "fields": {"worker", "from", "to", "reason", ...}}
       * (streamvisorctl events); values not text are {"b64": ...} */
      const e = ev.fields && typeof ev.fields === 'object' ? ev.fields : ev;
      const id = txt(ev.id);
      let t = null;
      const m = /^([0-9]+)-[0-9]+$/.exec(id);
      if (m) t = Number(m[1]);
      const skip = ['id', 'worker', 'from', 'to'];
      const change = (e.from !== undefined || e.to !== undefined) ? txt(e.from) + ' \u2192 ' + txt(e.to) : '';
      const details = Object.keys(e).filter(k => skip.indexOf(k) < 0).map(k => k + '=' + txt(e[k])).join('  ');
      body.appendChild(el('tr', { dataset: { id: id } }, [el('td', { class: 'time' }, t === null ? '\u2013' : fmtTime(t)),
        el('td', { class: 'worker' }, txt(e.worker)), el('td', { class: 'change' }, change), el('td', { class: 'details' }, details)]));
    }
    if (!body.children.length) body.appendChild(el('tr', null, el('td', { colspan: '4', class: 'empty' }, 'no events')));
  }

  /* ------------------------------------------------------------ start */

  function start() {
    $('login-form').addEventListener('submit', login);
    $('logout').addEventListener('click', logout);
    $('workers-body').addEventListener('click', onWorkerClick);
    $('pools-body').addEventListener('click', onPoolClick);
    $('pools-body').addEventListener('input', ev => { if (ev.target.matches('input.scale-count')) ev.target.dataset.edited = '1'; });
    $('dead-body').addEventListener('click', onDeadClick);
    $('dead-form').addEventListener('submit', ev => { ev.preventDefault(); deadPages.length = 0; loadDead(null, false); });
    $('dead-next').addEventListener('click', () => { if (deadNext) loadDead(deadNext, false); });
    $('dead-first').addEventListener('click', () => { deadPages.length = 0; loadDead(null, false); });
    $('dead-purge-all').addEventListener('click', purgeStream);
    $('run-form').addEventListener('submit', ev => { ev.preventDefault(); openRun($('run-id').value.trim(), $('run-pool').value.trim()); });
    $('events-refresh').addEventListener('click', loadEvents);
    $('message').addEventListener('click', hideMessage);
    /* a run id in the location hash (#run=ID) opens it */
    const m = /[#&]run=([^&]*)/.exec(location.hash);
    loadSession().then(() => {
      if (session.authenticated) loadDead(null, false);
      else loadDead(null, true);
      if (m) { $('run-id').value = decodeURIComponent(m[1]); openRun($('run-id').value, ''); }
    });
    poll();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
