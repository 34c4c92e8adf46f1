/** DOM helpers shared by the page's parts, and the render loop that redraws them. */
import { isValidUserId } from '../index.js';
import { type Presence, state } from './model.js';

export const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

interface Props {
  class?: string;
  text?: string;
  title?: string;
  /** The accessible name, for buttons that show only an icon. */
  label?: string;
  /** `auto` for text users wrote, which may be right-to-left. */
  dir?: 'auto';
}

/** An element with its properties and children. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Props = {},
  ...children: (Node | string | false | undefined)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (props.class) node.className = props.class;
  if (props.text !== undefined) node.textContent = props.text;
  if (props.title) node.title = props.title;
  if (props.label) node.setAttribute('aria-label', props.label);
  if (props.dir) node.dir = props.dir;
  for (const child of children) if (child) node.append(child);
  return node;
}

/** Line icons, 24 units square, drawn in the current text colour. */
export const ICONS = {
  edit: 'M4 20h4L19 9l-4-4L4 16zM13.5 6.5l4 4',
  delete: 'M4 7h16M10 11v6M14 11v6M9 7V4h6v3M6 7l1 13h10l1-13',
};

export function icon(path: string): SVGSVGElement {
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  const line = document.createElementNS('http://www.w3.org/2000/svg', 'path');
  line.setAttribute('d', path);
  svg.append(line);
  return svg;
}

// Dark enough for white initials on them and for a name in them on a white bubble (WCAG AA).
const COLOURS = [
  '#b8432f',
  '#1f6fb2',
  '#2e7d4f',
  '#7b4bb7',
  '#9a6212',
  '#17807b',
  '#b83d74',
  '#52637a',
];

/** A user's colour: the same on every page and every device. */
export function colour(name: string): string {
  let hash = 0;
  for (const char of name) hash = (hash * 31 + char.codePointAt(0)!) >>> 0;
  return COLOURS[hash % COLOURS.length];
}

/** Fills `target` with an initial on the name's colour, and a presence dot if given. */
export function avatar(target: HTMLElement, name: string, presence?: Presence): void {
  target.replaceChildren(Array.from(name)[0] ?? '?');
  target.style.background = colour(name);
  // The name is written beside it; the initial would only repeat it to a screen reader.
  target.setAttribute('aria-hidden', 'true');
  if (presence) {
    const title = presence === 'unknown' ? 'Presence unknown' : presence;
    target.append(h('span', { class: `dot ${presence}`, title }));
  }
}

/**
 * Makes `parent`'s children exactly `nodes`, moving only what changed: nodes that stay keep
 * their focus, and a live region announces only what was added.
 */
export function reconcile(parent: Element, nodes: Node[]): void {
  nodes.forEach((node, i) => {
    if (parent.childNodes[i] !== node) parent.insertBefore(node, parent.childNodes[i] ?? null);
  });
  while (parent.childNodes.length > nodes.length) parent.lastChild!.remove();
}

/** Shows each field's problem under it; focuses the first; returns whether all are fine. */
export function check(...fields: [HTMLInputElement, string][]): boolean {
  for (const [field, problem] of fields) {
    $(`${field.id}-error`).textContent = problem;
    field.setAttribute('aria-invalid', String(problem !== ''));
  }
  fields.find(([, problem]) => problem !== '')?.[0].focus();
  return fields.every(([, problem]) => problem === '');
}

/** What is wrong with a user id typed into a form, or nothing. */
export function userProblem(user: string): string {
  if (user === '') return 'Enter a user id.';
  if (!isValidUserId(user)) return `“${user}” is not a user id: 1 to 64 bytes, no spaces or /.`;
  return user === state.me ? 'That is you: pick someone else.' : '';
}

/** Shows `text` in element `id` for a few seconds. */
export function flash(id: string, text: string): void {
  $(id).textContent = text;
  setTimeout(() => {
    if ($(id).textContent === text) $(id).textContent = '';
  }, 6000);
}

const renderers: (() => void)[] = [];
let scheduled = false;

/** Adds a part of the page to redraw on every render. */
export function onRender(renderer: () => void): void {
  renderers.push(renderer);
}

/** Redraws on the next frame; many events in a burst cost one render. */
export function render(): void {
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(() => {
    scheduled = false;
    for (const renderer of renderers) renderer();
  });
}

/** Whether the window is narrow enough for one pane at a time. */
export function narrow(): boolean {
  return matchMedia('(max-width: 700px)').matches;
}
