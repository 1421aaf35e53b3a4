// scripts/check_onnx.py (onnx.checker.check_model(full_check=True), Debian's python3-onnx 1.12)
// on many model files in one python process: python3 + onnx start slowly.

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PYTHON } from '../../support/python.js';

export const INSTALL = "install Debian's python3-onnx (apt-get install python3-onnx)";
/** The newest opset python3-onnx 1.12 knows. */
export const CHECKER_MAX_OPSET = 17;

function checkerScript(): string {
  for (const rel of ['../../../scripts/check_onnx.py', '../../scripts/check_onnx.py']) {
    const path = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(path)) return path;
  }
  return join(process.cwd(), 'scripts', 'check_onnx.py');
}

/** path -> 'OK' or the checker's message. Throws (with the remedy) when the checker cannot run
 * or prints nothing for some path. */
export function checkOnnx(paths: readonly string[], timeoutMs = 80_000): Map<string, string> {
  const script = checkerScript();
  const run = spawnSync(PYTHON, [script, ...paths], { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 * 2 ** 20 });
  if (run.error) throw new Error(`could not run ${PYTHON} ${script} (${run.error.message}); ${INSTALL}`);
  const stdout = run.stdout ?? '';
  if (run.status === 2 || /cannot import onnx/.test(stdout)) throw new Error(`${PYTHON} cannot import onnx: ${INSTALL}\n${stdout}${run.stderr ?? ''}`);
  const results = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const ok = /^OK (.*)$/.exec(line);
    if (ok) results.set(ok[1], 'OK');
    const fail = /^FAIL (.*?): (.*)$/.exec(line);
    if (fail) results.set(fail[1], fail[2]);
  }
  const missing = paths.filter((p) => !results.has(p));
  if (missing.length) throw new Error(`${script} printed no result for ${missing.length} file(s), e.g. ${missing[0]} (exit ${run.status}):\n${stdout.slice(-2000)}${run.stderr ?? ''}`);
  return results;
}

/** The failures among `paths`, as 'path: message' lines. */
export function checkerFailures(paths: readonly string[], timeoutMs?: number): string[] {
  const results = checkOnnx(paths, timeoutMs);
  return paths.filter((p) => results.get(p) !== 'OK').map((p) => `${p}: ${results.get(p)}`);
}
