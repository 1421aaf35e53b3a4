// The source folders form layers, and a module imports only from its own folder or from a layer
// below it: src/math (numbers) and src/io (file formats) know nothing of ONNX or Glow, the
// builder knows nothing of Glow, Glow nothing of ONNX Runtime, and so on up to the entries. The
// import lines of every file under src/ are read and each relative import is checked against the
// order below. scripts/ sit on top; they and test/ share helpers
// through support/, and scripts take nothing from test/.

import { expect } from 'chai';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { repoRoot as findRepoRoot } from '../../scripts/web-build.js';

/** Bottom first. A top-level file of src/ is its own layer, named by the file. */
const LAYERS = [['math'], ['io'], ['builder'], ['glow'], ['runtime'], ['train'], ['core.ts'], ['cli', 'web'], ['index.ts']];

const repoRoot = findRepoRoot();

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : path.endsWith('.ts') ? [path] : [];
  });
}

/** The relative module specifiers of a source file's import and export-from lines. */
function relativeImports(source: string): string[] {
  const found = source.matchAll(/^\s*(?:import|export)\b[^;]*?\bfrom\s+'(\.[^']+)'|^\s*import\s+'(\.[^']+)'|\bimport\('(\.[^']+)'\)/gm);
  return [...found].map((m) => m[1] ?? m[2] ?? m[3]);
}

function layerOf(path: string): string {
  return relative(join(repoRoot, 'src'), path).split(sep)[0];
}

function rank(layer: string): number {
  const i = LAYERS.findIndex((names) => names.includes(layer));
  if (i < 0) throw new Error(`src/${layer} is in no layer: add it to LAYERS`);
  return i;
}

/** `from -> to` for each import in `paths` that goes up, or sideways into another folder. */
function upwardImports(paths: string[]): string[] {
  return paths.flatMap((path) => {
    const from = layerOf(path);
    return relativeImports(readFileSync(path, 'utf8'))
      .map((spec) => resolve(dirname(path), spec).replace(/\.js$/, '.ts'))
      .filter((target) => {
        const to = layerOf(target);
        return to !== from && rank(to) >= rank(from);
      })
      .map((target) => `${relative(repoRoot, path)} -> ${relative(repoRoot, target)}`);
  });
}

describe('source layering', () => {
  const sources = files(join(repoRoot, 'src'));

  it('reads the imports it checks', () => {
    // The check sees imports at all: the builder's index re-exports its graph.
    expect(relativeImports(readFileSync(join(repoRoot, 'src/builder/index.ts'), 'utf8'))).to.include('./graph.js');
    expect(sources.length).to.be.greaterThan(50);
  });

  it('every module under src/ imports only from its own folder or a layer below', () => {
    expect(upwardImports(sources)).to.deep.equal([]);
  });

  it('scripts/ take nothing from test/', () => {
    const fromScripts = files(join(repoRoot, 'scripts')).flatMap((path) => relativeImports(readFileSync(path, 'utf8'))
      .map((spec) => relative(repoRoot, resolve(dirname(path), spec)))
      .filter((target) => target.split(sep)[0] === 'test')
      .map((target) => `${relative(repoRoot, path)} -> ${target}`));
    expect(fromScripts).to.deep.equal([]);
  });
});
