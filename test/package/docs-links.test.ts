// The documents link to each other and into the repository (README -> docs/design.md#section,
// results.md -> an image): a section renamed or a file moved must not leave a dead link.

import { expect } from 'chai';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const DOCUMENTS = ['README.md', 'docs/design.md', 'docs/results.md', 'web/README.md', 'CHANGELOG.md', 'test/fixtures/rosinality/README.md'];

const FENCED = /^```[^\n]*\n[\s\S]*?^```$/gm;

/** Markdown outside code (fenced blocks and inline spans), where links are links. */
function prose(markdown: string): string {
  return markdown.replace(FENCED, '').replace(/`[^`\n]*`/g, '');
}

/** The anchors GitHub gives a document's headings: lower case, punctuation dropped, spaces as hyphens. */
function anchors(markdown: string): Set<string> {
  // Headings outside fenced code; inline code in a heading keeps its text in the anchor.
  const headings = [...markdown.replace(FENCED, '').matchAll(/^#{1,6} +(.+?) *#*$/gm)].map((m) => m[1]);
  return new Set(headings.map((h) => h.toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replace(/ /g, '-')));
}

/** Every relative link of a document: [text](target) and ![alt](target). */
function links(markdown: string): string[] {
  return [...prose(markdown).matchAll(/\]\(([^)\s]+)(?: "[^"]*")?\)/g)].map((m) => m[1]).filter((t) => !/^[a-z]+:/i.test(t));
}

describe('links between the documents', () => {
  for (const doc of DOCUMENTS) {
    it(`${doc}: every relative link reaches a file, and every #anchor a heading`, () => {
      const text = readFileSync(join(root, doc), 'utf8');
      const dead: string[] = [];
      for (const link of links(text)) {
        const [path, anchor] = link.split('#');
        const target = path ? join(dirname(join(root, doc)), decodeURI(path)) : join(root, doc);
        if (!existsSync(target)) {
          dead.push(`${link} (no ${relative(root, target)})`);
        } else if (anchor !== undefined && target.endsWith('.md') && !anchors(readFileSync(target, 'utf8')).has(anchor)) {
          dead.push(`${link} (no heading #${anchor} in ${relative(root, target)})`);
        }
      }
      expect(dead, `dead links in ${doc}`).to.deep.equal([]);
    });
  }

  it('finds headings as GitHub anchors them', () => {
    expect([...anchors('# A\n## The shipped model (`models/mnist`)\n```\n# not a heading\n```\n### float16 on the CPU provider\n')])
      .to.include.members(['a', 'the-shipped-model-modelsmnist', 'float16-on-the-cpu-provider']).and.not.include('not-a-heading');
  });
});
