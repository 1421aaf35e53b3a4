// Failures injected into the file system calls the writers make (src/io/files.ts), without
// root or a real full disk: node:fs is patched for the duration of one call, and
// syncBuiltinESMExports() carries the patch into the modules that imported its functions by
// name. Only files under `under` are touched; everything else goes to the real functions.

import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { resolve, sep } from 'node:path';

export interface Faults {
  /** Only writes and renames of paths inside this folder are counted and failed. */
  under: string;
  /** A full disk: the write that would pass this many bytes in total writes what still fits,
   * then throws ENOSPC, as does every later write. */
  writeBudget?: number;
  /** The rename with this number (1 for the first) throws EIO and moves nothing. */
  failRename?: number;
}

/** What the writers did under `under`: bytes written and renames attempted. */
export interface Io {
  bytes: number;
  renames: number;
}

function errno(code: string, message: string, syscall: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: ${message}, ${syscall}`), { code, syscall });
}

type Originals = Pick<typeof fs, 'openSync' | 'closeSync' | 'writeSync' | 'writeFileSync' | 'renameSync'>;

/** Runs `fn` with the faults in place and restores node:fs afterwards, whatever happens. */
export async function withFaults<T>(faults: Faults, fn: () => Promise<T>): Promise<{ result: T; io: Io }> {
  const root = resolve(faults.under) + sep;
  const inside = (path: fs.PathLike | number) => typeof path !== 'number' && resolve(String(path)).startsWith(root);
  const real: Originals = { openSync: fs.openSync, closeSync: fs.closeSync, writeSync: fs.writeSync, writeFileSync: fs.writeFileSync, renameSync: fs.renameSync };
  const io: Io = { bytes: 0, renames: 0 };
  const tracked = new Set<number>();

  const openSync = ((path: fs.PathLike, ...rest: unknown[]) => {
    const fd = (real.openSync as (...a: unknown[]) => number)(path, ...rest);
    if (inside(path)) tracked.add(fd);
    return fd;
  }) as typeof fs.openSync;
  const closeSync = ((fd: number) => {
    tracked.delete(fd);
    real.closeSync(fd);
  }) as typeof fs.closeSync;
  const writeSync = ((fd: number, data: NodeJS.ArrayBufferView | string, ...rest: unknown[]) => {
    const write = real.writeSync as (...a: unknown[]) => number;
    if (!tracked.has(fd)) return write(fd, data, ...rest);
    const buffer = typeof data === 'string' ? Buffer.from(data) : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const offset = typeof data === 'string' ? 0 : ((rest[0] as number | undefined) ?? 0);
    const length = typeof data === 'string' ? buffer.length : ((rest[1] as number | undefined) ?? buffer.length - offset);
    const room = faults.writeBudget === undefined ? length : Math.max(0, faults.writeBudget - io.bytes);
    const n = Math.min(length, room);
    let written = 0;
    while (written < n) written += write(fd, buffer, offset + written, n - written);
    io.bytes += written;
    if (n < length) throw errno('ENOSPC', 'no space left on device', 'write');
    return written;
  }) as typeof fs.writeSync;
  const writeFileSync = ((path: fs.PathOrFileDescriptor, data: string | NodeJS.ArrayBufferView, options?: fs.WriteFileOptions) => {
    if (!inside(path as fs.PathLike)) return real.writeFileSync(path, data, options);
    // Through the counted calls above, as Node's own writeFileSync writes in pieces.
    const fd = openSync(path as fs.PathLike, 'w');
    try {
      const bytes = typeof data === 'string' ? Buffer.from(data) : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      for (let done = 0; done < bytes.length;) done += writeSync(fd, bytes, done, bytes.length - done);
    } finally {
      closeSync(fd);
    }
  }) as typeof fs.writeFileSync;
  const renameSync = ((from: fs.PathLike, to: fs.PathLike) => {
    if (inside(from) || inside(to)) {
      io.renames++;
      if (io.renames === faults.failRename) throw errno('EIO', 'i/o error', 'rename');
    }
    real.renameSync(from, to);
  }) as typeof fs.renameSync;

  Object.assign(fs, { openSync, closeSync, writeSync, writeFileSync, renameSync });
  syncBuiltinESMExports();
  try {
    return { result: await fn(), io };
  } finally {
    Object.assign(fs, real);
    syncBuiltinESMExports();
  }
}

/** Every folder and file under `root`, with each file's bytes: equal snapshots mean nothing
 * under `root` changed, was added (a temporary file, an empty folder) or went missing. */
export function snapshot(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (dir: string, rel: string) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const path = `${dir}/${entry.name}`;
      const key = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) {
        out.set(`${key}/`, '');
        walk(path, key);
      } else {
        out.set(key, fs.readFileSync(path).toString('base64'));
      }
    }
  };
  if (fs.existsSync(root)) walk(root, '');
  return out;
}
