import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { ByteBpeTokenizer } from '../src/text/bpe.js';
import { normalizeWhitespace, publicDomainTexts, splitParagraphs } from '../src/text/corpus.js';
import { SPECIAL_TOKENS, Vocab } from '../src/tokens/vocab.js';
import { UvuError } from '../src/util/errors.js';

const work = mkdtempSync(join(tmpdir(), 'uvu-bpe-'));
const moby = publicDomainTexts({ sources: ['moby-dick'] });
const sotu = publicDomainTexts({ sources: ['sotu'] });

// Train on ~1.5 MB (all of Moby Dick + the first State of the Union addresses); hold out the last addresses.
const trainTexts = [...moby.map((d) => d.text), ...sotu.slice(0, 20).map((d) => d.text)];
const heldOut = sotu.slice(-4).map((d) => d.text).join('\n\n');
const trainBytes = trainTexts.reduce((a, t) => a + Buffer.byteLength(t), 0);
const t0 = performance.now();
const tok = ByteBpeTokenizer.train(trainTexts, { vocabSize: 4096, specialTokens: SPECIAL_TOKENS });
const trainMs = performance.now() - t0;

const bytesPerToken = (t: ByteBpeTokenizer, text: string) => Buffer.byteLength(text) / t.encode(text).length;

const VARIED = [
  '',
  'Call me Ishmael.',
  '  leading and trailing spaces  ',
  'tabs\tand\nnew\r\nlines\n\n\nthree blank',
  "It's what we'll do — they'd said; I'm sure you've seen it.",
  'naïve café, Übermaß, ﬁ ligature, Ελληνικά, русский, 中文字符, 日本語のテキスト, 한국어',
  'emoji 🐋🐳 and family 👨‍👩‍👧 and flags 🇺🇸 and skin 👍🏽',
  'numbers 3.14159 1,000,000 0x1F 2024-11-29',
  '<bos><|user|><img></img>How many whales?<|assistant|>2<eos>',
  'a box <loc_3><loc_17><loc_31><loc_0> at the lower left',
  'specials glued<img>inside</img>words<loc_12>and <loc_1> spaced',
  'not special: <loc_32> <loc_> <img <|user| </img',
  '\u0000\u0001 control \u007f and \u00ad soft hyphen \ufeff bom',
  'x'.repeat(3000),
];

test('BPE trains on ~1.5 MB to 4096 ids in a few seconds, with specials after the text ids', (t) => {
  t.diagnostic(`trained on ${(trainBytes / 1e6).toFixed(2)} MB in ${(trainMs / 1000).toFixed(2)} s; held-out bytes/token ${bytesPerToken(tok, heldOut).toFixed(3)}`);
  assert.equal(tok.textSize, 4096);
  assert.equal(tok.size, 4096 + SPECIAL_TOKENS.length);
  assert.ok(trainMs < 30_000, `training took ${trainMs} ms`);
  // Special ids agree with the model vocabulary layout.
  const vocab = new Vocab({ textSize: tok.textSize, K: 8 });
  assert.equal(tok.id('<bos>'), vocab.bos);
  assert.equal(tok.id('<|assistant|>'), vocab.assistant);
  assert.deepEqual(tok.encode('<loc_3><loc_31>'), [vocab.locId(3), vocab.locId(31)]);
  // Frequent words become single tokens.
  assert.equal(tok.encode(' whale').length, 1);
  assert.equal(tok.encode(' the').length, 1);
});

test('BPE decode(encode(s)) === s for unicode, emoji, newlines and special tokens', () => {
  for (const s of VARIED) assert.equal(tok.decode(tok.encode(s)), s, JSON.stringify(s.slice(0, 60)));
  assert.equal(tok.decode(tok.encode(heldOut)), heldOut);
  // Special tokens are single ids; skipSpecial drops them.
  const ids = tok.encode('<img></img>the whale<eos>');
  assert.equal(ids[0], tok.id('<img>'));
  assert.equal(ids[1], tok.id('</img>'));
  assert.equal(ids.at(-1), tok.id('<eos>'));
  assert.ok(ids.slice(2, -1).every((id) => id < tok.textSize));
  assert.equal(tok.decode(ids, { skipSpecial: true }), 'the whale');
  // A pathological 200k-byte pre-token stays fast (heap-based merging) and round-trips.
  const long = 'ab'.repeat(100_000);
  const t1 = performance.now();
  assert.equal(tok.decode(tok.encode(long)), long);
  assert.ok(performance.now() - t1 < 5000);
});

test('BPE rejects unknown ids and tokens', () => {
  assert.throws(() => tok.decode([tok.size]), UvuError);
  assert.throws(() => tok.decode([-1]), UvuError);
  assert.throws(() => tok.decode([1.5]), UvuError);
  assert.throws(() => tok.id('<nope>'), /unknown token/);
  assert.equal(tok.id('Ġwhale'), tok.encode(' whale')[0]);
});

test('BPE save → load gives identical encodings and an identical file', () => {
  const path = join(work, 'tokenizer.json');
  tok.save(path);
  const back = ByteBpeTokenizer.load(path);
  assert.equal(back.textSize, tok.textSize);
  assert.equal(back.size, tok.size);
  for (const s of [...VARIED, heldOut]) assert.deepEqual(back.encode(s), tok.encode(s));
  const path2 = join(work, 'tokenizer2.json');
  back.save(path2);
  assert.equal(readFileSync(path2, 'utf8'), readFileSync(path, 'utf8'));
});

test('BPE is compatible with Hugging Face tokenizers.js on held-out text', () => {
  const path = join(work, 'tokenizer-hf.json');
  tok.save(path);
  const hf = new Tokenizer(JSON.parse(readFileSync(path, 'utf8')), { clean_up_tokenization_spaces: false });
  for (const s of [heldOut, ...VARIED.filter((v) => v.length > 0)]) {
    const ours = tok.encode(s);
    const theirs = hf.encode(s).ids;
    assert.deepEqual(theirs, ours, JSON.stringify(s.slice(0, 60)));
    assert.equal(hf.decode(ours, { skip_special_tokens: false }), s);
  }
  assert.equal(hf.token_to_id('<loc_7>'), tok.id('<loc_7>'));
});

test('BPE training is deterministic and a larger vocabulary compresses better', () => {
  const small = moby.slice(0, 40).map((d) => d.text);
  const a = ByteBpeTokenizer.train(small, { vocabSize: 1024, specialTokens: ['<s>'] });
  const b = ByteBpeTokenizer.train(small, { vocabSize: 1024, specialTokens: ['<s>'] });
  assert.deepEqual(a.toJSON(), b.toJSON());
  const sizes = [256, 512, 1024, 2048];
  const bpt = sizes.map((vocabSize) => bytesPerToken(ByteBpeTokenizer.train(small, { vocabSize, specialTokens: [] }), heldOut));
  assert.equal(bpt[0], 1); // bytes only
  for (let i = 1; i < bpt.length; i++) assert.ok(bpt[i]! > bpt[i - 1]!, `bytes/token ${bpt.join(', ')}`);
  // Growing the vocabulary only appends merges: the smaller merge list is a prefix.
  const big = ByteBpeTokenizer.train(small, { vocabSize: 2048, specialTokens: ['<s>'] }).toJSON().model.merges;
  assert.deepEqual(big.slice(0, a.toJSON().model.merges.length), a.toJSON().model.merges);
});

test('BPE stops at minFrequency on a tiny corpus', () => {
  const t = ByteBpeTokenizer.train(['the cat the hat the bat'], { vocabSize: 1000, specialTokens: [], minFrequency: 2 });
  assert.ok(t.textSize > 256 && t.textSize < 270, `textSize ${t.textSize}`);
  assert.equal(t.encode(' the').length, 1);
  assert.equal(t.decode(t.encode('the cat sat')), 'the cat sat');
  assert.throws(() => ByteBpeTokenizer.train([], { vocabSize: 100, specialTokens: [] }), UvuError);
  assert.throws(() => ByteBpeTokenizer.train([], { vocabSize: 300, specialTokens: ['a', 'a'] }), /twice/);
});

test('BPE refuses malformed tokenizer files with a message naming the file', () => {
  const good = tok.toJSON();
  const cases: [string, (j: any) => unknown, RegExp][] = [
    ['model type', (j) => ({ ...j, model: { ...j.model, type: 'WordPiece' } }), /model\.type: "WordPiece" is not supported \(expected "BPE"\)/],
    ['missing merges', (j) => ({ ...j, model: { ...j.model, merges: undefined } }), /model\.merges: missing/],
    ['missing vocab', (j) => ({ ...j, model: { ...j.model, vocab: undefined } }), /model\.vocab: missing/],
    ['id gap', (j) => ({ ...j, model: { ...j.model, vocab: { ...j.model.vocab, 'Ġwhale': 99_999 } } }), /no gaps/],
    ['id twice', (j) => ({ ...j, model: { ...j.model, vocab: { ...j.model.vocab, 'Ġwhale': 5 } } }), /model\.vocab: id 5 is used by both .*"Ġwhale"/],
    ['repeated merge', (j) => ({ ...j, model: { ...j.model, merges: [...j.model.merges, j.model.merges[0]] } }), /model\.merges\.\d+: .* is repeated/],
    ['bad merge', (j) => ({ ...j, model: { ...j.model, merges: [...j.model.merges, ['Ġwhale', 'ĠNOPE']] } }), /model\.merges\.\d+: .*missing from the vocab/],
    ['special id', (j) => ({ ...j, added_tokens: j.added_tokens.map((t: any, i: number) => (i === 1 ? { ...t, id: 5 } : t)) }), /added_tokens\.1: .* has id 5, expected 4097/],
    ['normalizer', (j) => ({ ...j, normalizer: { type: 'NFC' } }), /normalizer: .* is not supported/],
    ['prefix space', (j) => ({ ...j, pre_tokenizer: { ...j.pre_tokenizer, add_prefix_space: true } }), /pre_tokenizer\.add_prefix_space: true is not supported/],
  ];
  for (const [name, mutate, pattern] of cases) {
    const path = join(work, `bad-${name.replace(/ /g, '-')}.json`);
    writeFileSync(path, JSON.stringify(mutate(good)));
    assert.throws(
      () => ByteBpeTokenizer.load(path),
      (err: unknown) => err instanceof UvuError && err.message.startsWith(path) && pattern.test(err.message),
      name,
    );
  }
  const notJson = join(work, 'bad.json');
  writeFileSync(notJson, '{"model": {');
  assert.throws(() => ByteBpeTokenizer.load(notJson), new RegExp(`^UvuError: ${notJson}: tokenizer file is not valid JSON`));
  assert.throws(() => ByteBpeTokenizer.load(join(work, 'missing.json')), /cannot read tokenizer/);
  // The old "a b" merge format is accepted and gives the same tokenizer.
  const old = { ...good, model: { ...good.model, merges: good.model.merges.map(([a, b]) => `${a} ${b}`) } };
  assert.deepEqual(ByteBpeTokenizer.fromJSON(old).encode(heldOut.slice(0, 2000)), tok.encode(heldOut.slice(0, 2000)));
});

test('corpus: Moby Dick chapters and State of the Union addresses, whitespace normalized', () => {
  // 135 numbered chapters plus Etymology, Extracts and Epilogue (the table of contents is dropped).
  assert.equal(moby.filter((d) => /Chapter \d+\./.test(d.title)).length, 135);
  assert.equal(moby.length, 138);
  assert.deepEqual(moby.slice(0, 3).map((d) => d.title.split(',')[1]!.trim().split(/[ .]/)[0]), ['Etymology', 'Extracts', 'Chapter']);
  assert.ok(moby[2]!.title.endsWith('Chapter 1. Loomings.'), moby[2]!.title);
  assert.ok(moby[2]!.text.startsWith('Call me Ishmael.'));
  assert.ok(sotu.length > 200);
  assert.ok(sotu[0]!.title.includes('1790') && sotu[0]!.title.includes('George Washington'), sotu[0]!.title);
  for (const d of [...moby, ...sotu]) {
    assert.ok(d.text.length > 100, d.title);
    assert.equal(d.text, normalizeWhitespace(d.text), d.title);
    assert.ok(!/ {2}|\t|\r|\n{3}|^\s|\s$/.test(d.text), d.title);
  }
  assert.equal(publicDomainTexts().length, moby.length + sotu.length);
  assert.equal(normalizeWhitespace(' a \t b \r\n\r\n\r\n c\n'), 'a b\n\nc');
});

test('corpus: splitParagraphs keeps paragraphs that fit and cuts long ones at sentences and words', () => {
  const words = (s: string) => s.split(/\s+/).filter(Boolean);
  for (const [text, maxChars] of [
    [moby[5]!.text, 400],
    [sotu[100]!.text, 300], // addresses have no paragraph breaks
    ['short one.\n\nshort two.\n\n' + 'w'.repeat(25) + ' tail 🐋🐋🐋🐋', 10],
  ] as const) {
    const pieces = splitParagraphs(text, maxChars);
    assert.ok(pieces.length > 1);
    for (const p of pieces) assert.ok(p.length > 0 && p.length <= maxChars && p === p.trim(), JSON.stringify(p));
    // Nothing lost or reordered (cuts inside over-long words aside).
    assert.equal(pieces.join(' ').replace(/\s+/g, ''), text.replace(/\s+/g, ''));
    if (maxChars >= 300) assert.deepEqual(words(pieces.join(' ')), words(text));
  }
  const paras = moby[5]!.text.split('\n\n');
  const fitting = paras.filter((p) => p.length <= 400);
  const pieces = new Set(splitParagraphs(moby[5]!.text, 400));
  assert.ok(fitting.length > 0 && fitting.every((p) => pieces.has(p)));
  // Emoji are never cut in half.
  assert.ok(splitParagraphs('🐋'.repeat(7), 3).every((p) => !/[\ud800-\udbff]$/.test(p)));
  assert.throws(() => splitParagraphs('x', 0), UvuError);
});
