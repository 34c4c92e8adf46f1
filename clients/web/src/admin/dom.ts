/** DOM helpers for the admin page. */

export const $ = <T extends HTMLElement = HTMLElement>(id: string) =>
  document.getElementById(id) as T;

type Child = Node | string | false | undefined;

/** An element with a class, attributes and children. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: { class?: string; title?: string; [attribute: string]: string | undefined } = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined) continue;
    if (name === 'class') node.className = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) if (child !== false && child !== undefined) node.append(child);
  return node;
}

/** A status badge: the word says it, the colour only repeats it. */
export function badge(text: string, tone: 'good' | 'bad' | 'warn'): HTMLElement {
  return h('span', { class: `state ${tone}` }, text);
}

/** A description list's rows: `<div><dt>term</dt><dd>value</dd></div>`. */
export function facts(rows: [string, Child | Child[]][]): HTMLElement[] {
  return rows.map(([term, value]) =>
    h('div', {}, h('dt', {}, term), h('dd', {}, ...(Array.isArray(value) ? value : [value]))),
  );
}
