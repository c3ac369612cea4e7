// Projects (with Integrations), API keys, the delivery log and the set-up guide.
import { gql, live, can, session } from './api.js';
import { h, field, errorBox, act, when, copyButton, lines, title } from './ui.js';

const num = (value) => (value === '' || value == null ? null : Number(value));

/** Projects: a list, and a form per project (or a new one) with branch filters, retention and Integrations. */
export async function projectsPage(main, projectId) {
  main.replaceChildren(title('Projects'));
  const error = errorBox();
  main.append(error);
  let projects;
  try { projects = (await gql('Projects')).projects; } catch (e) { error.show(e); return; }
  const list = h('ul', { class: 'plain' }, projects.map((p) =>
    h('li', {}, h('a', { href: `#/projects/${p.id}`, 'aria-current': p.id === projectId ? 'page' : null }, p.name),
      p.archivedAt ? ' (archived)' : '')));
  main.append(h('nav', { 'aria-label': 'Projects' }, list));
  if (can('projects:write')) main.append(h('p', {}, h('a', { href: '#/projects/new', class: 'button' }, 'New project')));
  const project = projects.find((p) => p.id === projectId);
  if (projectId === 'new' && can('projects:write')) main.append(projectForm(null));
  else if (project) {
    main.append(projectForm(project));
    main.append(integrations(project));
  }
}

function projectForm(p) {
  const ro = !can('projects:write');
  const input = (name, value, attrs = {}) => h('input', { name, value: value ?? '', readonly: ro, ...attrs });
  const area = (name, list) => h('textarea', { name, rows: 3, readonly: ro }, (list ?? []).join('\n'));
  const r = p?.retention ?? {};
  const err = errorBox();
  const saved = h('p', { class: 'ok', role: 'status' });
  const submit = h('button', { type: 'submit', hidden: ro }, p ? 'Save project' : 'Create project');
  const form = h('form', { class: 'card', 'aria-label': p ? `Project ${p.name}` : 'New project' },
    h('h2', {}, p ? p.name : 'New project'),
    field('Name', input('name', p?.name, { required: true, maxlength: 200 })),
    field('Project URL', input('url', p?.url, { type: 'url', placeholder: 'https://dev.azure.com/fabrikam/web' })),
    field('Repository URLs', area('repositoryUrls', p?.repositoryUrls), 'One per line.'),
    field('Azure DevOps project id', input('azureProjectId', p?.azureProjectId)),
    field('Azure DevOps repository ids', area('azureRepositoryIds', p?.azureRepositoryIds), 'One per line.'),
    h('fieldset', {}, h('legend', {}, 'Branch filters'),
      field('Include branches', area('branchInclude', p?.branchInclude), 'Globs, one per line (e.g. main, release/*). Empty takes every branch.'),
      field('Exclude branches', area('branchExclude', p?.branchExclude), 'Globs, one per line. Exclude wins.')),
    h('fieldset', {}, h('legend', {}, 'Retention'),
      field('Keep builds for days', input('keepDays', r.keepDays, { type: 'number', min: 1 })),
      field('Keep the newest builds', input('keepLast', r.keepLast, { type: 'number', min: 1 })),
      field('Archive completed releases after days', input('archiveCompletedAfterDays', r.archiveCompletedAfterDays, { type: 'number', min: 1 }))),
    submit, saved, err);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    saved.textContent = '';
    const d = new FormData(form);
    const inputValue = {
      name: d.get('name'),
      url: d.get('url') || null,
      repositoryUrls: lines(d.get('repositoryUrls')),
      azureProjectId: d.get('azureProjectId') || null,
      azureRepositoryIds: lines(d.get('azureRepositoryIds')),
      branchInclude: lines(d.get('branchInclude')),
      branchExclude: lines(d.get('branchExclude')),
      retention: { keepDays: num(d.get('keepDays')), keepLast: num(d.get('keepLast')),
        archiveCompletedAfterDays: num(d.get('archiveCompletedAfterDays')) },
    };
    const done = await act(submit, err, () => (p
      ? gql('UpdateProject', { id: p.id, input: inputValue })
      : gql('CreateProject', { input: inputValue })));
    if (done) {
      saved.textContent = 'Saved.';
      if (!p) location.hash = `#/projects/${done.createProject.id}`;
    }
  });
  return form;
}

/** Project Settings > Integrations: the Azure DevOps connection, its failed calls, disconnect. */
function integrations(p) {
  const section = h('section', { class: 'card', 'aria-labelledby': 'int-h' }, h('h2', { id: 'int-h' }, 'Integrations: Azure DevOps'));
  const err = errorBox();
  const az = p.azureDevOps;
  if (az) {
    const disconnect = h('button', { type: 'button', class: 'danger', hidden: !can('projects:write') }, 'Disconnect');
    disconnect.addEventListener('click', async () => {
      if (await act(disconnect, err, () => gql('DisconnectAzure', { projectId: p.id }))) location.reload();
    });
    section.append(h('dl', { class: 'facts' },
      [['Organization', az.organizationUrl], ['Project', az.project], ['Work item type', az.workItemType],
        ['Create work items automatically', az.autoCreateWorkItems ? 'yes' : 'no'],
        ['Pull-request comments', az.postPullRequestComments ? 'yes' : 'no'], ['Connected', when(az.connectedAt)],
        ['Field mapping', az.fieldMappings.map((m) => `${m.source} → ${m.field}`).join(', ')]]
        .flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])), disconnect, err);
  } else if (can('projects:write')) {
    const submit = h('button', { type: 'submit' }, 'Connect');
    const mapping = [['TEST_CASE_TITLE', 'System.Title'], ['PRIORITY', 'Microsoft.VSTS.Common.Priority'],
      ['TEST_STEPS', 'Microsoft.VSTS.TCM.ReproSteps'], ['TESTER_NOTES', ''], ['ENVIRONMENT', '']];
    const form = h('form', { 'aria-label': 'Connect Azure DevOps' },
      field('Organization URL', h('input', { name: 'organizationUrl', required: true, placeholder: 'https://dev.azure.com/fabrikam' })),
      field('Project', h('input', { name: 'project', required: true })),
      field('Personal access token', h('input', { name: 'pat', type: 'password', required: true, autocomplete: 'off' }),
        'Work Items (read & write) and Code (status). Stored encrypted; never shown again.'),
      field('Work item type', h('input', { name: 'workItemType', value: 'Bug' })),
      h('fieldset', {}, h('legend', {}, 'Field mapping'), mapping.map(([source, f]) =>
        field(source.toLowerCase().replaceAll('_', ' '), h('input', { name: `map-${source}`, value: f })))),
      h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'auto' }), ' Create work items for failures automatically'),
      h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'pr' }), ' Comment on pull requests'),
      submit, err);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const d = new FormData(form);
      const input = {
        organizationUrl: d.get('organizationUrl'), project: d.get('project'), personalAccessToken: d.get('pat'),
        workItemType: d.get('workItemType') || 'Bug', autoCreateWorkItems: d.get('auto') === 'on',
        postPullRequestComments: d.get('pr') === 'on',
        fieldMappings: mapping.map(([source]) => ({ source, field: d.get(`map-${source}`).trim() })).filter((m) => m.field),
      };
      if (await act(submit, err, () => gql('ConnectAzure', { projectId: p.id, input }))) location.reload();
    });
    section.append(form);
  } else {
    section.append(h('p', { class: 'muted' }, 'Not connected.'));
  }
  const calls = h('div');
  section.append(h('h3', {}, 'Failed calls to Azure DevOps'), calls);
  gql('AzureCalls').then((data) => {
    const failed = data.azureDevOpsDeliveries.filter((c) => c.projectId === p.id);
    calls.replaceChildren(failed.length ? h('ul', {}, failed.map((c) =>
      h('li', {}, when(c.createdAt), ` ${c.kind}: ${c.lastError ?? 'failed'} (HTTP ${c.lastHttpStatus ?? '—'}, ${c.attempts} attempts)`)))
      : h('p', { class: 'muted' }, 'None.'));
  }).catch((e) => calls.replaceChildren(h('p', { class: 'error' }, e.message)));
  return section;
}

/** Settings > Organization > API Keys: create (shown once), revoke, last used. */
export async function keysPage(main) {
  main.replaceChildren(title('API keys'));
  const error = errorBox();
  const tbody = h('tbody');
  const created = h('div', { class: 'created', 'aria-live': 'polite' });
  main.append(error);
  let scopes = [];
  async function refresh() {
    try {
      const data = await gql('Keys');
      scopes = data.apiKeyScopes;
      tbody.replaceChildren(...data.apiKeys.map(keyRow));
    } catch (e) { error.show(e); }
  }
  function keyRow(k) {
    const err = errorBox();
    const revoke = h('button', { type: 'button', class: 'danger' }, `Revoke ${k.name}`);
    revoke.addEventListener('click', async () => {
      if (!confirm(`Revoke the key ${k.name} (${k.prefix}…)? Callers using it are refused from now on.`)) return;
      if (await act(revoke, err, () => gql('RevokeKey', { id: k.id }))) refresh();
    });
    const self = k.prefix === session?.prefix;
    return h('tr', { dataset: { prefix: k.prefix } },
      h('th', { scope: 'row' }, k.name, self ? ' (this session)' : ''), h('td', {}, h('code', {}, `${k.prefix}…`)),
      h('td', {}, k.scopes.join(', ')), h('td', {}, when(k.createdAt)), h('td', {}, when(k.lastUsedAt)),
      h('td', {}, k.revokedAt ? ['revoked ', when(k.revokedAt)] : (k.expiresAt ? ['expires ', when(k.expiresAt)] : 'active')),
      h('td', {}, k.revokedAt ? '' : [revoke, err]));
  }
  await refresh();
  const err = errorBox();
  const submit = h('button', { type: 'submit' }, 'Create key');
  const scopeBoxes = h('fieldset', {}, h('legend', {}, 'Scopes'), scopes.map((s) =>
    h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'scope', value: s, checked: s.startsWith('builds:') }), ` ${s}`)));
  const form = h('form', { class: 'card', 'aria-label': 'New API key' }, h('h2', {}, 'New key'),
    field('Name', h('input', { name: 'name', required: true, maxlength: 200 })), scopeBoxes,
    field('Expires', h('input', { name: 'expires', type: 'date' }), 'Optional.'),
    field('Rate limit per minute', h('input', { name: 'rate', type: 'number', min: 1 }), 'Optional; the server default otherwise.'),
    submit, err);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const d = new FormData(form);
    const input = { name: d.get('name'), scopes: d.getAll('scope'),
      expiresAt: d.get('expires') ? new Date(`${d.get('expires')}T00:00:00Z`).toISOString() : null,
      rateLimitPerMinute: num(d.get('rate')) };
    const done = await act(submit, err, () => gql('CreateKey', { input }));
    if (!done) return;
    const key = done.createApiKey.key;
    const shown = h('code', { class: 'secret', id: 'new-key' }, key);
    created.replaceChildren(h('div', { class: 'card notice', role: 'status' },
      h('p', {}, h('strong', {}, 'Copy the key now: it is shown this once and never again.')),
      shown, ' ', copyButton(() => key, 'Copy key'),
      h('button', { type: 'button', onclick: () => created.replaceChildren() }, 'Done')));
    form.reset();
    refresh();
  });
  main.append(created, form, h('h2', {}, 'Keys'), h('div', { class: 'scroll' }, h('table', { class: 'grid' },
    h('thead', {}, h('tr', {}, ['Name', 'Prefix', 'Scopes', 'Created', 'Last used', 'Status', 'Actions'].map((t) => h('th', { scope: 'col' }, t)))),
    tbody)));
}

/** The delivery log: outcomes and reasons, filterable by outcome, live. */
export function deliveriesPage(main, alive) {
  main.replaceChildren(title('Deliveries'));
  const outcomes = ['', 'created', 'queued', 'duplicate', 'attached', 'ignored', 'filtered', 'unauthorized', 'invalid', 'rate_limited', 'failed'];
  const outcome = h('select', { name: 'outcome' }, outcomes.map((o) => h('option', { value: o }, o || 'all outcomes')));
  const tbody = h('tbody');
  const error = errorBox();
  const cursors = [null];
  const pager = h('nav', { class: 'pager', 'aria-label': 'Delivery pages' });
  main.append(h('p', { class: 'muted' }, 'Every call to the webhook and the ingest API, newest first: what arrived and what became of it. Builds not appearing? Their delivery says why.'),
    field('Outcome', outcome), error,
    h('div', { class: 'scroll' }, h('table', { class: 'grid' },
      h('thead', {}, h('tr', {}, ['Received', 'Source', 'Event', 'Outcome', 'HTTP', 'Message', 'Build'].map((t) => h('th', { scope: 'col' }, t)))),
      tbody)), pager);
  const variables = () => ({ first: 50, after: cursors[cursors.length - 1], outcome: outcome.value || null });
  const render = (data, e) => {
    error.show(e);
    if (!data) return;
    const conn = data.webhookDeliveries;
    tbody.replaceChildren(...conn.edges.map(({ node: d }) => h('tr', { dataset: { outcome: d.outcome } },
      h('td', {}, when(d.receivedAt)), h('td', {}, d.source), h('td', {}, d.eventType ?? '—'),
      h('th', { scope: 'row' }, h('span', { class: `badge ${d.outcome}` }, d.outcome)), h('td', {}, d.httpStatus),
      h('td', { class: 'message' }, d.message),
      h('td', {}, d.buildId ? h('a', { href: `#/build/${d.buildId}` }, 'build') : (d.queuedBuildId ? 'queued' : '—')))));
    if (!conn.edges.length) tbody.replaceChildren(h('tr', {}, h('td', { colspan: 7 }, 'No deliveries.')));
    pager.replaceChildren(
      h('button', { type: 'button', disabled: cursors.length === 1, onclick: () => { cursors.pop(); } }, 'Newer'),
      h('button', { type: 'button', disabled: !conn.pageInfo.hasNextPage, onclick: () => { cursors.push(conn.pageInfo.endCursor); } }, 'Older'));
  };
  outcome.addEventListener('change', () => { cursors.length = 1; });
  return live('Deliveries', variables, render, { everyMs: 2000, alive, subscription: 'DeliveryRecorded' });
}

/** Step 2 of the spec as copy and paste: the webhook URL, its header, and an azure-pipelines.yml step. */
export async function setupPage(main) {
  main.replaceChildren(title('Set-up guide'));
  const webhook = `${location.origin}/api/webhooks/azure-devops`;
  const ingest = `${location.origin}/api/v1/results/ingest`;
  const header = 'Authorization: Bearer <your builds:create key>';
  const yaml = `- task: PublishTestResults@2
  inputs:
    testResultsFormat: JUnit
    testResultsFiles: '**/TEST-*.xml'
  condition: always()
- script: |
    curl --fail-with-body -sS -X POST "${ingest}" \\
      -H "Authorization: Bearer $(LATHE_API_KEY)" \\
      -H "Content-Type: application/json" \\
      -d "{\\"azure_build_id\\": \\"$(Build.BuildId)\\", \\"azure_collection_url\\": \\"$(System.CollectionUri)\\", \\"build_name\\": \\"$(Build.BuildNumber)\\", \\"branch\\": \\"$(Build.SourceBranch)\\", \\"commit_sha\\": \\"$(Build.SourceVersion)\\"}"
  displayName: Report the build to Lathe
  condition: always()
  env:
    LATHE_API_KEY: $(LATHE_API_KEY)`;
  const block = (label, text, id) => h('div', { class: 'copyable' }, h('h3', { id }, label),
    h('pre', { 'aria-labelledby': id }, h('code', {}, text)), copyButton(() => text, `Copy ${label.toLowerCase()}`));
  let org = '';
  try { org = (await gql('Organization')).organization.name; } catch { /* shown without the name */ }
  main.append(
    h('p', {}, `Connect ${org || 'your organization'}'s Azure DevOps pipelines to Lathe in two steps.`),
    h('h2', {}, '1. A key for the service hook'),
    h('p', {}, 'Create an API key with the ', h('code', {}, 'builds:create'), ' scope on the ', h('a', { href: '#/keys' }, 'API keys'), ' page (it is shown once).'),
    h('h2', {}, '2. The service hook'),
    h('p', {}, 'In Azure DevOps: Project Settings → Service Hooks → Create subscription → Web Hooks → Build completed.'),
    block('Webhook URL', webhook, 'c-url'),
    block('HTTP header', header, 'c-header'),
    h('h2', {}, 'Or from the pipeline'),
    h('p', {}, 'Add this step to azure-pipelines.yml, with the key as the secret pipeline variable LATHE_API_KEY.'),
    block('azure-pipelines.yml step', yaml, 'c-yaml'),
    h('p', {}, 'Then run a build: it appears under ', h('a', { href: '#/releases' }, 'Releases'), ' (or in its Build Queue), and every delivery is in ', h('a', { href: '#/deliveries' }, 'Deliveries'), '.'));
}
