/** Text the admin page shows for sizes and durations. */
import { count } from '../page/format.js';

export { count };

const UNITS = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];

/** 0 bytes, 1,843 bytes, 1.5 MiB, 64 MiB: three significant digits past 9,999 bytes. */
export function bytes(n: number): string {
  if (n < 10_000) return `${count(n)} ${n === 1 ? 'byte' : 'bytes'}`;
  let unit = 0;
  while (n >= 1024 && unit < UNITS.length - 1) {
    n /= 1024;
    unit++;
  }
  const digits = n < 10 ? 2 : n < 100 ? 1 : 0;
  return `${Number(n.toFixed(digits))} ${UNITS[unit]}`;
}

/** 45 s, 12 min 3 s, 5 h 20 min, 3 d 4 h: the two largest units. */
export function duration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const parts: [number, string][] = [
    [Math.floor(s / 86_400), 'd'],
    [Math.floor(s / 3600) % 24, 'h'],
    [Math.floor(s / 60) % 60, 'min'],
    [s % 60, 's'],
  ];
  const first = parts.findIndex(([n]) => n > 0);
  if (first < 0) return '0 s';
  return parts
    .slice(first, first + 2)
    .filter(([n]) => n > 0)
    .map(([n, unit]) => `${n} ${unit}`)
    .join(' ');
}

/** 1 link, 2 links. */
export function plural(n: number, word: string): string {
  return `${count(n)} ${n === 1 ? word : `${word}s`}`;
}

/** A moment as the reader's local date and time, for titles. */
export function moment(ms: number): string {
  return new Date(ms).toLocaleString();
}

/** `some_limit_name` as "Some limit name". */
export function label(key: string): string {
  const words = key.replaceAll('_', ' ').replace(/\b(http|tcp|tls|ws)\b/g, (w) => w.toUpperCase());
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** How long ago, from an elapsed time measured on the server's clock. */
export function ago(elapsedMs: number): string {
  return elapsedMs < 1000 ? 'just now' : `${duration(elapsedMs)} ago`;
}
