// The console's shell: sign-in, navigation by the URL's fragment (#/releases, #/build/<id>, …), sign-out.
import { currentSession, signIn, signOut, session, sessionEnded, can } from './api.js';
import { h, field, errorBox, act, title } from './ui.js';
import { releasesPage, buildPage } from './releases.js';
import { projectsPage, keysPage, deliveriesPage, setupPage } from './admin.js';

const main = document.getElementById('main');
let view = 0;
let stopView = null;

function signInPage() {
  document.getElementById('nav').hidden = true;
  document.getElementById('who').hidden = true;
  const key = h('input', { name: 'key', type: 'password', autocomplete: 'off', required: true, spellcheck: 'false' });
  const error = errorBox();
  const submit = h('button', { type: 'submit' }, 'Sign in');
  const form = h('form', { class: 'card signin', 'aria-label': 'Sign in' },
    field('API key', key, 'A Lathe key (pt_live_…). It is kept on the server; this page never stores it.'), submit, error);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const ok = await act(submit, error, () => signIn(key.value.trim()));
    key.value = '';
    if (ok) { shell(); route(); } else key.focus();
  });
  main.replaceChildren(title('Sign in to Lathe'), form);
  key.focus();
}

function shell() {
  const nav = document.getElementById('nav');
  for (const link of nav.querySelectorAll('a')) link.hidden = Boolean(link.dataset.scope) && !can(link.dataset.scope);
  nav.hidden = false;
  document.getElementById('who').hidden = false;
  document.getElementById('who-key').textContent = `Key ${session.prefix}…`;
}

async function route() {
  stopView?.();
  stopView = null;
  const mine = ++view;
  const alive = () => mine === view && session !== null;
  if (!session) { signInPage(); return; }
  const [, page, id] = (location.hash || '#/releases').split('/');
  for (const link of document.querySelectorAll('#nav a')) {
    link.toggleAttribute('aria-current', link.getAttribute('href') === `#/${page}`);
  }
  try {
    switch (page) {
      case 'build': await buildPage(main, decodeURIComponent(id ?? '')); break;
      case 'projects': await projectsPage(main, id ? decodeURIComponent(id) : null); break;
      case 'keys': await keysPage(main); break;
      case 'deliveries': stopView = deliveriesPage(main, alive); break;
      case 'setup': await setupPage(main); break;
      default: stopView = await releasesPage(main, alive);
    }
  } catch (error) {
    if (mine === view) main.replaceChildren(title('Something went wrong'), h('p', { class: 'error', role: 'alert' }, error.message));
  }
  if (mine === view) main.querySelector('h1')?.focus({ preventScroll: true });
}

document.getElementById('sign-out').addEventListener('click', async (e) => {
  await act(e.currentTarget, null, signOut);
  stopView?.();
  signInPage();
});
sessionEnded.addEventListener('ended', () => { if (session) { currentSession().then((s) => { if (!s) signInPage(); }); } });
window.addEventListener('hashchange', route);

if (await currentSession()) shell();
route();
