// Runs ONNX graphs in OpenCV's DNN module (Debian's python3-opencv) through scripts/opencv_run.py:
// every graph and its float32 inputs are written to a temporary folder, one python process runs
// them all, and each graph's outputs come back as float32 arrays, or as the one-line error
// OpenCV gave for that graph.

import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Graph } from '../src/builder/graph.js';
import { serializeModel } from '../src/builder/serialize.js';
import { Float32Feeds } from './feeds.js';
import { PYTHON } from './python.js';

export const OPENCV_SCRIPT = fileURLToPath(new URL('../../scripts/opencv_run.py', import.meta.url));
export const OPENCV_INSTALL = "install Debian's python3-opencv (apt-get install python3-opencv)";

/** OpenCV's version string, or an error saying how to install it. */
export function opencvVersion(): string {
  const r = spawnSync(PYTHON, ['-c', 'import cv2; print(cv2.__version__)'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${PYTHON} cannot import cv2: ${OPENCV_INSTALL}`);
  return r.stdout.trim();
}

/** Each graph's outputs by name (as the graph declares them, in order), or OpenCV's error for it.
 * Throws when OpenCV cannot be run at all. */
export function runOpencv(jobs: readonly { graph: Graph; feeds: Float32Feeds }[], timeoutMs = 300_000): (Record<string, Float32Array> | Error)[] {
  const dir = mkdtempSync(join(tmpdir(), 'glow-opencv-'));
  try {
    const manifest = jobs.map(({ graph, feeds }, i) => {
      const caseDir = join(dir, String(i));
      mkdirSync(caseDir);
      const model = join(caseDir, 'model.onnx');
      writeFileSync(model, serializeModel(graph));
      const inputs = Object.fromEntries(Object.entries(feeds).map(([name, t]) => {
        const file = join(caseDir, `${name}.in`);
        writeFileSync(file, Float32Array.from(t.data));
        return [name, { file, shape: t.shape }];
      }));
      return { model, inputs, outputs: graph.outputs.map((io) => io.value.name), out: caseDir };
    });
    const path = join(dir, 'manifest.json');
    writeFileSync(path, JSON.stringify(manifest));
    const run = spawnSync(PYTHON, [OPENCV_SCRIPT, path], { encoding: 'utf8', timeout: timeoutMs });
    if (run.error) throw new Error(`could not run ${PYTHON} ${OPENCV_SCRIPT} (${run.error.message}); ${OPENCV_INSTALL}`);
    if (run.status === 2) throw new Error(`${PYTHON} cannot import cv2: ${OPENCV_INSTALL}\n${run.stdout}`);
    const failures = new Map<string, string | undefined>();
    for (const line of run.stdout.split('\n')) {
      const m = /^(OK|FAIL) (.*?)(?:: (.*))?$/.exec(line);
      if (m) failures.set(m[2], m[1] === 'OK' ? undefined : m[3]);
    }
    return manifest.map((e) => {
      if (!failures.has(e.model)) return new Error(`${OPENCV_SCRIPT} printed no result (exit ${run.status}): ${run.stderr.trim().split('\n').pop() ?? ''}`);
      const failure = failures.get(e.model);
      if (failure !== undefined) return new Error(failure);
      return Object.fromEntries(e.outputs.map((name) => {
        const bytes = readFileSync(join(e.out, `${name}.bin`));
        return [name, new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength))];
      }));
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
