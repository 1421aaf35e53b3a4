// Writes that never leave a half-written file or directory behind: write a temporary sibling,
// then rename.

import { closeSync, lstatSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

function temporarySibling(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
}

/** Creates `dir` and any missing parents, and returns an undo that removes what was created
 * here, so that a failed write leaves no empty folders behind. */
function makeParents(dir: string): () => void {
  const created = mkdirSync(dir, { recursive: true });
  return () => {
    if (created) rmSync(created, { recursive: true, force: true });
  };
}

export function writeFileAtomic(path: string, data: Uint8Array | string): void {
  const undoParents = makeParents(dirname(path));
  const tmp = temporarySibling(path);
  try {
    writeFileSync(tmp, data);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    undoParents();
    throw e;
  }
}

/** Writes several files (names may hold subfolders: a Triton repository) so that either all of
 * them are replaced or none; see writeDirectoryAtomic. */
export function writeFilesAtomic(dir: string, files: Record<string, Uint8Array | string>): void {
  writeDirectoryAtomic(dir, (staging) => {
    for (const [name, data] of Object.entries(files)) {
      mkdirSync(dirname(join(staging, name)), { recursive: true });
      writeFileSync(join(staging, name), data);
    }
  });
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

function isDirectory(path: string): boolean {
  try {
    return lstatSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** Moves every entry of `from` into `to`, replacing namesakes and merging subfolders, all or
 * nothing: a replaced entry is first moved aside into `aside`, and if any rename fails, the
 * renames done so far are undone in reverse order. */
function moveInto(from: string, to: string, aside: string): void {
  const undo: (() => void)[] = [];
  let asideCount = 0;
  const merge = (src: string, dst: string) => {
    for (const name of readdirSync(src)) {
      const [s, d] = [join(src, name), join(dst, name)];
      if (isDirectory(s) && isDirectory(d)) {
        merge(s, d);
        continue;
      }
      if (lstatSync(d, { throwIfNoEntry: false })) {
        const old = join(aside, String(asideCount++));
        renameSync(d, old);
        undo.push(() => renameSync(old, d));
      }
      renameSync(s, d);
      undo.push(() => renameSync(d, s));
    }
  };
  mkdirSync(aside);
  try {
    merge(from, to);
  } catch (e) {
    // Best effort: a rename that fails here leaves that entry in `aside`, which is kept.
    let restored = true;
    for (const step of undo.reverse()) {
      try {
        step();
      } catch {
        restored = false;
      }
    }
    if (restored) rmSync(aside, { recursive: true, force: true });
    throw e;
  }
  rmSync(aside, { recursive: true, force: true });
}

/**
 * Fills a directory all or nothing: `fill` writes the files into a fresh staging directory (same
 * file system, so moves are renames), and only once it has returned are they moved into place:
 * the staging directory becomes `dir` when there is none yet, otherwise each file replaces its
 * namesake in `dir` (other files there stay). If `fill` or a move fails, `dir` is left as it
 * was: no empty directory where there was none, no mix of old and new files.
 */
export function writeDirectoryAtomic(dir: string, fill: (staging: string) => void): void {
  const exists = isDirectory(dir);
  // Inside an existing `dir` the staging needs no rights on its parent; a new `dir` is the
  // staging directory renamed, which must therefore lie beside it.
  const staging = exists ? join(dir, basename(temporarySibling(dir))) : temporarySibling(dir);
  const undoParents = exists ? () => {} : makeParents(dirname(dir));
  rmSync(staging, { recursive: true, force: true });
  let done = false;
  try {
    mkdirSync(staging);
    fill(staging);
    if (exists) moveInto(staging, dir, `${staging}.replaced`);
    else renameSync(staging, dir);
    done = true;
  } finally {
    rmSync(staging, { recursive: true, force: true });
    if (!done) undoParents();
  }
}
