/**
 * Training samples before tokenization: the sample JSONL format (one JSON object per line, image
 * paths relative to the JSONL file), photos with simple generated captions, and text documents.
 *   caption: {"image": "img/0001.png", "text": "a frog at the lower left"}
 *   qa:      {"image": "...", "prompt": "How many apples?", "answer": "2", "task": "counting", "id": "..."}
 *            optionally with more questions about the same image, asked in one sequence after
 *            the first: "turns": [{"prompt": "Is there a coin?", "answer": "no"}, …]
 *   text:    {"text": "..."}
 * Other fields are allowed and ignored. Every sample remembers where it came from (file, line),
 * so later errors (image too large for the context, unreadable image) can name it.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { loadImage } from '../image/io.js';
import { describePhoto, subjectFromName } from './captions.js';
import { UvuError } from '../util/errors.js';
import { parseJsonLine, parseOrFail } from '../util/fsio.js';

/** Where a sample was defined: a JSONL file and 1-based line, or a generator and an item. */
export interface SampleSource {
  file: string;
  line: number;
}

export type Sample =
  | { kind: 'caption'; image: string; text: string; source: SampleSource }
  | { kind: 'qa'; image: string; prompt: string; answer: string; task?: string; id?: string; turns?: { prompt: string; answer: string }[]; source: SampleSource }
  | { kind: 'text'; text: string; source: SampleSource };

const nonEmpty = z.string().min(1);
const QaLine = z.object({ image: nonEmpty, prompt: nonEmpty, answer: nonEmpty, task: z.string().optional(), id: z.string().optional(), turns: z.array(z.object({ prompt: nonEmpty, answer: nonEmpty })).optional() });
const CaptionLine = z.object({ image: nonEmpty, text: nonEmpty });
const TextLine = z.object({ text: nonEmpty });

/** `file:line` for messages. */
export function where(s: { source: SampleSource }): string {
  return `${s.source.file}:${s.source.line}`;
}

/** Parse one JSONL line into a sample (image paths resolved against `baseDir`). */
export function parseSampleLine(raw: unknown, source: SampleSource, baseDir: string): Sample {
  const where = `${source.file}:${source.line}`;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new UvuError(`${where}: expected a JSON object`);
  const o = raw as Record<string, unknown>;
  if ('prompt' in o || 'answer' in o) {
    const q = parseOrFail(QaLine, o, `${where}: not a question/answer sample`, { all: true });
    return { kind: 'qa', image: resolve(baseDir, q.image), prompt: q.prompt, answer: q.answer, task: q.task, id: q.id, ...(q.turns?.length ? { turns: q.turns } : {}), source };
  }
  if ('image' in o) {
    const c = parseOrFail(CaptionLine, o, `${where}: not a caption sample`, { all: true });
    return { kind: 'caption', image: resolve(baseDir, c.image), text: c.text, source };
  }
  const t = parseOrFail(TextLine, o, `${where}: not a sample (expected {"image","text"}, {"image","prompt","answer"} or {"text"})`, { all: true });
  return { kind: 'text', text: t.text, source };
}

/** Read a sample JSONL file. Blank lines are skipped; any bad line is an error naming file:line. */
export function readSamples(path: string): Sample[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UvuError(`${path}: cannot read samples (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  const baseDir = dirname(resolve(path));
  const out: Sample[] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    out.push(parseSampleLine(parseJsonLine(line, `${path}:${i + 1}`), { file: path, line: i + 1 }, baseDir));
  });
  if (out.length === 0) throw new UvuError(`${path}: no samples`);
  return out;
}

/** Text documents as samples (one per document; long ones are cut into pieces when packed). */
export function textSamples(docs: { name: string; text: string }[]): Sample[] {
  return docs.filter((d) => d.text.trim() !== '').map((d, i) => ({ kind: 'text' as const, text: d.text, source: { file: d.name, line: i + 1 } }));
}

/**
 * Caption samples for photos, with simple generated captions (src/data/captions.ts) computed on
 * the image as the model sees it (after the resize policy). `subjects` default to the file names.
 */
export async function photoSamples(paths: string[], opts: { maxPixels: number; subjects?: string[] }): Promise<Sample[]> {
  const out: Sample[] = [];
  for (let i = 0; i < paths.length; i++) {
    const image = resolve(paths[i]!);
    const img = await loadImage(image, { maxPixels: opts.maxPixels });
    out.push({ kind: 'caption', image, text: describePhoto(img, opts.subjects?.[i] ?? subjectFromName(image)), source: { file: image, line: 1 } });
  }
  return out;
}
