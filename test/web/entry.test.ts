// glow-onnx/web must be browser-safe: no module in its graph may import a Node built-in (node:fs,
// path, ...) or onnxruntime-node, which a browser bundle cannot take. esbuild walks the graph
// from the entry's source with every package left external, and the imports it leaves
// unresolved are checked. The page's bundle (test/web/page.test.ts) and the packed tarball's
// browser app (test/package/tarball.test.ts) run it; this names the module at fault.

import { expect } from 'chai';
import { build, Metafile } from 'esbuild';
import { builtinModules } from 'node:module';
import { join } from 'node:path';
import { repoRoot } from '../../scripts/web-build.js';

/** Each import that leaves the entry's own modules, as `importer -> specifier`. */
async function externalImports(entry: string): Promise<string[]> {
  const result = await build({
    entryPoints: [entry], bundle: true, write: false, metafile: true, platform: 'neutral', format: 'esm',
    packages: 'external', logLevel: 'silent', absWorkingDir: repoRoot(),
  });
  const inputs = (result.metafile as Metafile).inputs;
  return Object.entries(inputs).flatMap(([file, input]) => input.imports.filter((i) => i.external).map((i) => `${file} -> ${i.path}`));
}

function isNodeOnly(specifier: string): boolean {
  return specifier.startsWith('node:') || builtinModules.includes(specifier.split('/')[0]) || specifier === 'onnxruntime-node';
}

describe('glow-onnx/web entry', () => {
  it('imports no Node built-in and not onnxruntime-node anywhere in its module graph', async () => {
    const imports = await externalImports(join(repoRoot(), 'src', 'web', 'index.ts'));
    // The graph was walked: the runtime it is for is among its imports.
    expect(imports.some((i) => i.endsWith('-> onnxruntime-web'))).to.equal(true);
    expect(imports.filter((i) => isNodeOnly(i.split(' -> ')[1]))).to.deep.equal([]);
  });

  it('the check sees a Node import in the Node entry', async () => {
    const imports = await externalImports(join(repoRoot(), 'src', 'index.ts'));
    expect(imports.filter((i) => isNodeOnly(i.split(' -> ')[1]))).to.include('src/runtime/node.ts -> onnxruntime-node');
  });
});
