// Releases with the Build Queue on top, and one build's page (results, work-item links, history).
import { gql, live, subscribe, can } from './api.js';
import { h, field, errorBox, act, when, shortSha, reasonText, title } from './ui.js';

const PAGE = 25;

/** Everything the page's forms choose from: active releases and projects, read once per page view. */
async function choices() {
  const [active, projects] = await Promise.all([gql('ActiveReleases'), gql('ProjectList')]);
  return {
    releases: active.releases.edges.map((e) => e.node),
    projects: projects.projects.filter((p) => !p.archivedAt),
  };
}

function releaseSelect(releases, projectId, label = 'Release') {
  const usable = projectId ? releases.filter((r) => r.projectId === projectId) : releases;
  const select = h('select', { name: 'release' },
    usable.map((r) => h('option', { value: r.id }, `${r.project?.name ?? ''} · ${r.name}`)));
  if (!usable.length) select.append(h('option', { value: '' }, 'No active release'));
  return field(label, select);
}

export async function releasesPage(main, alive) {
  main.replaceChildren(title('Releases'));
  const picks = await choices();
  const queueSection = h('section', { 'aria-labelledby': 'queue-h', class: 'queue' });
  const releaseSection = h('section', { 'aria-labelledby': 'rel-h' });
  main.append(queueSection, releaseSection);
  const stopQueue = buildQueue(queueSection, picks, alive, () => releases.refresh());
  const releases = releaseList(releaseSection, picks, alive);
  return () => { stopQueue(); releases.stop(); };
}

/** The Build Queue: pending builds, a page at a time, updated live while nobody is typing in it. */
function buildQueue(section, picks, alive, changed) {
  const cursors = [null];
  const selected = new Set();
  let rows = [];
  let busy = false;
  let lastSeen = null;
  const heading = h('h2', { id: 'queue-h' }, 'Build Queue');
  const status = h('p', { class: 'muted', 'aria-live': 'polite' }, 'Reading the queue…');
  const tbody = h('tbody');
  const pager = h('nav', { class: 'pager', 'aria-label': 'Queue pages' });
  const bulk = bulkBar();
  const table = h('table', { class: 'grid' },
    h('caption', { class: 'sr-only' }, 'Builds waiting for a person'),
    h('thead', {}, h('tr', {},
      h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Select')),
      ['Build', 'Source', 'Project', 'Branch · commit', 'Received', 'Why queued', 'Actions']
        .map((t) => h('th', { scope: 'col' }, t)))),
    tbody);
  const wrap = h('div', { class: 'scroll', hidden: true }, table);
  section.replaceChildren(heading, status, bulk, wrap, pager);

  const editing = () => busy || section.querySelector('.inline') !== null;

  function render(data, error) {
    if (error) { status.textContent = `The queue could not be read: ${error.message}`; return; }
    if (editing()) return;
    const conn = data.buildQueue;
    // Unchanged data is not drawn again: a redraw would take the keyboard focus from the row a person is on.
    const seen = JSON.stringify(conn);
    if (seen === lastSeen) return;
    lastSeen = seen;
    rows = conn.edges.map((e) => e.node);
    for (const id of [...selected]) if (!rows.some((r) => r.id === id)) selected.delete(id);
    const page = cursors.length;
    const pages = Math.max(1, Math.ceil(conn.totalCount / PAGE));
    heading.textContent = conn.totalCount ? `Build Queue (${conn.totalCount.toLocaleString()})` : 'Build Queue';
    status.textContent = rows.length
      ? `${conn.totalCount.toLocaleString()} pending; page ${page} of ${pages.toLocaleString()}.`
      : (page > 1 ? 'No more pending builds.' : 'No builds are waiting. New deliveries appear here by themselves.');
    tbody.replaceChildren(...rows.map(row));
    wrap.hidden = rows.length === 0;
    pager.hidden = page === 1 && !conn.pageInfo.hasNextPage;
    pager.replaceChildren(
      h('button', { type: 'button', disabled: page === 1, onclick: () => { cursors.pop(); refresh(); } }, 'Previous page'),
      h('button', { type: 'button', disabled: !conn.pageInfo.hasNextPage,
        onclick: () => { cursors.push(conn.pageInfo.endCursor); refresh(); } }, 'Next page'));
    bulk.update();
    // For bench/console.sh: when the first page of the queue is on screen.
    if (!performance.getEntriesByName('lathe:queue-shown').length) performance.mark('lathe:queue-shown');
  }

  function row(b) {
    const box = h('input', { type: 'checkbox', 'aria-label': `Select ${b.buildName}`, checked: selected.has(b.id),
      onchange: (e) => { e.target.checked ? selected.add(b.id) : selected.delete(b.id); bulk.update(); } });
    const actions = h('td', { class: 'actions' });
    const tr = h('tr', { dataset: { id: b.id } },
      h('td', {}, box),
      h('th', { scope: 'row' }, b.url ? h('a', { href: b.url, rel: 'noreferrer' }, b.buildName) : b.buildName),
      h('td', {}, b.source),
      h('td', {}, b.project?.name ?? h('em', {}, 'not detected')),
      h('td', {}, b.branch ?? '—', h('br'), h('code', {}, shortSha(b.commitSha))),
      h('td', {}, when(b.receivedAt)),
      h('td', {}, reasonText(b.reason)),
      actions);
    if (can('builds:assign')) {
      actions.append(
        h('button', { type: 'button', onclick: () => assignForm(b, actions) }, 'Assign to release'),
        h('button', { type: 'button', onclick: () => projectForm(b, actions) }, 'Select project'),
        h('button', { type: 'button', class: 'danger', onclick: () => rejectForm(b, actions) }, 'Reject'));
    }
    return tr;
  }

  function inline(actions, label, fields, submitText, run) {
    actions.querySelector('.inline')?.remove();
    const error = errorBox();
    const submit = h('button', { type: 'submit' }, submitText);
    const form = h('form', { class: 'inline', 'aria-label': label }, fields, submit,
      h('button', { type: 'button', onclick: () => { form.remove(); refresh(); } }, 'Cancel'), error);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const done = await act(submit, error, () => run(new FormData(form)));
      if (done) { form.remove(); refresh(); changed(); }
    });
    actions.append(form);
    form.querySelector('select, input')?.focus();
  }

  const assignForm = (b, actions) => inline(actions, `Assign ${b.buildName}`,
    releaseSelect(picks.releases, b.project?.id), 'Assign',
    async (data) => {
      const releaseId = data.get('release');
      if (!releaseId) throw new Error('Choose a release (create one below if the project has none).');
      await gql('AssignBuild', { id: b.id, releaseId });
      return true;
    });

  const projectForm = (b, actions) => inline(actions, `Select a project for ${b.buildName}`,
    field('Project', h('select', { name: 'project' },
      picks.projects.map((p) => h('option', { value: p.id, selected: p.id === b.project?.id }, p.name)))),
    'Select project',
    async (data) => {
      const result = await gql('SelectProject', { id: b.id, projectId: data.get('project') });
      b.project = result.selectProjectForQueuedBuild.project;
      // Then assign: the release form for the project just chosen.
      setTimeout(() => assignForm(b, actions));
      return false;
    });

  const rejectForm = (b, actions) => inline(actions, `Reject ${b.buildName}`,
    field('Reason', h('input', { name: 'reason', required: true, maxlength: 500 })), 'Reject',
    async (data) => { await gql('RejectBuild', { id: b.id, reason: data.get('reason') }); return true; });

  function bulkBar() {
    if (!can('builds:assign')) return Object.assign(h('div', { hidden: true }), { update() {} });
    const count = h('span', { 'aria-live': 'polite' });
    const error = errorBox();
    const release = h('select', { name: 'bulk-release' },
      picks.releases.map((r) => h('option', { value: r.id }, `${r.project?.name ?? ''} · ${r.name}`)));
    const reason = h('input', { name: 'bulk-reason', maxlength: 500 });
    const assign = h('button', { type: 'button' }, 'Assign selected');
    const reject = h('button', { type: 'button', class: 'danger' }, 'Reject selected');
    const outcome = (list) => {
      const failed = list.filter((r) => !r.ok);
      if (failed.length) throw new Error(failed.map((r) => `${rows.find((x) => x.id === r.id)?.buildName ?? r.id}: ${r.message}`).join('; '));
    };
    const run = (button, fn) => async () => {
      busy = true;
      await act(button, error, async () => { await fn(); selected.clear(); });
      busy = false;
      refresh(); changed();
    };
    assign.addEventListener('click', run(assign, async () => {
      outcome((await gql('BulkAssign', { ids: [...selected], releaseId: release.value })).bulkAssignBuilds);
    }));
    reject.addEventListener('click', run(reject, async () => {
      if (!reason.value.trim()) throw new Error('Give a reason for rejecting.');
      outcome((await gql('BulkReject', { ids: [...selected], reason: reason.value })).bulkRejectBuilds);
    }));
    const bar = h('div', { class: 'bulk', role: 'group', 'aria-label': 'Selected builds' },
      count, field('Release', release), assign, field('Reason', reason), reject, error);
    bar.update = () => {
      bar.hidden = selected.size === 0 || !can('builds:assign');
      count.textContent = `${selected.size} selected`;
    };
    bar.update();
    return bar;
  }

  const variables = () => ({ first: PAGE, after: cursors[cursors.length - 1] });
  const refresh = async () => {
    lastSeen = null;
    try { render(await gql('Queue', variables()), null); } catch (error) { render(null, error); }
  };
  return live('Queue', variables, render, { everyMs: 1500, alive, subscription: 'QueueChanged' });
}

/** Releases of a project and status, each with its latest builds. */
function releaseList(section, picks, alive) {
  const project = h('select', { name: 'project' }, h('option', { value: '' }, 'All projects'),
    picks.projects.map((p) => h('option', { value: p.id }, p.name)));
  const statusSel = h('select', { name: 'status' },
    ['ACTIVE', 'COMPLETED', 'ARCHIVED'].map((s) => h('option', { value: s }, s.toLowerCase())));
  const list = h('div', { class: 'releases', 'aria-live': 'polite' });
  const error = errorBox();
  const pager = h('nav', { class: 'pager', 'aria-label': 'Release pages' });
  const cursors = [null];
  let lastSeen = null;
  const filters = h('div', { class: 'filters' }, field('Project', project), field('Status', statusSel));
  section.replaceChildren(h('h2', { id: 'rel-h' }, 'Releases'), filters, error, list, pager);
  if (can('releases:write')) section.insertBefore(newRelease(), list);

  async function refresh() {
    if (!alive() || section.querySelector('.inline')) return;
    try {
      const data = await gql('Releases', { projectId: project.value || null, status: statusSel.value, first: 10,
        after: cursors[cursors.length - 1] });
      error.show(null);
      const conn = data.releases;
      const seen = JSON.stringify(conn);
      if (seen === lastSeen) return;
      lastSeen = seen;
      list.replaceChildren(...(conn.edges.length ? conn.edges.map((e) => release(e.node))
        : [h('p', { class: 'muted' }, 'No releases here.')]));
      pager.replaceChildren(
        h('button', { type: 'button', disabled: cursors.length === 1, onclick: () => { cursors.pop(); refresh(); } }, 'Previous releases'),
        h('button', { type: 'button', disabled: !conn.pageInfo.hasNextPage,
          onclick: () => { cursors.push(conn.pageInfo.endCursor); refresh(); } }, 'More releases'));
    } catch (e) { error.show(e); }
  }
  for (const el of [project, statusSel]) el.addEventListener('change', () => { cursors.length = 1; refresh(); });

  function newRelease() {
    const err = errorBox();
    const p = h('select', { name: 'project' }, picks.projects.map((x) => h('option', { value: x.id }, x.name)));
    const name = h('input', { name: 'name', required: true, maxlength: 200 });
    const submit = h('button', { type: 'submit' }, 'Create release');
    const form = h('form', { class: 'row', 'aria-label': 'New release' }, field('Project', p), field('Name', name), submit, err);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      if (await act(submit, err, () => gql('CreateRelease', { projectId: p.value, name: name.value }))) {
        name.value = '';
        location.reload();
      }
    });
    return h('details', {}, h('summary', {}, 'New release'), form);
  }

  function release(r) {
    const builds = r.builds.edges.map((e) => e.node);
    const body = h('tbody', {}, builds.map((b) => buildRow(b, r)));
    const err = errorBox();
    const complete = can('releases:write') && r.status === 'ACTIVE'
      ? h('button', { type: 'button', class: 'secondary' }, `Complete ${r.name}`) : null;
    complete?.addEventListener('click', async () => {
      if (await act(complete, err, () => gql('CompleteRelease', { id: r.id }))) refresh();
    });
    return h('article', { class: 'release', dataset: { id: r.id } },
      h('h3', {}, `${r.project?.name ?? ''} · ${r.name}`, ' ', h('span', { class: `badge ${r.status.toLowerCase()}` }, r.status.toLowerCase())),
      complete, err,
      h('p', { class: 'muted' }, `${r.buildCount} build${r.buildCount === 1 ? '' : 's'} · created `, when(r.createdAt)),
      builds.length ? h('div', { class: 'scroll' }, h('table', { class: 'grid' },
        h('thead', {}, h('tr', {}, ['Build', 'Branch · commit', 'Added', 'Tests', 'Actions'].map((t) => h('th', { scope: 'col' }, t)))),
        body)) : null,
      r.builds.pageInfo.hasNextPage ? h('p', { class: 'muted' }, 'Showing the latest 10 builds.') : null);
  }

  function buildRow(b, r) {
    const s = b.testSummary;
    const actions = h('td', { class: 'actions' });
    if (can('builds:assign') && r.status === 'ACTIVE') {
      actions.append(
        h('button', { type: 'button', onclick: () => correction(actions, b, r, 'move') }, 'Move to another release'),
        h('button', { type: 'button', onclick: () => correction(actions, b, r, 'return') }, 'Return to queue'));
    }
    return h('tr', {},
      h('th', { scope: 'row' }, h('a', { href: `#/build/${b.id}` }, b.buildName)),
      h('td', {}, b.branch ?? '—', h('br'), h('code', {}, shortSha(b.commitSha))),
      h('td', {}, when(b.addedToReleaseAt ?? b.receivedAt)),
      h('td', {}, s.total ? `${s.passed} passed, ${s.failed} failed, ${s.skipped} skipped` : 'no results'),
      actions);
  }

  function correction(actions, b, r, kind) {
    actions.querySelector('.inline')?.remove();
    const err = errorBox();
    const reason = h('input', { name: 'reason', required: true, maxlength: 500 });
    const target = kind === 'move' ? releaseSelect(picks.releases.filter((x) => x.id !== r.id), null, 'Into release') : null;
    const submit = h('button', { type: 'submit' }, kind === 'move' ? 'Move' : 'Return to queue');
    const form = h('form', { class: 'inline', 'aria-label': `${kind === 'move' ? 'Move' : 'Return'} ${b.buildName}` },
      target, field('Reason', reason), submit,
      h('button', { type: 'button', onclick: () => form.remove() }, 'Cancel'), err);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const ok = await act(submit, err, () => (kind === 'move'
        ? gql('MoveBuild', { id: b.id, releaseId: form.querySelector('select').value, reason: reason.value })
        : gql('ReturnBuild', { id: b.id, reason: reason.value })));
      if (ok) { form.remove(); refresh(); }
    });
    actions.append(form);
    form.querySelector('select, input').focus();
  }

  // Live: a release that changes (a build joins or leaves it, it is completed) makes the list read again.
  let pending = null;
  const stop = subscribe('ReleaseChanged', () => ({}), () => {
    if (!alive()) { stop(); return; }
    pending ??= setTimeout(() => { pending = null; refresh(); }, 200);
  }, () => {});
  refresh();
  const timer = setInterval(() => (alive() ? refresh() : (clearInterval(timer), stop())), 30000);
  return { refresh, stop: () => { clearInterval(timer); clearTimeout(pending); stop(); } };
}

/** One build: summary, results (failures first, filter by status), work-item links, history. */
export async function buildPage(main, id) {
  main.replaceChildren(title('Build'));
  const error = errorBox();
  main.append(error);
  let build;
  try { build = (await gql('Build', { id })).build; } catch (e) { error.show(e); return; }
  if (!build) { error.show(new Error('No build with this id (it may have expired).')); return; }
  main.querySelector('h1').textContent = build.buildName;
  const s = build.testSummary;
  const dl = h('dl', { class: 'facts' });
  main.append(dl);
  dl.replaceChildren(...[
    ['Project', build.project?.name ?? '—'], ['Source', build.source], ['Branch', build.branch ?? '—'],
    ['Commit', build.commitSha ?? '—'], ['Result', build.result ?? '—'], ['Received', when(build.receivedAt)],
    ['Tests', `${s.total} total: ${s.passed} passed, ${s.failed} failed, ${s.skipped} skipped`],
  ].flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));

  const statusSel = h('select', { name: 'status' }, h('option', { value: '' }, 'All'),
    ['FAILED', 'PASSED', 'SKIPPED'].map((x) => h('option', { value: x }, x.toLowerCase())));
  const results = h('tbody');
  const order = { FAILED: 0, SKIPPED: 1, PASSED: 2 };
  const showResults = (list) => results.replaceChildren(...(list.length ? [] : [h('tr', {}, h('td', { colspan: 5 }, 'No test results.'))]), ...[...list].sort((a, b) => order[a.status] - order[b.status]).map((t) =>
    h('tr', {}, h('th', { scope: 'row' }, t.title), h('td', {}, h('span', { class: `badge ${t.status.toLowerCase()}` }, t.status.toLowerCase())),
      h('td', {}, t.durationMs == null ? '—' : `${t.durationMs} ms`), h('td', {}, t.errorMessage ?? ''),
      h('td', {}, t.workItem ? h('a', { href: t.workItem.url, rel: 'noreferrer' }, `#${t.workItem.id}`) : '—'))));
  showResults(build.testResults.edges.map((e) => e.node));
  statusSel.addEventListener('change', async () => {
    try { showResults((await gql('Build', { id, status: statusSel.value || null })).build.testResults.edges.map((e) => e.node)); }
    catch (e) { error.show(e); }
  });
  main.append(h('section', { 'aria-labelledby': 'res-h' }, h('h2', { id: 'res-h' }, 'Test results'),
    field('Show', statusSel),
    h('div', { class: 'scroll' }, h('table', { class: 'grid' },
      h('thead', {}, h('tr', {}, ['Test', 'Status', 'Duration', 'Error', 'Work item'].map((t) => h('th', { scope: 'col' }, t)))), results)),
    build.testResults.pageInfo.hasNextPage ? h('p', { class: 'muted' }, 'The first 100 results are shown.') : null));

  if (can('audit:read')) {
    const history = h('section', { 'aria-labelledby': 'hist-h' }, h('h2', { id: 'hist-h' }, 'History'));
    main.append(history);
    try {
      const hist = (await gql('BuildHistory', { id })).buildHistory;
      history.append(h('h3', {}, 'Deliveries'), h('ul', {}, hist.deliveries.map((d) =>
        h('li', {}, when(d.receivedAt), ` ${d.source}: ${d.outcome} (${d.httpStatus}) — ${d.message}`))),
      h('h3', {}, 'Events'), h('ol', {}, hist.events.edges.map(({ node: ev }) =>
        h('li', {}, when(ev.recordedAt), ` ${ev.eventType} by `, actorText(ev.actor)))));
    } catch (e) { history.append(h('p', { class: 'error' }, e.message)); }
  }
}

function actorText(actor) {
  if (actor.type === 'api_key') return `API key ${actor.apiKeyPrefix}…`;
  if (actor.type === 'organization_id') return 'organization id';
  return actor.type ?? 'unknown';
}
