// Peak resident memory of this process, for the benchmark scripts.

import { readFileSync } from 'node:fs';

/** VmHWM in bytes. Not getrusage's maxRSS: Linux carries the parent's high-water mark into a
 * child across exec, so a benchmark's child processes would report the parent's peak. */
export function peakRssBytes(): number {
  return Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))![1]) * 1024;
}
