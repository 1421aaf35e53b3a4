// Progress bars on stderr for long runs; silent when stderr is not a terminal (logs, CI).

import cliProgress from 'cli-progress';
import { Progress } from '../runtime/core.js';

export async function withProgress<T>(label: string, total: number, work: (onProgress: Progress) => Promise<T>): Promise<T> {
  if (!process.stderr.isTTY || total <= 1) return work(() => {});
  const bar = new cliProgress.SingleBar({
    format: `${label} [{bar}] {value}/{total} images | {rate} img/s | ETA {eta_formatted}`,
    stream: process.stderr,
    hideCursor: true,
  }, cliProgress.Presets.shades_classic);
  const start = Date.now();
  bar.start(total, 0, { rate: '-' });
  try {
    return await work((done) => bar.update(done, { rate: (done / Math.max(1e-3, (Date.now() - start) / 1000)).toFixed(0) }));
  } finally {
    bar.stop();
  }
}
