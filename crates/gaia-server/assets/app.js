// Gaia dashboard: plain JavaScript, no dependencies. Talks only to this server: the REST
// API with the session cookie (plus X-CSRF-Token on every POST) and the event stream.
'use strict';

(() => {
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
  const SVG = 'http://www.w3.org/2000/svg';

  const S = {
    me: null, csrf: '', tab: 'overview', stale: new Set(),
    stream: { want: true, ctrl: null, state: 'idle', last: null, reconnects: 0, beat: 0, connects: 0 },
    events: [], paused: false, buffered: [], samples: [], timers: {},
  };

  // Elements from a tag, attributes and children; text is always set as text, never HTML.
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? '' : v);
    }
    for (const kid of kids.flat()) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return el;
  }
  function s(tag, attrs) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
    return el;
  }

  // ---- time ---------------------------------------------------------------------------
  const ms = (t) => (t ? Date.parse(t) : NaN);
  function span(secs) {
    const neg = secs < 0; secs = Math.abs(Math.round(secs));
    const d = Math.floor(secs / 86400), hh = Math.floor(secs / 3600) % 24,
      mm = Math.floor(secs / 60) % 60, ss = secs % 60;
    const t = d ? `${d}d ${hh}h` : hh ? `${hh}h ${mm}m` : mm ? `${mm}m ${ss}s` : `${ss}s`;
    return neg ? `-${t}` : t;
  }
  const ago = (t) => `${span((Date.now() - ms(t)) / 1000)} ago`;
  const clock = (t) => (t ? new Date(ms(t)).toLocaleString() : '–');
  // How long ago `t` was, kept current by the clock below.
  function since(t) {
    return h('span', { class: 'since', dataset: { since: t } }, span((Date.now() - ms(t)) / 1000));
  }
  function countdown(until, prefix) {
    return h('span', { class: 'countdown', dataset: { until, prefix: prefix || '' } }, tick1(until, prefix));
  }
  function tick1(until, prefix) {
    const left = (ms(until) - Date.now()) / 1000;
    return left > 0 ? `${prefix || ''}${span(left)}` : 'expired';
  }

  // ---- API ----------------------------------------------------------------------------
  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    if (method !== 'GET') headers['X-CSRF-Token'] = S.csrf;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const res = await fetch(path, {
      method, headers, credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (res.status === 401 && path !== '/dashboard/login') { showLogin('Your session ended; log in again.'); throw new Error('unauthorized'); }
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { data = text; }
    if (!res.ok) throw new Error((data && data.detail) || `${res.status} ${res.statusText}`);
    return data;
  }
  function flash(msg, bad) {
    const f = $('#flash');
    f.textContent = msg; f.hidden = false; f.classList.toggle('bad', !!bad);
    clearTimeout(S.timers.flash);
    S.timers.flash = setTimeout(() => { f.hidden = true; }, 6000);
  }
  async function act(btn, fn, done) {
    btn.disabled = true;
    try { const r = await fn(); if (done) flash(done(r)); } catch (e) { flash(e.message, true); btn.disabled = false; }
  }
  const canDecide = () => S.me && (S.me.role === 'operator' || S.me.role === 'admin');

  // ---- login --------------------------------------------------------------------------
  function showLogin(msg) {
    stopStream();
    S.me = null;
    $('#app').hidden = true;
    $('#login').hidden = false;
    $('#login-error').textContent = msg || '';
    $('#login-token').focus();
  }
  function enter(me) {
    S.me = me; S.csrf = me.csrf;
    $('#login').hidden = true;
    $('#app').hidden = false;
    $('#who-name').textContent = me.name;
    $('#who-role').textContent = me.role;
    $('#readonly-note').hidden = canDecide();
    document.body.classList.toggle('readonly', !canDecide());
    $$('.op').forEach((b) => { b.hidden = !canDecide(); });
    select(location.hash.slice(1) || 'overview', false);
    refresh('backlog', true);
    S.stream.want = true;
    startStream();
  }
  $('#login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const token = $('#login-token').value.trim();
    if (!token) return;
    try {
      const me = await api('POST', '/dashboard/login', { token });
      $('#login-token').value = '';
      enter(me);
    } catch (e) { $('#login-error').textContent = e.message; }
  });
  $('#logout').addEventListener('click', async () => {
    try { await api('POST', '/dashboard/logout'); } catch (_) { /* cleared anyway */ }
    showLogin('Logged out.');
  });

  // ---- tabs ---------------------------------------------------------------------------
  const TABS = ['overview', 'approvals', 'backlog', 'claims', 'outbox', 'events', 'audit', 'metrics'];
  function select(tab, focus) {
    if (!TABS.includes(tab)) tab = 'overview';
    S.tab = tab;
    for (const t of TABS) {
      const b = $(`#tab-${t}`), on = t === tab;
      b.setAttribute('aria-selected', String(on));
      b.tabIndex = on ? 0 : -1;
      $(`#p-${t}`).hidden = !on;
    }
    if (location.hash.slice(1) !== tab) history.replaceState(null, '', `#${tab}`);
    if (focus) $(`#tab-${tab}`).focus();
    refresh(tab);
  }
  $$('.tabs [role=tab]').forEach((b) => {
    b.addEventListener('click', () => select(b.dataset.tab, false));
    b.addEventListener('keydown', (ev) => {
      const i = TABS.indexOf(S.tab);
      const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: TABS.length - 1 }[ev.key];
      if (next === undefined) return;
      ev.preventDefault();
      select(TABS[(next + TABS.length) % TABS.length], true);
    });
  });
  window.addEventListener('hashchange', () => { if (S.me) select(location.hash.slice(1), false); });

  // Refetches a panel at once, then at most every 250 ms (the overview, and a hidden panel
  // fetched for its badge, every second) while events keep coming; other hidden panels are
  // fetched when shown.
  const LOADERS = {};
  const LOADED = {};
  function refresh(tab, badge) {
    if (!S.me) return;
    const hidden = tab !== S.tab;
    if (hidden && tab !== 'overview' && !badge) { S.stale.add(tab); return; }
    if (S.timers[`r-${tab}`]) return;
    const gap = tab === 'overview' || hidden ? 1000 : 250;
    const wait = Math.max(0, (LOADED[tab] || 0) + gap - Date.now());
    S.timers[`r-${tab}`] = setTimeout(async () => {
      S.timers[`r-${tab}`] = null;
      LOADED[tab] = Date.now();
      S.stale.delete(tab);
      try { await LOADERS[tab](); } catch (e) { if (e.message !== 'unauthorized') flash(`${tab}: ${e.message}`, true); }
    }, wait);
  }

  // ---- overview -----------------------------------------------------------------------
  LOADERS.overview = async () => {
    const [m, recent, cmds] = await Promise.all([
      api('GET', '/api/v1/metrics'), recentEvents(1000), api('GET', '/api/v1/commands?limit=200'),
    ]);
    const v = (k) => (m[k] === undefined ? 0 : m[k]);
    $('#s-approvals').textContent = v('approvals.pending');
    $('#s-claims').textContent = v('claims.live');
    $('#s-pending').textContent = v('outbox.pending');
    $('#s-dead').textContent = v('outbox.dead');
    $('#s-dead').classList.toggle('bad', v('outbox.dead') > 0);
    $('#badge-approvals').textContent = v('approvals.pending') || '';
    $('#badge-outbox').textContent = v('outbox.dead') || '';
    const now = Date.now();
    const perMin = new Array(60).fill(0);
    const alerts = new Map();
    for (const e of recent) {
      const age = Math.floor((now - ms(e.ts)) / 60000);
      if (age >= 0 && age < 60) perMin[59 - age] += 1;
      if (e.type === 'alert.fired') alerts.set(e.subject, true);
      if (e.type === 'alert.resolved') alerts.set(e.subject, false);
    }
    const firing = [...alerts.values()].filter(Boolean).length;
    $('#s-alerts').textContent = firing;
    $('#s-alerts').classList.toggle('bad', firing > 0);
    $('#s-epm').textContent = perMin[59] || perMin[58];
    bars($('#c-events'), perMin);
    S.samples.push({ t: now, depth: v('outbox.pending') + v('outbox.dead'), pending: v('approvals.pending') });
    if (S.samples.length > 120) S.samples.shift();
    lines($('#c-depth'), S.samples.map((x) => x.depth), S.samples.map((x) => x.pending));
    const lat = cmds.filter((c) => c.decided_at && now - ms(c.decided_at) < 3600e3)
      .map((c) => ({ x: ms(c.decided_at), y: (ms(c.decided_at) - ms(c.created_at)) / 1000 }));
    dots($('#c-latency'), lat, now - 3600e3, now);
  };
  async function recentEvents(n) {
    const head = await api('GET', '/api/v1/events/head');
    if (!head.last_seq) return [];
    return api('GET', `/api/v1/events?before=${head.last_seq + 1}&limit=${n}`);
  }
  function frame(box, label) {
    const svg = s('svg', { viewBox: '0 0 300 90', role: 'img', 'aria-label': label, preserveAspectRatio: 'none' });
    svg.append(s('line', { class: 'axis', x1: 0, y1: 80, x2: 300, y2: 80 }));
    box.replaceChildren(svg);
    return svg;
  }
  function bars(box, vals) {
    const max = Math.max(1, ...vals);
    const svg = frame(box, `events per minute, peak ${max}`);
    const w = 300 / vals.length;
    vals.forEach((n, i) => {
      const hgt = (n / max) * 70;
      svg.append(s('rect', { class: 'bar', x: (i * w).toFixed(1), y: (80 - hgt).toFixed(1), width: Math.max(1, w - 1).toFixed(1), height: hgt.toFixed(1) }));
    });
    svg.append(text(2, 10, `max ${max}`), text(2, 89, '-60m'), text(280, 89, 'now'));
  }
  function text(x, y, t) { const el = s('text', { x, y }); el.textContent = t; return el; }
  function lines(box, a, b) {
    const max = Math.max(1, ...a, ...b);
    const svg = frame(box, `queue depth ${a[a.length - 1] || 0}, pending approvals ${b[b.length - 1] || 0}`);
    const path = (vals) => vals.map((v, i) => `${i ? 'L' : 'M'}${(vals.length < 2 ? 0 : (i * 300) / (vals.length - 1)).toFixed(1)},${(80 - (v / max) * 70).toFixed(1)}`).join('');
    if (a.length) svg.append(s('path', { class: 'line', d: path(a) }), s('path', { class: 'line2', d: path(b) }));
    svg.append(text(2, 10, `max ${max}`), text(150, 89, 'blue: queue, red: approvals'));
  }
  function dots(box, pts, x0, x1) {
    const max = Math.max(1, ...pts.map((p) => p.y));
    const svg = frame(box, `${pts.length} decisions, slowest ${Math.round(max)} s`);
    for (const p of pts) {
      svg.append(s('circle', { class: 'dot', r: 3, cx: (((p.x - x0) / (x1 - x0)) * 300).toFixed(1), cy: (80 - (p.y / max) * 70).toFixed(1) }));
    }
    svg.append(text(2, 10, `max ${Math.round(max)}s`), text(2, 89, '-60m'), text(280, 89, 'now'));
    if (!pts.length) svg.append(text(110, 45, 'no decisions'));
  }

  // ---- approvals ----------------------------------------------------------------------
  LOADERS.approvals = async () => {
    const [pending, all] = await Promise.all([
      api('GET', '/api/v1/commands?status=pending&limit=200'), api('GET', '/api/v1/commands?limit=200'),
    ]);
    pending.sort((a, b) => ms(a.created_at) - ms(b.created_at));
    const list = $('#pending-list');
    // Keep what someone is typing in a reason box across refreshes.
    const typed = {};
    $$('.cmd', list).forEach((c) => { const r = $('input', c); if (r && r.value) typed[c.dataset.id] = r.value; });
    list.replaceChildren(...(pending.length ? pending.map((c) => card(c, typed[c.id])) : [h('p', { class: 'empty', text: 'Nothing waits for a decision.' })]));
    $('#badge-approvals').textContent = pending.length || '';
    S.history = all.filter((c) => c.status !== 'pending');
    history_();
  };
  function card(c, typed) {
    const isTest = c.is_test && !c.test_allowed;
    const reasonId = `reason-${c.id}`;
    const dis = isTest || !canDecide();
    const decide = (verb) => (ev) => act(ev.currentTarget, () => api('POST', `/api/v1/commands/${c.id}/${verb}`, { reason: $(`#${reasonId}`).value || undefined }),
      () => `${c.id} ${verb === 'approve' ? 'approved' : 'denied'}`);
    return h('article', { class: `cmd${c.is_test ? ' test' : ''}`, dataset: { id: c.id }, 'aria-label': `request ${c.id}` },
      h('header', {},
        c.is_test ? h('span', { class: 'tag-test', text: 'TEST' }) : null,
        h('strong', { text: c.id }),
        h('span', { class: 'muted', text: `${c.requester} · ${ago(c.created_at)}` }),
        h('span', { class: 'muted' }, 'expires in ', countdown(c.expires_at))),
      h('code', { text: c.display }),
      h('dl', {},
        h('dt', { text: 'Story' }), h('dd', { text: [c.story, c.todolist].filter(Boolean).join(' / ') || '–' }),
        h('dt', { text: 'Cwd' }), h('dd', { text: c.cwd || '–' }),
        h('dt', { text: 'Reason' }), h('dd', { text: c.reason || '–' })),
      canDecide() ? h('div', { class: 'decide' },
        h('label', { for: reasonId, class: 'sr', text: `Reason for ${c.id}` }),
        h('input', { id: reasonId, type: 'text', placeholder: 'reason (optional)', value: typed || '' }),
        h('button', { type: 'button', class: 'approve', disabled: dis, onclick: decide('approve') }, 'Approve'),
        h('button', { type: 'button', class: 'deny', disabled: dis, onclick: decide('deny') }, 'Deny'),
        isTest ? h('button', {
          type: 'button', class: 'allow-test',
          onclick: (ev) => act(ev.currentTarget, () => api('POST', `/api/v1/commands/${c.id}/allow-test`), () => `${c.id}: test allowed`).then(() => refresh('approvals')),
        }, 'Allow test') : null)
        : h('p', { class: 'muted', text: 'Read-only: an operator decides.' }));
  }
  function history_() {
    const st = $('#hist-status').value, q = $('#hist-text').value.trim().toLowerCase();
    const rows = (S.history || []).filter((c) => (!st || c.status === st)
      && (!q || [c.display, c.story, c.requester, c.id].join(' ').toLowerCase().includes(q)));
    $('#history tbody').replaceChildren(...rows.map((c) => h('tr', {},
      h('td', {}, c.is_test ? h('span', { class: 'tag-test', text: 'TEST' }) : null, ' ', c.id),
      h('td', { class: `status-${c.status}`, text: c.status }),
      h('td', { class: 'wrap' }, h('code', { text: c.display })),
      h('td', { text: c.requester }),
      h('td', { text: c.decided_by ? `${c.decided_by} (${c.decided_via})` : '–' }),
      h('td', { text: clock(c.decided_at || c.created_at) }))));
    if (!rows.length) $('#history tbody').append(h('tr', {}, h('td', { colspan: 6, class: 'empty', text: 'No decided requests.' })));
  }
  $('#hist-status').addEventListener('change', history_);
  $('#hist-text').addEventListener('input', history_);

  // ---- backlog ------------------------------------------------------------------------
  // One snapshot from the server: open stories with their current list, ready work, blocked
  // tasks, follow-ups waiting for triage and the scheduled GitHub sync. A reject asks for a reason first; what is being
  // typed and where the focus is survive the refreshes that events bring.
  const TASK_STATUS = { todo: ['○', 'todo'], in_progress: ['◐', 'in progress'], done: ['●', 'done'], blocked: ['⊘', 'blocked'] };
  S.rejecting = {};
  LOADERS.backlog = async () => {
    S.backlog = await api('GET', '/dashboard/backlog');
    renderBacklog();
  };
  function renderBacklog() {
    const b = S.backlog;
    if (!b) return;
    const focus = document.activeElement && document.activeElement.id
      ? { id: document.activeElement.id, at: document.activeElement.selectionStart } : null;
    const inProgress = b.stories.reduce((n, st) => n + (st.counts.in_progress || 0), 0);
    $('#bl-s-stories').textContent = b.stories.length + b.more_stories;
    $('#bl-s-progress').textContent = inProgress;
    $('#bl-s-ready').textContent = b.ready.length;
    $('#bl-s-blocked').textContent = b.blocked.length;
    $('#bl-s-blocked').classList.toggle('bad', b.blocked.length > 0);
    $('#bl-s-followups').textContent = b.followups.length;
    $('#badge-backlog').textContent = b.followups.length || '';
    const live = new Set(b.followups.map((f) => String(f.id)));
    for (const id of Object.keys(S.rejecting)) if (!live.has(id)) delete S.rejecting[id];
    $('#bl-followups').replaceChildren(...(b.followups.length ? b.followups.map(followup)
      : [h('p', { class: 'empty', text: 'No follow-ups wait for triage.' })]));
    $('#bl-ready').replaceChildren(...(b.ready.length ? b.ready.map((t) => h('li', { dataset: { id: t.id } },
      h('span', { class: 'tid', text: `#${t.id}` }), ' ', h('span', { class: 'title', text: t.title }),
      h('span', { class: 'muted where', text: `${t.story} / ${t.todolist}` })))
      : [h('li', { class: 'empty', text: b.stories.length ? 'Nothing is ready: every open task is held, blocked or waiting.' : 'Nothing is ready.' })]));
    $('#bl-blocked').replaceChildren(...(b.blocked.length ? b.blocked.map((t) => h('li', { dataset: { id: t.id } },
      h('span', { class: 'tid', text: `#${t.id}` }), ' ', h('span', { class: 'title', text: t.title }),
      h('span', { class: 'muted where', text: `${t.story} / ${t.todolist}` }),
      t.reason ? h('span', { class: 'reason bad', text: `Blocked: ${t.reason}` }) : null,
      t.waiting_for.length ? h('span', { class: 'reason', text: `Waits for ${t.waiting_for.map((i) => `#${i}`).join(', ')}` }) : null))
      : [h('li', { class: 'empty', text: 'Nothing is blocked.' })]));
    $('#bl-stories').replaceChildren(...(b.stories.length ? b.stories.map(story)
      : [h('p', { class: 'empty', text: 'No open stories.' })]));
    const more = [b.more_stories ? `${b.more_stories} more open stories are not shown.` : '',
      b.closed_stories ? `${b.closed_stories} closed ${b.closed_stories === 1 ? 'story is' : 'stories are'} not shown.` : ''].filter(Boolean).join(' ');
    $('#bl-more').textContent = more;
    $('#bl-more').hidden = !more;
    $('#bl-github').replaceChildren(githubSync(b.github));
    if (focus && !document.activeElement.id) {
      const el = document.getElementById(focus.id);
      if (el) { el.focus(); if (focus.at !== null && focus.at !== undefined && el.setSelectionRange) el.setSelectionRange(focus.at, focus.at); }
    }
  }
  // The scheduled GitHub sync, as the node holding its lease last reported it.
  function githubSync(g) {
    if (!g) return h('p', { class: 'empty', text: 'The scheduled sync is off (enable [github] in gaia.toml).' });
    const counts = Object.entries(g.counts || {}).filter(([, n]) => n).map(([k, n]) => `${n} ${k}`).join(', ');
    const row = (k, v, cls) => h('tr', {}, h('th', { text: k }), h('td', { text: v, class: cls || '' }));
    return h('table', { class: 'kv' }, h('tbody', {},
      row('Repository', g.repo + (g.tasks ? ' (stories and tasks)' : ' (stories)')),
      row('Lease held by', g.holder || '–'),
      row('Last run', g.last_started ? `${clock(g.last_started)} → ${g.last_finished ? clock(g.last_finished) : 'running'}` : 'not yet'),
      row('Result', counts || '–'),
      row('Last error', g.last_error || 'none', g.last_error ? 'bad' : ''),
      row('Next run', clock(g.next_run))));
  }
  function followup(f) {
    const reasonId = `fu-reason-${f.id}`;
    const rejecting = Object.prototype.hasOwnProperty.call(S.rejecting, String(f.id));
    const accept = (ev) => act(ev.currentTarget, () => api('POST', `/dashboard/backlog/followups/${f.id}/accept`),
      (r) => `follow-up ${f.id} accepted as task #${r.task_id}`).then(() => refresh('backlog'));
    const askReason = () => { S.rejecting[f.id] = ''; renderBacklog(); $(`#${reasonId}`).focus(); };
    const reject = (ev) => {
      ev.preventDefault();
      const input = $(`#${reasonId}`);
      const reason = input.value.trim();
      if (!reason) { input.setAttribute('aria-invalid', 'true'); input.focus(); flash('Give a reason to reject a follow-up.', true); return; }
      const btn = ev.currentTarget.querySelector('button.deny');
      act(btn, () => api('POST', `/dashboard/backlog/followups/${f.id}/reject`, { reason }),
        () => { delete S.rejecting[f.id]; return `follow-up ${f.id} rejected`; }).then(() => refresh('backlog'));
    };
    let controls;
    if (!canDecide()) controls = h('p', { class: 'muted', text: 'Read-only: an operator triages.' });
    else if (rejecting) {
      controls = h('form', { class: 'decide reject-form', onsubmit: reject },
        h('label', { for: reasonId, text: `Why reject follow-up ${f.id}?` }),
        h('input', { id: reasonId, type: 'text', required: true, maxlength: 2000, placeholder: 'reason (required)', value: S.rejecting[f.id] || '',
          oninput: (ev) => { S.rejecting[f.id] = ev.target.value; ev.target.removeAttribute('aria-invalid'); } }),
        h('button', { type: 'submit', id: `fu-reject-${f.id}`, class: 'deny' }, 'Reject'),
        h('button', { type: 'button', id: `fu-cancel-${f.id}`, class: 'cancel', onclick: () => { delete S.rejecting[f.id]; renderBacklog(); } }, 'Cancel'));
    } else {
      controls = h('div', { class: 'decide' },
        h('button', { type: 'button', id: `fu-accept-${f.id}`, class: 'approve accept', onclick: accept }, 'Accept'),
        h('button', { type: 'button', id: `fu-ask-${f.id}`, class: 'deny ask-reject', onclick: askReason }, 'Reject…'));
    }
    return h('article', { class: 'cmd followup', dataset: { id: f.id }, 'aria-label': `follow-up ${f.id}` },
      h('header', {},
        h('strong', { class: 'title', text: f.title }),
        h('span', { class: 'muted', text: `#${f.id} · ${f.story} · from ${f.agent} (${f.task}) · ${ago(f.created_at)}` })),
      f.body ? h('pre', { class: 'body', text: f.body }) : null,
      h('p', { class: 'muted path', text: f.path }),
      controls);
  }
  function story(st) {
    const done = st.counts.done || 0, total = st.tasks.length;
    const c = st.claim;
    const holder = c
      ? h('p', { class: 'holder' }, h('span', { class: 'k', text: 'Claim ' }),
        h('strong', { text: c.agent }), h('span', { class: 'muted', text: ` (${c.operator}) · token ${c.token}` }), ' · held ',
        c.acquired_at ? since(c.acquired_at) : '–', ' · ', c.expires_at ? countdown(c.expires_at, 'expires in ') : 'no expiry')
      : h('p', { class: 'holder muted' }, h('span', { class: 'k', text: 'Claim ' }), 'free: nobody holds this list');
    return h('article', { class: 'story', dataset: { slug: st.slug }, 'aria-label': `story ${st.slug}` },
      h('header', {},
        h('strong', { class: 'title', text: st.title }),
        h('span', { class: 'muted', text: `${st.slug} / ${st.todolist}` }),
        st.finalized_at ? h('span', { class: 'pill final', title: `finalized ${clock(st.finalized_at)}`, text: 'finalized' }) : null,
        ...st.labels.map((l) => h('span', { class: 'label', text: l }))),
      holder,
      h('div', { class: 'progress' },
        h('progress', { max: Math.max(total, 1), value: done, 'aria-label': `${done} of ${total} tasks done` }),
        h('span', { class: 'muted', text: `${done}/${total} done` })),
      h('ol', { class: 'tasks' }, ...st.tasks.map((t) => {
        const [icon, label] = TASK_STATUS[t.status] || ['?', t.status];
        return h('li', { class: `task st-${t.status}`, dataset: { id: t.id, status: t.status } },
          h('span', { class: `status st-${t.status}`, title: label }, h('span', { 'aria-hidden': 'true', text: icon }), ` ${label}`),
          h('span', { class: 'title', text: t.title }),
          t.is_final ? h('span', { class: 'label', text: 'final' }) : null,
          h('span', { class: 'muted', text: `#${t.id}${t.worker ? ` · ${t.worker}` : ''}` }),
          t.reason ? h('span', { class: 'reason bad', text: `Blocked: ${t.reason}` }) : null,
          t.waiting_for.length ? h('span', { class: 'reason', text: `Waits for ${t.waiting_for.map((i) => `#${i}`).join(', ')}` }) : null);
      })));
  }

  // ---- claims -------------------------------------------------------------------------
  LOADERS.claims = async () => {
    const claims = await api('GET', '/api/v1/claims');
    $('#claims tbody').replaceChildren(...claims.map((c) => h('tr', {},
      h('td', { text: c.key }),
      h('td', { text: c.holder ? `${c.holder.agent} (${c.holder.operator})` : '–' }),
      h('td', { text: String(c.token) }),
      h('td', {}, c.expires_at ? countdown(c.expires_at) : '–'),
      h('td', { text: c.previous_holder ? `${c.previous_holder.agent} (taken over)` : '–' }))));
    if (!claims.length) $('#claims tbody').append(h('tr', {}, h('td', { colspan: 5, class: 'empty', text: 'No live claims.' })));
  };

  // ---- outbox -------------------------------------------------------------------------
  LOADERS.outbox = async () => {
    const [dead, pending] = await Promise.all([
      api('GET', '/api/v1/queue?status=dead&limit=500'), api('GET', '/api/v1/queue?status=pending&limit=500'),
    ]);
    $('#dead-all').checked = false;
    $('#dead tbody').replaceChildren(...dead.map((m) => h('tr', { dataset: { id: m.id } },
      h('td', {}, h('input', { type: 'checkbox', class: 'pick', 'aria-label': `Select message ${m.id}`, value: m.id, disabled: !canDecide() })),
      h('td', { text: m.id }),
      h('td', { class: 'wrap', text: `${m.channel} → ${m.target}` }),
      h('td', { text: m.kind }),
      h('td', { text: `${m.attempts}${m.requeues ? ` (requeued ${m.requeues}×)` : ''}` }),
      h('td', { class: 'wrap bad', text: m.last_error || '–' }),
      h('td', { text: m.dead_at ? ago(m.dead_at) : '–' }),
      h('td', {}, canDecide() ? h('button', { type: 'button', class: 'requeue', onclick: (ev) => act(ev.currentTarget, () => api('POST', '/admin/requeue', { id: m.id }), () => `message ${m.id} requeued`).then(() => refresh('outbox')) }, 'Requeue') : null))));
    if (!dead.length) $('#dead tbody').append(h('tr', {}, h('td', { colspan: 8, class: 'empty', text: 'The dead set is empty.' })));
    $('#pending tbody').replaceChildren(...pending.map((m) => h('tr', {},
      h('td', { text: m.id }),
      h('td', { class: 'wrap', text: `${m.channel} → ${m.target}` }),
      h('td', { text: m.kind }),
      h('td', { text: m.attempts }),
      h('td', {}, countdown(m.next_attempt_at, 'in ')),
      h('td', { class: 'wrap', text: m.last_error || '–' }))));
    if (!pending.length) $('#pending tbody').append(h('tr', {}, h('td', { colspan: 6, class: 'empty', text: 'Nothing waiting.' })));
    $('#badge-outbox').textContent = dead.length || '';
  };
  $('#dead-all').addEventListener('change', (ev) => { $$('#dead .pick').forEach((c) => { if (!c.disabled) c.checked = ev.target.checked; }); });
  $('#requeue-selected').addEventListener('click', (ev) => {
    const ids = $$('#dead .pick').filter((c) => c.checked).map((c) => Number(c.value));
    if (!ids.length) { flash('Select messages to requeue first.', true); return; }
    act(ev.currentTarget, async () => { for (const id of ids) await api('POST', '/admin/requeue', { id }); return ids; },
      (r) => `requeued ${r.length} message(s)`).then(() => { ev.target.disabled = false; refresh('outbox'); });
  });
  $('#auto-preview').addEventListener('click', (ev) => {
    act(ev.currentTarget, () => api('POST', '/api/v1/queue/auto-requeue', { dry_run: true }), (list) => {
      const box = $('#auto-result');
      box.hidden = false;
      box.textContent = list.length
        ? `Auto-requeue would take ${list.length}: ${list.map((m) => `#${m.id} (${m.channel} → ${m.target})`).join(', ')}`
        : 'Auto-requeue would take nothing under the current policy.';
      return 'dry run: nothing was requeued';
    }).then(() => { ev.target.disabled = false; });
  });

  // ---- events -------------------------------------------------------------------------
  LOADERS.events = async () => {
    if (!S.events.length) {
      S.events = await recentEvents(100);
      if (S.events.length) S.stream.last = S.stream.last || S.events[S.events.length - 1].seq;
    }
    renderEvents();
  };
  function evMatch(e) {
    const t = $('#ev-type').value.trim(), sub = $('#ev-subject').value.trim();
    return (!t || e.type === t || e.type.startsWith(`${t}.`) || e.type.startsWith(t)) && (!sub || e.subject.includes(sub));
  }
  function evItem(e) {
    return h('li', { dataset: { seq: e.seq } },
      h('span', { class: 'muted', text: `#${e.seq} ${new Date(ms(e.ts)).toLocaleTimeString()} ` }),
      h('span', { class: 't', text: e.type }), ' ',
      h('span', { class: 's', text: `${e.subject} · ${e.actor}` }), ' ',
      h('span', { text: JSON.stringify(e.data) }));
  }
  function renderEvents() {
    const shown = S.events.filter(evMatch).slice(-200).reverse();
    $('#events').replaceChildren(...shown.map(evItem));
    $('#ev-buffered').textContent = S.paused ? `${S.buffered.length} new while paused` : '';
  }
  $('#ev-type').addEventListener('input', renderEvents);
  $('#ev-subject').addEventListener('input', renderEvents);
  $('#ev-pause').addEventListener('click', (ev) => {
    S.paused = !S.paused;
    ev.target.textContent = S.paused ? 'Resume' : 'Pause';
    ev.target.setAttribute('aria-pressed', String(S.paused));
    if (!S.paused) { S.events.push(...S.buffered); S.buffered = []; }
    renderEvents();
  });

  // ---- audit and metrics --------------------------------------------------------------
  LOADERS.audit = async () => {
    const recs = await api('GET', '/api/v1/audit?limit=100');
    $('#audit tbody').replaceChildren(...recs.reverse().map((r) => h('tr', {},
      h('td', { text: r.id }), h('td', { text: clock(r.ts) }), h('td', { text: r.actor }),
      h('td', { text: r.action }), h('td', { class: 'wrap', text: r.subject || '–' }),
      h('td', { class: r.outcome === 'ok' ? 'ok' : 'bad', text: r.outcome }))));
  };
  $('#verify').addEventListener('click', (ev) => {
    const out = $('#verify-result');
    out.textContent = 'verifying…';
    act(ev.currentTarget, () => api('GET', '/api/v1/audit/verify'), (r) => {
      out.className = r.intact ? 'ok' : 'bad';
      out.textContent = r.intact ? `Intact: ${r.checked} records checked.`
        : `BROKEN at record ${r.first_broken.id}: ${r.first_broken.reason} (${r.checked} checked)`;
      return out.textContent;
    }).then(() => { ev.target.disabled = false; });
  });
  LOADERS.metrics = async () => {
    const m = await api('GET', '/api/v1/metrics');
    const breach = (k, v) => (k === 'outbox.dead' || k.endsWith('.error') || k === 'notify.dead') && v > 0;
    $('#metrics tbody').replaceChildren(...Object.entries(m).map(([k, v]) => h('tr', { class: breach(k, v) ? 'breach' : '' },
      h('td', { text: k }), h('td', { text: String(v) }))));
  };

  // ---- the stream ---------------------------------------------------------------------
  // Read with fetch rather than EventSource: the cookie authenticates it, Last-Event-ID is
  // sent on every reconnect (also after a server restart), and heartbeats are visible.
  // Which panels an event touches, by its type or its subject.
  const AFFECTS = [['approval.', ['approvals']], ['command.', ['approvals']], ['command/', ['approvals']],
    ['claim.', ['claims', 'backlog']], ['claim/', ['claims']], ['notify.', ['outbox']], ['outbox/', ['outbox']],
    ['alert.', ['metrics']], ['story.', ['backlog']], ['todo.', ['backlog']], ['followup.', ['backlog']], ['github.', ['backlog']]];
  function onEvent(e) {
    S.stream.last = e.seq;
    if (S.paused) S.buffered.push(e); else S.events.push(e);
    if (S.events.length > 2000) S.events.splice(0, S.events.length - 2000);
    if (S.tab === 'events' && !S.paused && evMatch(e)) {
      const list = $('#events');
      list.prepend(evItem(e));
      while (list.children.length > 200) list.lastChild.remove();
    }
    for (const [prefix, tabs] of AFFECTS) {
      if (e.type.startsWith(prefix) || e.subject.startsWith(prefix)) tabs.forEach((t) => refresh(t));
    }
    // The Backlog tab's badge counts follow-ups waiting for triage, also while it is hidden.
    if (e.type.startsWith('followup.')) refresh('backlog', true);
    refresh('overview');
    if (S.tab === 'audit' || S.tab === 'metrics') refresh(S.tab);
  }
  function setState(st) {
    S.stream.state = st;
    const c = $('#conn');
    c.textContent = st;
    c.className = `pill ${st === 'live' ? 'live' : st === 'stopped' || st === 'idle' ? '' : 'down'}`;
    debugView();
  }
  function debugView() {
    $('#d-state').textContent = S.stream.state;
    $('#d-last').textContent = S.stream.last === null ? '–' : S.stream.last;
    $('#d-reconnects').textContent = S.stream.reconnects;
    $('#d-heartbeat').textContent = S.stream.beat ? `${span((Date.now() - S.stream.beat) / 1000)} ago` : '–';
    $('#stream-toggle').textContent = S.stream.want ? 'Stop stream' : 'Start stream';
  }
  function stopStream() {
    if (S.stream.ctrl) S.stream.ctrl.abort();
    S.stream.ctrl = null;
    clearTimeout(S.timers.retry);
  }
  async function startStream() {
    stopStream();
    if (!S.stream.want || !S.me) { setState('stopped'); return; }
    const ctrl = new AbortController();
    S.stream.ctrl = ctrl;
    if (S.stream.connects++ > 0) S.stream.reconnects += 1;
    setState('connecting');
    let retry = 2000;
    try {
      if (S.stream.last === null) {
        const head = await api('GET', '/api/v1/events/head');
        S.stream.last = head.last_seq;
      }
      const headers = { Accept: 'text/event-stream', 'Last-Event-ID': String(S.stream.last) };
      const res = await fetch('/api/v1/events/stream', { headers, credentials: 'same-origin', signal: ctrl.signal });
      if (res.status === 401) { showLogin('Your session ended; log in again.'); return; }
      if (!res.ok || !res.body) throw new Error(`stream answered ${res.status}`);
      setState('live');
      S.stream.beat = Date.now();
      // Whatever happened while we were away: refetch the open panel.
      refresh(S.tab); refresh('overview');
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let cut;
        while ((cut = buf.search(/\r?\n\r?\n/)) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut).replace(/^\r?\n\r?\n/, '');
          S.stream.beat = Date.now();
          const f = { data: [] };
          for (const line of block.split(/\r?\n/)) {
            if (!line || line.startsWith(':')) continue;
            const i = line.indexOf(':');
            const k = i < 0 ? line : line.slice(0, i);
            const v = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
            if (k === 'data') f.data.push(v); else f[k] = v;
          }
          if (f.retry) retry = Number(f.retry) || retry;
          if (f.event === 'reset') { S.events = []; refresh(S.tab); continue; }
          if (f.id && f.data.length) {
            try { onEvent(JSON.parse(f.data.join('\n'))); } catch (_) { /* a malformed frame is skipped */ }
          }
          debugView();
        }
      }
    } catch (e) {
      if (ctrl.signal.aborted) return;
    }
    if (S.stream.ctrl !== ctrl) return;
    setState('reconnecting');
    S.timers.retry = setTimeout(startStream, retry);
  }
  $('#stream-toggle').addEventListener('click', () => {
    S.stream.want = !S.stream.want;
    if (S.stream.want) startStream(); else { stopStream(); setState('stopped'); }
  });

  // Once a second: countdowns, heartbeat age; show stale panels' data when opened.
  setInterval(() => {
    $$('.countdown').forEach((el) => { el.textContent = tick1(el.dataset.until, el.dataset.prefix); });
    $$('.since').forEach((el) => { el.textContent = span((Date.now() - ms(el.dataset.since)) / 1000); });
    if (S.me) debugView();
    if (S.stale.has(S.tab)) refresh(S.tab);
  }, 1000);
  // Charts move on even when nothing happens.
  setInterval(() => { if (S.me && S.tab === 'overview') refresh('overview'); }, 30000);

  // A reloaded page carries on with its session.
  api('GET', '/dashboard/session').then(enter, () => showLogin(''));
})();
