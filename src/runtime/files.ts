// Writes that never leave a half-written file or directory behind: write a temporary sibling,
// then rename.

import { closeSync, existsSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

function temporarySibling(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
}

export function writeFileAtomic(path: string, data: Uint8Array | string): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = temporarySibling(path);
  try {
    writeFileSync(tmp, data);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

/** Writes several files so that either all of them are replaced or none: every file is first
 * written in full as a temporary sibling, and only then are they renamed into place. */
export function writeFilesAtomic(dir: string, files: Record<string, Uint8Array | string>): void {
  mkdirSync(dir, { recursive: true });
  const staged: [string, string][] = [];
  try {
    for (const [name, data] of Object.entries(files)) {
      const target = join(dir, name);
      const tmp = temporarySibling(target);
      staged.push([tmp, target]);
      writeFileSync(tmp, data);
    }
  } catch (e) {
    for (const [tmp] of staged) rmSync(tmp, { force: true });
    throw e;
  }
  for (const [tmp, target] of staged) renameSync(tmp, target);
}

/** Writes the chunks to a new file one after the other (a file too big to hold in memory at
 * once); returns the bytes written. */
export function writeChunks(path: string, chunks: Iterable<Uint8Array>): number {
  const fd = openSync(path, 'wx');
  let bytes = 0;
  try {
    for (const chunk of chunks) {
      for (let done = 0; done < chunk.length;) done += writeSync(fd, chunk, done);
      bytes += chunk.length;
    }
  } finally {
    closeSync(fd);
  }
  return bytes;
}

/**
 * Fills a directory all or nothing: `fill` writes the files into a fresh staging directory
 * beside `dir` (same file system, so moves are renames), and only once it has returned are they
 * moved into place: the staging directory becomes `dir` when there is none yet, otherwise each
 * file replaces its namesake in `dir` (other files there stay, as with writeFilesAtomic). If
 * `fill` throws, the staging directory is removed and `dir` is left as it was.
 */
export function writeDirectoryAtomic(dir: string, fill: (staging: string) => void): void {
  mkdirSync(dirname(dir), { recursive: true });
  const staging = temporarySibling(dir);
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging);
  try {
    fill(staging);
    if (!existsSync(dir)) {
      renameSync(staging, dir);
      return;
    }
    for (const name of readdirSync(staging)) renameSync(join(staging, name), join(dir, name));
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}
