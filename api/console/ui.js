// Small DOM helpers shared by the screens: element building, labelled fields, copy buttons, error display.

/** Builds an element: h('button', {type: 'button', onclick}, 'Text', child…). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(key, '');
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

let nextId = 0;
/** A labelled control: the label names it for screen readers and tests alike. */
export function field(label, control, hint) {
  control.id ||= `f${++nextId}`;
  const hintEl = hint ? h('small', { class: 'hint', id: `${control.id}-hint` }, hint) : null;
  if (hintEl) control.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field' }, h('label', { for: control.id }, label), control, hintEl);
}

/** An error shown next to what caused it (role=alert, so it is read out). */
export function errorBox() {
  const box = h('p', { class: 'error', role: 'alert', hidden: true });
  box.show = (error) => {
    box.textContent = error ? (error.message ?? String(error)) : '';
    box.hidden = !error;
  };
  return box;
}

/** Runs `action` with `button` busy, showing any error in `box`. */
export async function act(button, box, action) {
  button.disabled = true;
  box?.show(null);
  try {
    return await action();
  } catch (error) {
    box?.show(error);
    return undefined;
  } finally {
    button.disabled = false;
  }
}

/** A button that copies `text()` to the clipboard and says so. */
export function copyButton(text, label = 'Copy') {
  const button = h('button', { type: 'button', class: 'copy' }, label);
  button.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(text());
      button.textContent = 'Copied';
    } catch {
      // Clipboard access can be refused (plain HTTP): select the text for Ctrl+C instead.
      button.textContent = 'Select and press Ctrl+C';
    }
    setTimeout(() => { button.textContent = label; }, 2000);
  });
  return button;
}

export function when(iso) {
  if (!iso) return '—';
  const date = new Date(iso);
  return h('time', { datetime: iso, title: date.toISOString() }, date.toLocaleString());
}

export function shortSha(sha) {
  return sha ? sha.slice(0, 8) : '—';
}

export const REASONS = {
  NO_PROJECT_MATCHED: 'No project matched',
  PROJECT_AMBIGUOUS: 'Several projects matched',
  NO_ACTIVE_RELEASE: 'The project has no active release',
  SEVERAL_ACTIVE_RELEASES: 'The project has several active releases',
  PROJECT_SELECTED: 'Project selected; choose a release',
  PROJECT_ARCHIVED: 'The project is archived',
  RETURNED_TO_QUEUE: 'Returned to the queue',
};

export function reasonText(reason) {
  return REASONS[reason] ?? (reason ? reason.toLowerCase().replaceAll('_', ' ') : '—');
}

/** Lines of a textarea as a list, blank ones dropped. */
export function lines(text) {
  return text.split('\n').map((s) => s.trim()).filter(Boolean);
}

export function title(text) {
  document.title = `${text} · Lathe`;
  return h('h1', { tabindex: '-1' }, text);
}
