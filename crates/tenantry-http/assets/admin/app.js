// The admin page at /admin: one script, no framework, no build step. It talks only to this
// server's own /v1 API with the session cookie (POST /v1/auth/login), naming the tenant in the
// path (/t/{slug}/v1/...), so every rule the API enforces applies here unchanged; the page only
// hides what the person's role may not use. Everything is built with DOM calls (never
// innerHTML), so no text from the server can become markup; the Content-Security-Policy the
// server sends forbids inline script and framing besides.
'use strict';

// ---- DOM helpers --------------------------------------------------------------------------

/** An element: attributes (`on...` are listeners; `class`; true = present) and children. */
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, kids);
  return el;
}

const SVG = 'http://www.w3.org/2000/svg';

function svg(tag, attrs, ...kids) {
  const el = document.createElementNS(SVG, tag);
  setAttrs(el, attrs);
  append(el, kids);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.setAttribute('class', v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

/** Appends children: nodes, strings (as text), arrays of them; null, undefined and false skipped. */
function append(el, ...kids) {
  for (const kid of kids.flat(Infinity)) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
}

function clear(el, ...kids) {
  el.replaceChildren();
  append(el, kids);
  return el;
}

const byId = (id) => document.getElementById(id);

function toast(message, bad) {
  const t = byId('toast');
  t.className = bad ? 'toast bad show' : 'toast show';
  t.textContent = message;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.className = 'toast'; }, 5000);
}

function bytes(n) {
  if (n === null || n === undefined) return 'unlimited';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

const count = (n) => (n === null || n === undefined ? 'unlimited' : Number(n).toLocaleString('en'));
const when = (t) => (t ? t.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '—');

/** A table: `columns` are [heading, cell(row)] pairs. */
function table(caption, columns, rows, empty) {
  if (!rows.length) return h('p', { class: 'muted' }, empty || 'Nothing here yet.');
  return h('table', {},
    h('caption', { class: 'visually-hidden' }, caption),
    h('thead', {}, h('tr', {}, columns.map(([head]) => h('th', { scope: 'col' }, head)))),
    h('tbody', {}, rows.map((row) => h('tr', {}, columns.map(([, cell]) => h('td', {}, cell(row)))))));
}

/** A labelled form field. */
function field(label, input, hint) {
  const id = input.id || `f-${Math.random().toString(36).slice(2)}`;
  input.id = id;
  return h('div', { class: 'field' }, h('label', { for: id }, label), input, hint ? h('small', {}, hint) : null);
}

function select(name, options, value) {
  return h('select', { name }, options.map((o) => h('option', { value: o, selected: o === value }, o)));
}

/** A form whose submit runs `action(values)`; errors show beside it; the button waits. */
function form(label, fields, buttonText, action, extraClass) {
  const status = h('p', { class: 'form-error', role: 'alert' });
  const button = h('button', { type: 'submit' }, buttonText);
  const f = h('form', { 'aria-label': label, class: extraClass || 'inline' }, fields, button, status);
  f.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    status.textContent = '';
    button.disabled = true;
    try {
      await action(Object.fromEntries(new FormData(f).entries()), f);
    } catch (e) {
      status.textContent = e.message;
    } finally {
      button.disabled = false;
    }
  });
  return f;
}

// ---- the API -------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** One API call; `tenant` puts it under /t/{slug}. A 401 sends the person to sign in. */
async function api(method, path, opts = {}) {
  const url = opts.tenant ? `/t/${encodeURIComponent(opts.tenant)}${path}` : path;
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (opts.raw !== undefined) {
    init.body = opts.raw;
    if (opts.contentType) init.headers['Content-Type'] = opts.contentType;
  } else if (opts.body !== undefined) {
    init.body = JSON.stringify(opts.body);
    init.headers['Content-Type'] = 'application/json';
  }
  const res = await fetch(url, init);
  if (!res.ok) {
    let err = {};
    try { err = (await res.json()).error || {}; } catch (_) { /* not JSON */ }
    if (res.status === 401 && !opts.quiet) {
      state.session = null;
      go(`/admin/login?next=${encodeURIComponent(location.pathname + location.search)}`, true);
    }
    throw new ApiError(res.status, err.code || 'error', err.message || `${res.status} ${res.statusText}`);
  }
  if (res.status === 204) return null;
  const type = res.headers.get('content-type') || '';
  return type.includes('json') ? res.json() : res.text();
}

const pathUrl = (p) => p.split('/').map(encodeURIComponent).join('/');

// ---- state and routing ---------------------------------------------------------------------

const RANK = { reader: 0, writer: 1, admin: 2, owner: 3, operator: 4 };

const state = {
  session: null, // GET /v1/auth/session
  tenant: null, // the slug in the URL
  role: null, // the person's role in it ('operator' for a super-admin)
  stream: null, // the live-events EventSource of the page shown
  shown: 0, // counts page draws: a draw that finishes after a newer one began is dropped
};

const isOperator = () => Boolean(state.session && state.session.user.super_admin);
const can = (role) => RANK[state.role] >= RANK[role];

/** The pages of a tenant: [path, title, the role it needs, renderer]. */
const TENANT_PAGES = [
  ['', 'Overview', 'reader', overviewPage],
  ['files', 'Files', 'reader', filesPage],
  ['memory', 'Memory', 'reader', memoryPage],
  ['search', 'Search', 'reader', searchPage],
  ['events', 'Live events', 'reader', eventsPage],
  ['keys', 'Keys', 'admin', keysPage],
  ['members', 'Members', 'admin', membersPage],
  ['webhooks', 'Webhooks', 'admin', webhooksPage],
  ['audit', 'Audit log', 'admin', auditPage],
  ['settings', 'Settings', 'operator', settingsPage],
];

function go(url, replace) {
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  render();
}

document.addEventListener('click', (ev) => {
  const a = ev.target.closest('a[href^="/admin"]');
  if (!a || a.target || a.hasAttribute('download') || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button !== 0) return;
  ev.preventDefault();
  go(a.getAttribute('href'));
});
window.addEventListener('popstate', () => render());

async function loadSession() {
  try {
    state.session = await api('GET', '/v1/auth/session', { quiet: true });
  } catch (e) {
    if (e.status !== 401) throw e;
    state.session = null;
  }
}

function tenantUrl(slug, page) {
  return `/admin/t/${encodeURIComponent(slug)}${page ? `/${page}` : ''}`;
}

/** Where to go after signing in: only a page of this admin. */
const safeNext = (next) => (next && /^\/admin(\/|$|\?)/.test(next) ? next : '/admin');

async function render() {
  state.shown += 1;
  if (state.stream) { state.stream.close(); state.stream = null; }
  const main = byId('main');
  const path = location.pathname.replace(/\/+$/, '') || '/admin';
  const params = new URLSearchParams(location.search);
  if (path === '/admin/accept') return acceptPage(main);
  if (!state.session) await loadSession();
  if (path === '/admin/login' || !state.session) {
    if (state.session) return go(safeNext(params.get('next')), true);
    if (path !== '/admin/login') return go(`/admin/login?next=${encodeURIComponent(location.pathname + location.search)}`, true);
    return loginPage(main, params.get('next'));
  }
  const tenantMatch = path.match(/^\/admin\/t\/([^/]+)(?:\/([a-z]+))?$/);
  if (tenantMatch) {
    let slug;
    try { slug = decodeURIComponent(tenantMatch[1]); } catch (_) { slug = tenantMatch[1]; }
    const page = TENANT_PAGES.find(([p]) => p === (tenantMatch[2] || ''));
    const member = state.session.tenants.find((t) => t.slug === slug);
    state.tenant = slug;
    state.role = isOperator() ? 'operator' : member ? member.role : null;
    drawChrome();
    if (!state.role || !page) return notFound(main, `No tenant "${slug}" that you can open.`);
    if (!can(page[2])) return notFound(main, 'Your role in this tenant does not open this page.');
    return show(main, page[1], (m) => page[3](m, params));
  }
  state.tenant = null;
  state.role = null;
  drawChrome();
  if (path === '/admin') {
    if (isOperator()) return go('/admin/tenants', true);
    const first = state.session.tenants[0];
    if (first) return go(tenantUrl(first.slug), true);
    return show(main, 'No tenants yet', (m) => append(m, h('p', {}, 'You are not a member of any tenant yet. An admin of a tenant can invite you.')));
  }
  if (path === '/admin/tenants' && isOperator()) return show(main, 'Tenants', (m) => tenantsPage(m, params));
  if (path === '/admin/users' && isOperator()) return show(main, 'Users', (m) => usersPage(m));
  return notFound(main, 'No such page.');
}

/** Draws a page off-screen, then shows it with its heading at once: a draw overtaken by a
 * newer one (the person moved on meanwhile) is dropped, so pages never mix. */
async function show(main, title, draw) {
  const mine = ++state.shown;
  const page = h('div', {}, h('h1', {}, title));
  try {
    await draw(page);
  } catch (e) {
    if (mine !== state.shown) return;
    if (e.status === 404 && e.code === 'tenant_not_found') return notFound(main, `No tenant "${state.tenant}" that you can open.`);
    if (e.status === 401) return;
    append(page, h('p', { class: 'form-error', role: 'alert' }, e.message));
  }
  if (mine !== state.shown) return;
  document.title = `${title}${state.tenant ? ` · ${state.tenant}` : ''} · Tenantry admin`;
  clear(main, ...page.childNodes);
}

function notFound(main, why) {
  document.title = 'Not found · Tenantry admin';
  clear(main, h('h1', {}, 'Not found'), h('p', {}, why), h('p', {}, h('a', { href: '/admin' }, 'Back to your tenants')));
}

// ---- the top bar, the tenant switcher and the side navigation --------------------------------

function drawChrome() {
  const top = byId('top');
  const side = byId('side');
  if (!state.session) {
    clear(top, h('a', { class: 'brand', href: '/admin' }, 'Tenantry'));
    clear(side);
    side.hidden = true;
    return;
  }
  const user = state.session.user;
  clear(top,
    h('a', { class: 'brand', href: '/admin' }, 'Tenantry'),
    switcher(),
    h('div', { class: 'who' },
      h('span', {}, user.name || user.email, user.super_admin ? ' (super-admin)' : ''),
      h('button', { type: 'button', class: 'link', onclick: signOut }, 'Sign out')));
  const links = [];
  if (state.tenant && state.role) {
    for (const [page, title, role] of TENANT_PAGES) {
      if (!can(role)) continue;
      const href = tenantUrl(state.tenant, page);
      const here = location.pathname.replace(/\/+$/, '') === href;
      links.push(h('li', {}, h('a', { href, 'aria-current': here ? 'page' : null }, title)));
    }
  }
  const operatorLinks = isOperator() ? [
    h('li', {}, h('a', { href: '/admin/tenants', 'aria-current': location.pathname === '/admin/tenants' ? 'page' : null }, 'All tenants')),
    h('li', {}, h('a', { href: '/admin/users', 'aria-current': location.pathname === '/admin/users' ? 'page' : null }, 'Users')),
  ] : [];
  side.hidden = false;
  clear(side,
    state.tenant && state.role ? [h('h2', {}, state.tenant), h('ul', {}, links)] : null,
    operatorLinks.length ? [h('h2', {}, 'Operator'), h('ul', {}, operatorLinks)] : null);
}

/** The tenant switcher: a combobox that asks the server (GET /v1/auth/tenants?q=) as you type. */
function switcher() {
  const input = h('input', {
    id: 'switch-input', type: 'text', role: 'combobox', autocomplete: 'off', spellcheck: 'false',
    'aria-autocomplete': 'list', 'aria-expanded': 'false', 'aria-controls': 'switch-list',
    placeholder: state.tenant ? `${state.tenant} — switch tenant (/)` : 'Open a tenant (/)',
  });
  const list = h('ul', { id: 'switch-list', role: 'listbox', 'aria-label': 'Tenants', hidden: true });
  let items = [];
  let active = -1; // the highlighted option, -1 for none (always -1 while the list is closed)
  let asked = 0;
  let timer = null;
  const open = (on) => {
    list.hidden = !on;
    input.setAttribute('aria-expanded', on ? 'true' : 'false');
    if (!on) {
      active = -1;
      input.removeAttribute('aria-activedescendant');
    }
  };
  const mark = (i) => {
    active = i;
    list.querySelectorAll('[role=option]').forEach((li, j) => li.setAttribute('aria-selected', j === i ? 'true' : 'false'));
    if (i >= 0) {
      input.setAttribute('aria-activedescendant', `switch-opt-${i}`);
      byId(`switch-opt-${i}`).scrollIntoView({ block: 'nearest' });
    } else input.removeAttribute('aria-activedescendant');
  };
  // The same page in the chosen tenant when the role there opens it, else its overview; an
  // archived tenant (a super-admin's) opens at its settings, the only page it still has.
  const choose = (t) => {
    open(false);
    input.value = '';
    const here = location.pathname.match(/^\/admin\/t\/[^/]+\/([a-z]+)$/);
    const page = TENANT_PAGES.find(([p]) => here && p === here[1]);
    const role = isOperator() ? 'operator' : t.role;
    if (t.status === 'archived') return go(tenantUrl(t.slug, 'settings'));
    go(tenantUrl(t.slug, page && RANK[role] >= RANK[page[2]] ? page[0] : ''));
  };
  const ask = async () => {
    const mine = ++asked;
    const q = input.value.trim();
    let found;
    try {
      found = await api('GET', `/v1/auth/tenants?limit=12&q=${encodeURIComponent(q)}`);
    } catch (e) {
      return;
    }
    // A later keystroke's answer wins; none is shown once the field has lost focus.
    if (mine !== asked || document.activeElement !== input) return;
    items = found.items;
    clear(list, items.length ? items.map((t, i) => h('li', {
      id: `switch-opt-${i}`, role: 'option', 'aria-selected': 'false',
      onmousedown: (ev) => { ev.preventDefault(); choose(t); },
    }, h('strong', {}, t.slug), ` ${t.name}`, h('span', { class: 'badge' }, t.status === 'active' ? t.role : t.status)))
      : h('li', { class: 'muted', role: 'option', 'aria-disabled': 'true', 'aria-selected': 'false' }, 'No tenant matches'));
    open(true);
    mark(items.length ? 0 : -1);
  };
  input.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(ask, 120); });
  input.addEventListener('focus', ask);
  input.addEventListener('blur', () => { clearTimeout(timer); asked += 1; open(false); });
  input.addEventListener('keydown', (ev) => {
    if (ev.key === 'ArrowDown' || ev.key === 'ArrowUp') {
      ev.preventDefault();
      if (list.hidden) { ask(); return; }
      if (!items.length) return;
      mark(ev.key === 'ArrowDown' ? (active + 1) % items.length : (active - 1 + items.length) % items.length);
    } else if (ev.key === 'Enter') {
      ev.preventDefault();
      if (!list.hidden && active >= 0 && items[active]) choose(items[active]);
    } else if (ev.key === 'Escape') {
      open(false);
    }
  });
  return h('div', { class: 'switcher' }, h('label', { for: 'switch-input', class: 'visually-hidden' }, 'Switch tenant'), input, list);
}

document.addEventListener('keydown', (ev) => {
  const typing = ev.target.closest && ev.target.closest('input, textarea, select');
  if (ev.key === '/' && !typing && byId('switch-input')) { ev.preventDefault(); byId('switch-input').focus(); }
});

async function signOut() {
  try { await api('POST', '/v1/auth/logout', { quiet: true }); } catch (_) { /* ended already */ }
  state.session = null;
  go('/admin/login', true);
}

// ---- signing in and accepting an invitation ---------------------------------------------------

function loginPage(main, next) {
  state.tenant = null;
  drawChrome();
  document.title = 'Sign in · Tenantry admin';
  const email = h('input', { name: 'email', type: 'email', autocomplete: 'username', required: true });
  const password = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  clear(main, h('div', { class: 'card narrow' },
    h('h1', {}, 'Sign in'),
    form('Sign in', [field('Email', email), field('Password', password)], 'Sign in', async (v) => {
      await api('POST', '/v1/auth/login', { body: { email: v.email, password: v.password }, quiet: true });
      state.session = null;
      go(safeNext(next), true);
    }, 'stack'),
    h('p', { class: 'muted' }, 'Accounts are made by the operator (tenantry user create) or by accepting an invitation.')));
  email.focus();
}

function acceptPage(main) {
  state.session = null;
  drawChrome();
  document.title = 'Accept an invitation · Tenantry admin';
  const token = new URLSearchParams(location.hash.slice(1)).get('token') || '';
  const password = h('input', { name: 'password', type: 'password', autocomplete: 'new-password', required: true, minlength: 8 });
  const name = h('input', { name: 'name', type: 'text', autocomplete: 'name' });
  clear(main, h('div', { class: 'card narrow' },
    h('h1', {}, 'Accept an invitation'),
    token ? form('Accept the invitation', [
      field('Your name', name, 'For a new account; leave empty if you have one.'),
      field('Password', password, 'Your account’s password, or the first password of a new account.'),
    ], 'Accept and sign in', async (v) => {
      await api('POST', '/v1/auth/accept', { body: { token, password: v.password, name: v.name || undefined }, quiet: true });
      history.replaceState(null, '', '/admin');
      state.session = null;
      render();
    }, 'stack') : h('p', { role: 'alert' }, 'This link carries no invitation. Ask for a new one.')));
}

// ---- a tenant's pages ------------------------------------------------------------------------

async function overviewPage(main) {
  const t = state.tenant;
  const today = new Date();
  const from = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate() - 29));
  const to = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate() + 1));
  const day = (d) => d.toISOString().slice(0, 10);
  const [month, days] = await Promise.all([
    api('GET', '/v1/usage', { tenant: t }),
    api('GET', `/v1/usage?from=${day(from)}&to=${day(to)}&granularity=day`, { tenant: t }),
  ]);
  const u = month.usage;
  const l = month.limits;
  const meter = (label, used, limit, fmt) => h('div', { class: 'meter' },
    h('div', { class: 'meter-head' }, h('span', {}, label), h('span', {}, `${fmt(used)} of ${fmt(limit)}`)),
    limit === null ? h('div', { class: 'muted' }, 'no limit')
      : h('progress', { max: String(limit || 1), value: String(Math.min(used, limit)), 'aria-label': `${label}: ${fmt(used)} of ${fmt(limit)}` }));
  append(main,
    h('p', { class: 'muted' }, `Tier ${month.tier} · this month ${when(month.period.from).slice(0, 10)} to ${when(month.period.to).slice(0, 10)}`),
    h('section', { class: 'meters', 'aria-label': 'Use against limits' },
      meter('Storage', u.storage_bytes, l.max_storage_bytes, bytes),
      meter('Files', u.files, l.max_files, count),
      meter('Keys', u.keys, l.max_keys, count),
      meter('API calls this month', u.api_calls, l.max_api_calls_month, count)),
    h('h2', {}, 'API calls per day, last 30 days'),
    usageChart(days.series || [], from),
    h('dl', { class: 'facts' },
      h('dt', {}, 'Reads'), h('dd', {}, count(u.reads)),
      h('dt', {}, 'Writes'), h('dd', {}, count(u.writes)),
      h('dt', {}, 'Searches'), h('dd', {}, count(u.searches)),
      h('dt', {}, 'Bytes in / out'), h('dd', {}, `${bytes(u.bytes_in)} / ${bytes(u.bytes_out)}`)));
}

/** A bar chart of API calls per day (an SVG drawn with DOM calls), with a text summary. */
function usageChart(series, from) {
  const byDay = new Map(series.map((p) => [p.period, p.api_calls]));
  const days = [];
  for (let i = 0; i < 30; i += 1) {
    const d = new Date(from.getTime() + i * 86400000).toISOString().slice(0, 10);
    days.push([d, byDay.get(d) || 0]);
  }
  const most = Math.max(1, ...days.map(([, n]) => n));
  const total = days.reduce((s, [, n]) => s + n, 0);
  const W = 600;
  const H = 140;
  const bar = W / days.length;
  const chart = svg('svg', { viewBox: `0 0 ${W} ${H + 20}`, class: 'chart', role: 'img', 'aria-label': `API calls per day: ${total} in the last 30 days, at most ${most === 1 && total === 0 ? 0 : most} in a day` },
    days.map(([d, n], i) => {
      const height = Math.round((n / most) * H);
      return svg('rect', { x: (i * bar + 1).toFixed(1), y: H - height, width: (bar - 2).toFixed(1), height, class: 'bar' }, svg('title', {}, `${d}: ${n} calls`));
    }),
    svg('text', { x: 0, y: H + 16, class: 'axis' }, days[0][0]),
    svg('text', { x: W, y: H + 16, class: 'axis end' }, days[days.length - 1][0]));
  return h('figure', { class: 'chart-box' }, chart);
}

async function filesPage(main, params) {
  const t = state.tenant;
  const prefix = params.get('prefix') || '/';
  const listing = await api('GET', `/v1/files?prefix=${encodeURIComponent(prefix)}&delimiter=/&limit=1000`, { tenant: t });
  const crumbs = [h('a', { href: `${tenantUrl(t, 'files')}?prefix=/` }, 'root')];
  let at = '/';
  for (const part of prefix.split('/').filter(Boolean)) {
    at += `${part}/`;
    crumbs.push(' / ', h('a', { href: `${tenantUrl(t, 'files')}?prefix=${encodeURIComponent(at)}` }, part));
  }
  const reload = () => go(`${tenantUrl(t, 'files')}?prefix=${encodeURIComponent(prefix)}`, true);
  const upload = h('input', { type: 'file', name: 'file', multiple: true, required: true });
  append(main,
    h('nav', { class: 'crumbs', 'aria-label': 'Folder' }, crumbs),
    can('writer') ? form('Upload files', [field(`Upload into ${prefix}`, upload)], 'Upload', async () => {
      for (const file of upload.files) {
        await api('PUT', `/v1/files${pathUrl(prefix + file.name)}`, { tenant: t, raw: file, contentType: file.type || 'application/octet-stream' });
      }
      toast(`Uploaded ${upload.files.length} file(s)`);
      reload();
    }) : null,
    table('Files and folders', [
      ['Name', (e) => (e.kind === 'folder'
        ? h('a', { href: `${tenantUrl(t, 'files')}?prefix=${encodeURIComponent(e.path)}`, class: 'folder' }, e.path.slice(prefix.length))
        : h('a', { href: `/t/${encodeURIComponent(t)}/v1/files${pathUrl(e.path)}`, download: e.path.split('/').pop() }, e.path.slice(prefix.length)))],
      ['Size', (e) => (e.kind === 'folder' ? '—' : bytes(e.size))],
      ['Type', (e) => (e.kind === 'folder' ? 'folder' : e.content_type || '')],
      ['Updated', (e) => (e.kind === 'folder' ? '' : when(e.updated_at))],
      ['', (e) => (e.kind === 'file' && can('writer') ? h('button', {
        type: 'button', class: 'danger small', 'aria-label': `Delete ${e.path}`,
        onclick: async () => {
          if (!confirm(`Delete ${e.path}?`)) return;
          await api('DELETE', `/v1/files${pathUrl(e.path)}`, { tenant: t }).then(() => { toast(`Deleted ${e.path}`); reload(); }, (err) => toast(err.message, true));
        },
      }, 'Delete') : '')],
    ], listing.items, 'This folder is empty.'),
    listing.next_cursor ? h('p', { class: 'muted' }, 'More than 1,000 entries: the first 1,000 are shown.') : null);
}

async function memoryPage(main, params) {
  const t = state.tenant;
  const ns = params.get('ns') || '';
  const open = (v) => go(`${tenantUrl(t, 'memory')}?ns=${encodeURIComponent(v.namespace)}`);
  append(main, form('Open a namespace', [field('Namespace', h('input', { name: 'namespace', value: ns, required: true, placeholder: 'agent:researcher' }))], 'Open', open));
  if (!ns) return;
  const page = await api('GET', `/v1/memory/${encodeURIComponent(ns)}?limit=500`, { tenant: t });
  const reload = () => go(`${tenantUrl(t, 'memory')}?ns=${encodeURIComponent(ns)}`, true);
  append(main,
    h('h2', {}, `Namespace ${ns}`),
    can('writer') ? form('Set a value', [
      field('Key', h('input', { name: 'key', required: true })),
      field('Value (JSON)', h('input', { name: 'value', required: true, placeholder: '{"note": "..."}' })),
    ], 'Set', async (v) => {
      let value;
      try { value = JSON.parse(v.value); } catch (_) { throw new Error('The value is not JSON (a string needs quotes).'); }
      await api('PUT', `/v1/memory/${encodeURIComponent(ns)}/${pathUrl(v.key)}`, { tenant: t, body: value });
      reload();
    }) : null,
    table(`Memory in ${ns}`, [
      ['Key', (m) => m.key],
      ['Value', (m) => h('code', {}, JSON.stringify(m.value).slice(0, 200))],
      ['Updated', (m) => when(m.updated_at)],
      ['', (m) => (can('writer') ? h('button', {
        type: 'button', class: 'danger small', 'aria-label': `Delete ${m.key}`,
        onclick: () => api('DELETE', `/v1/memory/${encodeURIComponent(ns)}/${pathUrl(m.key)}`, { tenant: t }).then(reload, (e) => toast(e.message, true)),
      }, 'Delete') : '')],
    ], page.items, 'No values in this namespace.'));
}

/** A snippet from search: text with <mark> around the matches; only those become markup. */
function snippet(text) {
  const out = h('span', { class: 'snippet' });
  text.split(/(<mark>.*?<\/mark>)/).forEach((part) => {
    const m = part.match(/^<mark>(.*)<\/mark>$/);
    out.append(m ? h('mark', {}, m[1]) : document.createTextNode(part));
  });
  return out;
}

async function searchPage(main, params) {
  const t = state.tenant;
  const q = params.get('q') || '';
  append(main, form('Search', [field('Words', h('input', { name: 'q', type: 'search', value: q, required: true }))], 'Search',
    (v) => go(`${tenantUrl(t, 'search')}?q=${encodeURIComponent(v.q)}`)));
  if (!q) return;
  const found = await api('GET', `/v1/search?q=${encodeURIComponent(q)}&limit=50`, { tenant: t });
  append(main, h('h2', {}, `${found.items.length} result(s)`), h('ol', { class: 'results' }, found.items.map((r) => h('li', {},
    r.kind === 'file'
      ? h('a', { href: `/t/${encodeURIComponent(t)}/v1/files${pathUrl(r.path)}`, download: r.path.split('/').pop() }, r.path)
      : h('a', { href: `${tenantUrl(t, 'memory')}?ns=${encodeURIComponent(r.namespace)}` }, `${r.namespace} / ${r.key}`),
    ' ', h('span', { class: 'badge' }, r.kind), h('div', {}, snippet(r.snippet || ''))))));
}

function eventsPage(main) {
  const list = h('ol', { class: 'events', 'aria-live': 'polite', 'aria-label': 'Events as they happen' });
  const status = h('p', { class: 'muted' }, 'Connecting…');
  append(main, h('p', {}, 'Every change in this tenant, as it happens (newest first).'), status, list);
  const stream = new EventSource(`/t/${encodeURIComponent(state.tenant)}/v1/events`);
  state.stream = stream;
  stream.onopen = () => { status.textContent = 'Connected: waiting for events.'; };
  stream.onerror = () => {
    status.textContent = stream.readyState === EventSource.CLOSED
      ? 'The stream was refused (too many open streams for this tenant?); reload the page to try again.'
      : 'Disconnected; retrying…';
  };
  const shown = (msg) => {
    let e;
    try { e = JSON.parse(msg.data); } catch (_) { return; }
    const what = e.path || (e.namespace ? `${e.namespace} / ${e.key}` : '');
    list.prepend(h('li', {}, h('code', {}, `#${e.seq}`), ' ', h('strong', {}, e.type), ` ${what} `, h('span', { class: 'muted' }, `${e.actor} · ${when(e.at)}`)));
    while (list.children.length > 200) list.lastChild.remove();
  };
  // Each event is sent with its type as the SSE event name, which only a listener of that
  // name receives.
  for (const type of EVENT_TYPES) stream.addEventListener(type, shown);
  stream.onmessage = shown;
}

/** Every event type the server sends (API.md §7; tenantry-core `events::types`). */
const EVENT_TYPES = ['file.written', 'file.deleted', 'memory.set', 'memory.deleted', 'key.created', 'key.revoked',
  'member.added', 'member.updated', 'member.removed', 'tenant.suspended', 'tenant.resumed', 'tenant.imported',
  'webhook.created', 'webhook.deleted', 'quota.warning'];

const ROLES = ['reader', 'writer', 'admin', 'owner'];
const grantable = () => ROLES.filter((r) => can(r));

async function keysPage(main) {
  const t = state.tenant;
  const keys = await api('GET', '/v1/keys', { tenant: t });
  const secret = h('div', { class: 'secret', hidden: true, role: 'status' });
  const reload = async () => { const m = byId('main'); await show(m, 'Keys', keysPage); };
  append(main,
    form('Create a key', [
      field('Name', h('input', { name: 'name', required: true, maxlength: 200 })),
      field('Role', select('role', grantable(), 'reader')),
      field('Path prefix', h('input', { name: 'prefix', placeholder: '/docs/ (optional)' })),
    ], 'Create key', async (v) => {
      const made = await api('POST', '/v1/keys', { tenant: t, body: { name: v.name, role: v.role, prefix: v.prefix || undefined } });
      await reload();
      const box = byId('main').querySelector('.secret');
      box.hidden = false;
      clear(box, h('p', {}, h('strong', {}, `Key "${made.name}" created.`), ' Copy its secret now: it is shown only once.'),
        h('code', { class: 'key-secret' }, made.key));
    }),
    secret,
    table('Keys', [
      ['Name', (k) => k.name],
      ['Id', (k) => h('code', {}, k.id)],
      ['Role', (k) => k.role],
      ['Prefix', (k) => k.prefix || 'whole tenant'],
      ['Created', (k) => when(k.created_at)],
      ['Status', (k) => (k.revoked_at ? `revoked ${when(k.revoked_at)}` : k.expires_at ? `expires ${when(k.expires_at)}` : 'active')],
      ['', (k) => (!k.revoked_at && (k.role !== 'owner' || can('owner')) ? h('button', {
        type: 'button', class: 'danger small', 'aria-label': `Revoke ${k.name}`,
        onclick: async () => {
          if (!confirm(`Revoke the key "${k.name}"? Anything using it stops at once.`)) return;
          await api('DELETE', `/v1/keys/${encodeURIComponent(k.id)}`, { tenant: t }).then(async () => { await reload(); toast(`Revoked ${k.name}`); }, (e) => toast(e.message, true));
        },
      }, 'Revoke') : '')],
    ], keys.items));
}

async function membersPage(main) {
  const t = state.tenant;
  const list = await api('GET', '/v1/members', { tenant: t });
  const reload = async () => { await show(byId('main'), 'Members', membersPage); };
  append(main,
    form('Invite a member', [
      field('Email', h('input', { name: 'email', type: 'email', required: true })),
      field('Role', select('role', grantable(), 'reader')),
    ], 'Invite', async (v) => {
      const made = await api('POST', '/v1/members', { tenant: t, body: { email: v.email, role: v.role } });
      await reload();
      const box = byId('main').querySelector('.secret');
      box.hidden = false;
      if (made.invitation) {
        const link = `${location.origin}/admin/accept#token=${encodeURIComponent(made.invitation.token)}`;
        clear(box, h('p', {}, h('strong', {}, `Invitation for ${made.email} made.`), ` Send them this link (shown only once; valid until ${when(made.invitation.expires_at)}):`),
          h('code', { class: 'invite-link' }, link));
      } else {
        clear(box, h('p', {}, `${made.email} is now a member (${made.role}).`));
      }
    }),
    h('div', { class: 'secret', hidden: true, role: 'status' }),
    table('Members', [
      ['Email', (m) => m.email],
      ['Name', (m) => m.name],
      ['Role', (m) => {
        if (m.role === 'owner' && !can('owner')) return m.role;
        const s = select('role', grantable().includes(m.role) ? grantable() : [m.role, ...grantable()], m.role);
        s.setAttribute('aria-label', `Role of ${m.email}`);
        s.addEventListener('change', () => api('PATCH', `/v1/members/${encodeURIComponent(m.user_id)}`, { tenant: t, body: { role: s.value } })
          .then(() => { m.role = s.value; toast(`${m.email} is now ${s.value}`); }, (e) => { toast(e.message, true); s.value = m.role; }));
        return s;
      }],
      ['Since', (m) => when(m.created_at)],
      ['', (m) => (m.role !== 'owner' || can('owner') ? h('button', {
        type: 'button', class: 'danger small', 'aria-label': `Remove ${m.email}`,
        onclick: async () => {
          if (!confirm(`Remove ${m.email} from ${t}? Their access ends at once.`)) return;
          await api('DELETE', `/v1/members/${encodeURIComponent(m.user_id)}`, { tenant: t }).then(reload, (e) => toast(e.message, true));
        },
      }, 'Remove') : '')],
    ], list.items, 'No members yet.'),
    h('h2', {}, 'Invitations not accepted yet'),
    table('Invitations', [
      ['Email', (i) => i.email],
      ['Role', (i) => i.role],
      ['Expires', (i) => when(i.expires_at)],
      ['', (i) => h('button', {
        type: 'button', class: 'danger small', 'aria-label': `Withdraw the invitation of ${i.email}`,
        onclick: () => api('DELETE', `/v1/invitations/${encodeURIComponent(i.id)}`, { tenant: t }).then(reload, (e) => toast(e.message, true)),
      }, 'Withdraw')],
    ], list.invitations, 'No open invitations.'));
}

async function webhooksPage(main, params) {
  const t = state.tenant;
  const hooks = await api('GET', '/v1/webhooks', { tenant: t });
  const reload = () => go(tenantUrl(t, 'webhooks'), true);
  append(main,
    form('Add a webhook', [
      field('URL', h('input', { name: 'url', type: 'url', required: true, placeholder: 'https://example.com/hook' })),
      field('Events', h('input', { name: 'events', required: true, value: 'file.written', placeholder: 'file.written, memory.set' })),
      field('Path glob', h('input', { name: 'path_glob', placeholder: '/uploads/*.csv (optional)' })),
    ], 'Add webhook', async (v) => {
      const events = v.events.split(',').map((s) => s.trim()).filter(Boolean);
      const made = await api('POST', '/v1/webhooks', { tenant: t, body: { url: v.url, events, path_glob: v.path_glob || undefined } });
      await show(byId('main'), 'Webhooks', (m) => webhooksPage(m, new URLSearchParams()));
      const box = byId('main').querySelector('.secret');
      box.hidden = false;
      clear(box, h('p', {}, h('strong', {}, `Webhook to ${made.url} added.`), ' Its signing secret (shown only once; deliveries carry Tenantry-Signature made with it):'),
        h('code', { class: 'key-secret' }, made.secret));
    }),
    h('div', { class: 'secret', hidden: true, role: 'status' }),
    table('Webhooks', [
      ['URL', (w) => w.url],
      ['Events', (w) => w.events.join(', ')],
      ['Path glob', (w) => w.path_glob || 'any'],
      ['State', (w) => (w.enabled ? 'enabled' : `disabled${w.disabled_reason ? `: ${w.disabled_reason}` : ''}`)],
      ['', (w) => [h('a', { href: `${tenantUrl(t, 'webhooks')}?deliveries=${encodeURIComponent(w.id)}` }, 'Deliveries'), ' ',
        h('button', {
          type: 'button', class: 'danger small', 'aria-label': `Delete the webhook to ${w.url}`,
          onclick: async () => {
            if (!confirm(`Delete the webhook to ${w.url}?`)) return;
            await api('DELETE', `/v1/webhooks/${encodeURIComponent(w.id)}`, { tenant: t }).then(reload, (e) => toast(e.message, true));
          },
        }, 'Delete')]],
    ], hooks.items, 'No webhooks.'));
  const id = params.get('deliveries');
  if (id) {
    const log = await api('GET', `/v1/webhooks/${encodeURIComponent(id)}/deliveries`, { tenant: t });
    append(main, h('h2', {}, 'Delivery log'), table('Deliveries', [
      ['At', (d) => when(d.at)], ['Event', (d) => `#${d.event_seq} ${d.event_type}`], ['Attempt', (d) => d.attempt],
      ['Outcome', (d) => d.outcome], ['Status', (d) => d.status ?? '—'], ['Latency', (d) => `${d.latency_ms} ms`], ['Error', (d) => d.error || ''],
    ], log.items, 'No deliveries yet.'));
  }
}

async function auditPage(main, params) {
  const t = state.tenant;
  const action = params.get('action') || '';
  const result = h('div', { role: 'status' });
  const entries = [];
  const body = h('div');
  let after = '';
  const more = h('button', { type: 'button' }, 'Load more');
  const load = async () => {
    const page = await api('GET', `/v1/audit?limit=100${after ? `&after=${encodeURIComponent(after)}` : ''}${action ? `&action=${encodeURIComponent(action)}` : ''}`, { tenant: t });
    entries.push(...page.items);
    after = page.next_cursor || '';
    more.hidden = !page.next_cursor;
    clear(body, table('Audit entries', [
      ['Seq', (e) => e.seq], ['At', (e) => when(e.at)], ['Actor', (e) => e.actor], ['Action', (e) => e.action],
      ['Target', (e) => e.target], ['Result', (e) => e.result], ['IP', (e) => e.ip || ''],
    ], entries, 'No entries.'));
  };
  more.addEventListener('click', () => load().catch((e) => toast(e.message, true)));
  append(main,
    form('Filter the audit log', [field('Action', h('input', { name: 'action', value: action, placeholder: 'file.write' }))], 'Filter',
      (v) => go(`${tenantUrl(t, 'audit')}${v.action ? `?action=${encodeURIComponent(v.action)}` : ''}`)),
    h('button', {
      type: 'button', onclick: async () => {
        let v;
        try { v = await api('GET', '/v1/audit/verify', { tenant: t }); } catch (e) { toast(e.message, true); return; }
        clear(result, h('p', { class: v.ok ? 'ok' : 'form-error' }, v.ok
          ? `The chain verifies: ${v.entries} entries, none altered.`
          : `The chain is broken at entry ${v.first_broken_seq}: ${v.reason}`));
      },
    }, 'Verify the chain'),
    result, body, more);
  await load();
}

async function settingsPage(main) {
  const slug = state.tenant;
  const t = await api('GET', `/v1/tenants/${encodeURIComponent(slug)}`);
  const move = await api('GET', `/v1/tenants/${encodeURIComponent(slug)}/move`);
  const reload = () => show(byId('main'), 'Settings', settingsPage);
  const act = (what, method, path, warning) => h('button', {
    type: 'button', class: warning ? 'danger' : '',
    onclick: () => {
      if (warning && !confirm(warning)) return;
      api(method, path).then(() => { toast(`${what}: done`); reload(); }, (e) => toast(e.message, true));
    },
  }, what);
  const archiveWarning = `Archive ${slug}? Its keys and members stop working until it is restored.`;
  const base = `/v1/tenants/${encodeURIComponent(slug)}`;
  const lifecycle = {
    active: [act('Suspend', 'POST', `${base}/suspend`), act('Archive', 'DELETE', base, archiveWarning)],
    suspended: [act('Resume', 'POST', `${base}/resume`), act('Archive', 'DELETE', base, archiveWarning)],
    archived: [act('Restore', 'POST', `${base}/restore`)],
  }[t.status];
  const quotas = Object.keys(t.limits).filter((k) => typeof t.limits[k] !== 'boolean');
  append(main,
    h('dl', { class: 'facts' },
      h('dt', {}, 'Name'), h('dd', {}, t.name), h('dt', {}, 'Id'), h('dd', {}, h('code', {}, t.id)),
      h('dt', {}, 'Status'), h('dd', {}, t.status), h('dt', {}, 'Tier'), h('dd', {}, t.tier),
      h('dt', {}, 'Placement'), h('dd', {}, t.placement), h('dt', {}, 'Created'), h('dd', {}, when(t.created_at))),
    h('h2', {}, 'Lifecycle'), h('div', { class: 'row' }, lifecycle),
    h('h2', {}, 'Tier and quotas'),
    form('Change the tier', [field('Tier', h('input', { name: 'tier', value: t.tier, list: 'tiers', required: true })),
      h('datalist', { id: 'tiers' }, ['free', 'starter', 'pro', 'enterprise'].map((x) => h('option', { value: x })))],
    'Change tier', async (v) => { await api('PATCH', base, { body: { tier: v.tier } }); toast(`Tier is now ${v.tier}`); reload(); }),
    form('Quota overrides', quotas.map((k) => field(k, h('input', { name: k, inputmode: 'numeric', value: t.quotas[k] === undefined ? '' : t.quotas[k] === null ? 'unlimited' : t.quotas[k], placeholder: `tier: ${t.limits[k] === null ? 'unlimited' : t.limits[k]}` }))),
    'Save quotas', async (v) => {
      // The overrides are replaced as a whole: the feature switches (not edited here) are kept.
      const q = Object.fromEntries(Object.entries(t.quotas).filter(([, x]) => typeof x === 'boolean'));
      for (const [k, raw] of Object.entries(v)) {
        const s = raw.trim();
        if (s === '') continue;
        if (s === 'unlimited') { q[k] = null; continue; }
        if (!/^\d+$/.test(s)) throw new Error(`${k}: a whole number, "unlimited", or empty for the tier's value`);
        q[k] = Number(s);
      }
      await api('PATCH', base, { body: { quotas: q } });
      toast('Quotas saved');
      reload();
    }, 'grid'),
    h('h2', {}, 'Placement'),
    moveControl(slug, t, move),
    t.status === 'archived' ? purgeControl(slug) : h('p', { class: 'muted' }, 'Purging erases a tenant for good; archive it first.'));
}

function moveControl(slug, t, move) {
  const progress = h('div', { role: 'status' });
  const poll = async () => {
    const m = await api('GET', `/v1/tenants/${encodeURIComponent(slug)}/move`);
    if (!m.moving) {
      clear(progress, h('p', {}, `Placement: ${m.placement}.`));
      return;
    }
    clear(progress, h('p', {}, `Moving to ${m.placement === 'shared' ? 'dedicated' : 'shared'}: ${bytes(m.copied_bytes)} of ${bytes(m.total_bytes)}`),
      h('progress', { max: String(m.total_bytes || 1), value: String(m.copied_bytes), 'aria-label': 'Move progress' }));
    setTimeout(() => { if (byId('main').contains(progress)) poll().catch(() => {}); }, 1000);
  };
  const other = t.placement === 'shared' ? 'dedicated' : 'shared';
  // The POST answers when the move is done: its progress is polled meanwhile.
  const f = form('Move the tenant', [], `Move to ${other}`, async () => {
    const moving = api('POST', `/v1/tenants/${encodeURIComponent(slug)}/move`, { body: { placement: other } });
    setTimeout(() => poll().catch(() => {}), 300);
    await moving;
    toast(`${slug} moved to ${other}`);
    show(byId('main'), 'Settings', settingsPage);
  });
  if (move.moving) poll();
  else clear(progress, h('p', {}, `Placement: ${move.placement}.`));
  return h('div', {}, progress, f);
}

function purgeControl(slug) {
  const typed = h('input', { name: 'confirm', autocomplete: 'off', required: true });
  return h('section', { class: 'danger-zone', 'aria-label': 'Purge' },
    h('h2', {}, 'Purge'),
    h('p', {}, 'Erases every file, value, key and log of this tenant, for good.'),
    form('Purge the tenant', [field(`Type ${slug} to confirm`, typed)], 'Purge for good', async (v) => {
      if (v.confirm !== slug) throw new Error(`Type the slug "${slug}" exactly to confirm.`);
      await api('DELETE', `/v1/tenants/${encodeURIComponent(slug)}?purge=true`);
      toast(`${slug} purged`);
      state.session = null;
      go('/admin/tenants');
    }));
}

// ---- the operator's pages -------------------------------------------------------------------

async function tenantsPage(main, params) {
  const q = params.get('q') || '';
  const status = params.get('status') || '';
  const cursor = params.get('cursor') || '';
  const query = new URLSearchParams({ limit: '50' });
  if (q) query.set('q', q);
  if (status) query.set('status', status);
  if (cursor) query.set('cursor', cursor);
  const page = await api('GET', `/v1/tenants?${query}`);
  const made = h('div', { class: 'secret', hidden: true, role: 'status' });
  // Each tenant's use this month, asked for once the page is drawn (one call per row shown).
  const use = new Map(page.items.map((t) => [t.slug, h('span', { class: 'muted use' }, '…')]));
  setTimeout(() => {
    for (const t of page.items) {
      api('GET', `/v1/tenants/${encodeURIComponent(t.slug)}/usage`, { quiet: true }).then((r) => {
        clear(use.get(t.slug), `${bytes(r.usage.storage_bytes)} · ${count(r.usage.files)} files · ${count(r.usage.api_calls)} calls`);
      }, () => clear(use.get(t.slug), '—'));
    }
  }, 0);
  const statusSelect = h('select', { name: 'status' }, ['', 'active', 'suspended', 'archived'].map((s) => h('option', { value: s, selected: s === status }, s || 'any')));
  append(main,
    form('Find tenants', [
      field('Slug or name contains', h('input', { name: 'q', type: 'search', value: q })),
      field('Status', statusSelect),
    ], 'Find', (v) => {
      const p = new URLSearchParams();
      if (v.q) p.set('q', v.q);
      if (v.status) p.set('status', v.status);
      go(`/admin/tenants${p.toString() ? `?${p}` : ''}`);
    }),
    table('Tenants', [
      ['Slug', (t) => h('a', { href: tenantUrl(t.slug, t.status === 'archived' ? 'settings' : '') }, t.slug)],
      ['Name', (t) => t.name],
      ['Status', (t) => t.status],
      ['Tier', (t) => t.tier],
      ['Placement', (t) => t.placement],
      ['Use this month', (t) => use.get(t.slug)],
      ['Limits', (t) => `${bytes(t.limits.max_storage_bytes)} · ${count(t.limits.max_files)} files`],
      ['', (t) => h('a', { href: tenantUrl(t.slug, 'settings') }, 'Settings')],
    ], page.items, 'No tenant matches.'),
    page.next_cursor ? h('p', {}, h('a', { href: `/admin/tenants?${new URLSearchParams({ ...(q && { q }), ...(status && { status }), cursor: page.next_cursor })}` }, 'Next page')) : null,
    h('h2', {}, 'Create a tenant'),
    form('Create a tenant', [
      field('Slug', h('input', { name: 'slug', required: true, pattern: '[a-z0-9][a-z0-9-]*', maxlength: 63 })),
      field('Name', h('input', { name: 'name' })),
      field('Tier', h('input', { name: 'tier', list: 'tiers-new', placeholder: 'the default tier' })),
      h('datalist', { id: 'tiers-new' }, ['free', 'starter', 'pro', 'enterprise'].map((x) => h('option', { value: x }))),
    ], 'Create tenant', async (v) => {
      const created = await api('POST', '/v1/tenants', { body: { slug: v.slug, name: v.name || undefined, tier: v.tier || undefined } });
      made.hidden = false;
      clear(made, h('p', {}, h('strong', {}, `Tenant ${created.slug} created.`), ' Its owner key (shown only once):'),
        h('code', { class: 'key-secret' }, created.owner_key), h('p', {}, h('a', { href: tenantUrl(created.slug) }, `Open ${created.slug}`)));
    }),
    made);
}

async function usersPage(main) {
  const users = await api('GET', '/v1/users?limit=1000');
  append(main,
    form('Create a user', [
      field('Email', h('input', { name: 'email', type: 'email', required: true })),
      field('Name', h('input', { name: 'name' })),
      field('Password', h('input', { name: 'password', type: 'password', autocomplete: 'new-password', minlength: 8 })),
      field('Super-admin', h('select', { name: 'super_admin' }, h('option', { value: 'no' }, 'no'), h('option', { value: 'yes' }, 'yes'))),
    ], 'Create user', async (v) => {
      await api('POST', '/v1/users', { body: { email: v.email, name: v.name || undefined, password: v.password || undefined, super_admin: v.super_admin === 'yes' } });
      show(byId('main'), 'Users', usersPage);
    }),
    table('Users', [
      ['Email', (u) => u.email], ['Name', (u) => u.name], ['Super-admin', (u) => (u.super_admin ? 'yes' : 'no')],
      ['Password', (u) => (u.has_password ? 'set' : 'not set')], ['State', (u) => (u.disabled ? 'disabled' : 'active')],
      ['Created', (u) => when(u.created_at)],
      ['', (u) => (u.id === state.session.user.id ? '' : h('button', {
        type: 'button', class: u.disabled ? 'small' : 'danger small', 'aria-label': `${u.disabled ? 'Enable' : 'Disable'} ${u.email}`,
        onclick: async () => {
          if (!u.disabled && !confirm(`Disable ${u.email}? Their sessions end at once.`)) return;
          await api('PATCH', `/v1/users/${encodeURIComponent(u.id)}`, { body: { disabled: !u.disabled } })
            .then(() => show(byId('main'), 'Users', usersPage), (e) => toast(e.message, true));
        },
      }, u.disabled ? 'Enable' : 'Disable'))],
    ], users.items, 'No users yet.'));
}

render();
