// Exporting straight to a model directory (Node only: export.ts itself stays free of the file
// system, for bundles that export in memory).

import { join } from 'node:path';
import { writeChunks, writeDirectoryAtomic } from '../io/files.js';
import { ExportOptions, exportFiles, GlowJson } from './export.js';
import { GlowWeights } from './model.js';

/** exportModel written to `dir` as it is made: one graph in memory at a time, and each file
 * written chunk by chunk (tensor by tensor), so that the memory an export needs stays near one
 * graph's weights instead of several copies of both. The files are the same bytes exportModel
 * returns. All or nothing: they go to a staging directory and are moved into place only once all
 * are written (see writeDirectoryAtomic). Returns glow.json's content and each
 * file's name and size, in the order written. */
export function exportModelToDirectory(
  w: GlowWeights, dir: string, options: ExportOptions = {}, provenance: Record<string, string> = {},
): { json: GlowJson; files: { name: string; bytes: number }[] } {
  const files: { name: string; bytes: number }[] = [];
  let json: GlowJson | undefined;
  writeDirectoryAtomic(dir, (staging) => {
    json = exportFiles(w, options, provenance, (name, chunks) => {
      files.push({ name, bytes: writeChunks(join(staging, name), chunks) });
    });
  });
  return { json: json!, files };
}
