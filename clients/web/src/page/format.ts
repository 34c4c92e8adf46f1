/** Text the page shows for times, sizes and counts. */

const encoder = new TextEncoder();

/** The length of `text` in UTF-8, as the server counts a body against its limit. */
export function utf8Length(text: string): number {
  return encoder.encode(text).length;
}

/** A count with thousands separators: 16,384. */
export function count(n: number): string {
  return n.toLocaleString('en-US');
}

/** 10:05 PM, in the reader's locale. */
export function clock(ms: number): string {
  return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/** The time today, else the date: for the conversation list. */
export function when(ms: number): string {
  if (!ms) return '';
  const date = new Date(ms);
  if (date.toDateString() === new Date().toDateString()) return clock(ms);
  return date.toLocaleDateString([], { month: 'short', day: 'numeric' });
}

/** "Today" or the date: the divider above a day's messages. */
export function day(ms: number): string {
  const date = new Date(ms);
  return date.toDateString() === new Date().toDateString() ? 'Today' : date.toLocaleDateString();
}

/** How long ago, for "last seen". */
export function ago(ms: number): string {
  const minutes = Math.round((Date.now() - ms) / 60_000);
  if (minutes < 1) return 'just now';
  if (minutes < 60) return `${minutes} min ago`;
  if (minutes < 24 * 60) return `${Math.round(minutes / 60)} h ago`;
  return new Date(ms).toLocaleDateString();
}
