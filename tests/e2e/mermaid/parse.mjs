// Parses Mermaid diagrams with mermaid's own parser and prints what it read.
//
// stdin: a JSON array of diagram sources. stdout: a JSON array, one result per
// diagram: {"ok": true, "nodes": [...], "edges": [...]} or {"ok": false,
// "error": "..."}. Labels come back as a person reads them once rendered:
// HTML entities decoded and, except in box titles, Markdown backslash escapes
// removed. Mermaid's own "#code;" entities are left as the placeholders that
// Mermaid 11 shows for them in state diagrams, so a label that uses one does
// not read back as intended.
import { readFileSync } from 'node:fs';
import { JSDOM } from 'jsdom';

const dom = new JSDOM('<!doctype html><html><body></body></html>');
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const { default: mermaid } = await import('mermaid');

const ENTITIES = { quot: '"', lt: '<', gt: '>', num: '#', apos: "'" };
const html = (text) =>
  String(text ?? '')
    .replace(/&(quot|lt|gt|num|apos);/g, (_, name) => ENTITIES[name])
    .replace(/&amp;/g, '&');
// A box's title is plain HTML; other labels are Markdown as well.
const markdown = (text) => text.replace(/\\([!-/:-@[-`{-~])/g, '$1');

async function inspect(source) {
  try {
    await mermaid.parse(source);
    const diagram = await mermaid.mermaidAPI.getDiagramFromText(source);
    const data = diagram.db.getData();
    return {
      ok: true,
      type: diagram.type,
      nodes: data.nodes.map((n) => ({
        id: n.id,
        label: n.isGroup ? html(n.label) : markdown(html(n.label)),
        parent: n.parentId ?? null,
        shape: n.shape,
        group: Boolean(n.isGroup),
      })),
      edges: data.edges.map((e) => ({ start: e.start, end: e.end, label: markdown(html(e.label)) })),
    };
  } catch (error) {
    return { ok: false, error: String(error?.message ?? error) };
  }
}

const sources = JSON.parse(readFileSync(0, 'utf8'));
const results = [];
for (const source of sources) results.push(await inspect(source));
process.stdout.write(JSON.stringify(results));
