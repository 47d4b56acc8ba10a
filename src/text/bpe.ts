/**
 * Byte-level BPE text tokenizer (GPT-2 style), trained on our own text and stored as a
 * Hugging Face `tokenizer.json`, so other tools (tokenizers, transformers, tokenizers.js) load
 * it and produce the same ids.
 *
 * Pipeline of encode(text):
 *   1. split out special tokens by exact, leftmost-longest match (HF "added tokens");
 *   2. pre-tokenize the rest with the GPT-2 regex (contractions, letters, digits, other
 *      symbols, whitespace; a single leading space sticks to the next word);
 *   3. each pre-token → its UTF-8 bytes → byte tokens → merges applied by rank, lowest first
 *      (leftmost on ties), exactly as HF's BPE model does.
 *
 * Id layout: [BPE tokens 0 … textSize-1][special tokens in the order given]. Our trainer puts
 * byte b at id b and merge r's new token at id 256 + r (a loaded file may order them
 * differently). In the JSON, tokens are spelled with GPT-2's byte→unicode map (space = "Ġ").
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { writeFileAtomic } from '../util/atomic.js';
import { UvuError } from '../util/errors.js';
import { parseOrFail } from '../util/fsio.js';
import { progress } from '../util/progress.js';

/** GPT-2 pre-tokenizer regex, as used by HF's ByteLevel pre-tokenizer with use_regex = true. */
const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/**
 * GPT-2's reversible byte → printable character map: printable Latin-1 bytes map to
 * themselves, the other 68 bytes to U+0100 onward (so no token contains whitespace).
 */
const BYTE_TO_CHAR: readonly string[] = (() => {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const map: string[] = new Array(256);
  let n = 0;
  for (let b = 0; b < 256; b++) map[b] = String.fromCharCode(printable(b) ? b : 256 + n++);
  return map;
})();
const CHAR_TO_BYTE = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));

/** Pair (a, b) of token ids as one Map key. Ids stay below 2^21, so keys stay exact doubles. */
const PAIR_STRIDE = 2 ** 21;
const pairKey = (a: number, b: number) => a * PAIR_STRIDE + b;

/** Pre-tokens up to this length are cached in encode; the cache is cleared when it gets this many entries. */
const CACHE_MAX_LEN = 256;
const CACHE_MAX_ENTRIES = 100_000;

const utf8 = new TextEncoder();

export interface BpeTrainOptions {
  /** Number of BPE ids (256 bytes + merges) to aim for; this becomes textSize. */
  vocabSize: number;
  /** Special tokens, given ids textSize, textSize+1, … in this order. */
  specialTokens: readonly string[];
  /** Stop merging when the best pair occurs fewer times than this (default 2); textSize may then stay below vocabSize. */
  minFrequency?: number;
}

/** The subset of the HF tokenizer.json schema we write and accept. */
export interface TokenizerJson {
  version: string;
  truncation: null;
  padding: null;
  added_tokens: { id: number; content: string; single_word: boolean; lstrip: boolean; rstrip: boolean; normalized: boolean; special: boolean }[];
  normalizer: null;
  pre_tokenizer: { type: 'ByteLevel'; add_prefix_space: boolean; trim_offsets: boolean; use_regex: boolean };
  post_processor: null;
  decoder: { type: 'ByteLevel'; add_prefix_space: boolean; trim_offsets: boolean; use_regex: boolean };
  model: {
    type: 'BPE';
    dropout: null;
    unk_token: null;
    continuing_subword_prefix: null;
    end_of_word_suffix: null;
    fuse_unk: boolean;
    byte_fallback: boolean;
    ignore_merges: boolean;
    vocab: Record<string, number>;
    merges: [string, string][];
  };
}

export class ByteBpeTokenizer {
  /** Number of BPE ids; ids ≥ textSize are special tokens. */
  readonly textSize: number;
  /** textSize + number of special tokens. */
  readonly size: number;
  readonly specialTokens: readonly string[];
  /** id → token in byte-level spelling (BPE ids only). */
  private readonly vocab: readonly string[];
  /** id → the bytes it stands for (BPE ids only). */
  private readonly tokenBytes: readonly Uint8Array[];
  private readonly tokenToId: Map<string, number>;
  /** byte value → id of its one-byte token. */
  private readonly byteId: Int32Array;
  /** Merges in rank order, as token-id pairs. */
  private readonly merges: readonly (readonly [number, number])[];
  /** pairKey(a, b) → rank of the merge of a and b. */
  private readonly mergeRank: Map<number, number>;
  /** rank → id of the merged token. */
  private readonly mergeResult: Int32Array;
  private readonly specialTrie: TrieNode;
  private readonly cache = new Map<string, number[]>();

  private constructor(vocab: string[], merges: [number, number][], specialTokens: readonly string[]) {
    this.vocab = vocab;
    this.textSize = vocab.length;
    this.specialTokens = [...specialTokens];
    this.size = this.textSize + specialTokens.length;
    this.tokenToId = new Map(vocab.map((t, i) => [t, i]));
    this.tokenBytes = vocab.map((t) => Uint8Array.from(t, (c) => CHAR_TO_BYTE.get(c)!));
    this.byteId = Int32Array.from(BYTE_TO_CHAR, (c) => this.tokenToId.get(c)!);
    this.merges = merges;
    this.mergeRank = new Map(merges.map(([a, b], r) => [pairKey(a, b), r]));
    this.mergeResult = Int32Array.from(merges, ([a, b]) => this.tokenToId.get(vocab[a]! + vocab[b]!)!);
    this.specialTrie = buildTrie(specialTokens);
  }

  /**
   * Learn merges from `texts`: count distinct pre-tokens once (word → frequency), then
   * repeatedly merge the most frequent adjacent pair, updating pair counts incrementally for
   * the words that contain it. Ties go to the smaller (left id, right id), so training is
   * deterministic.
   */
  static train(texts: Iterable<string>, opts: BpeTrainOptions): ByteBpeTokenizer {
    const minFrequency = checkTrainOptions(opts);
    const corpus = countWords(texts, opts.specialTokens);
    const pairs = indexPairs(corpus);
    const { vocab, merges } = learnMerges(corpus, pairs, opts.vocabSize, minFrequency);
    return new ByteBpeTokenizer(vocab, merges, opts.specialTokens);
  }

  /** Load a tokenizer.json written by save() (or any HF file of the same shape). */
  static load(path: string): ByteBpeTokenizer {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      throw new UvuError(`${path}: cannot read tokenizer (${(err as Error).message})`);
    }
    let obj: unknown;
    try {
      obj = JSON.parse(text);
    } catch (err) {
      throw new UvuError(`${path}: tokenizer file is not valid JSON (${(err as Error).message})`);
    }
    return ByteBpeTokenizer.fromJSON(obj, path);
  }

  /**
   * Build from a parsed tokenizer.json, refusing anything our encode would not reproduce
   * exactly (other models, normalizers, pre-tokenizer options, id gaps, dangling merges).
   * `source` names the file in error messages: `SOURCE: field.path: what is wrong`.
   */
  static fromJSON(obj: unknown, source = 'tokenizer.json'): ByteBpeTokenizer {
    const j = parseOrFail(TokenizerFileSchema, obj, source);
    const fail = (path: string, problem: string): never => {
      throw new UvuError(`${source}: ${path}: ${problem}`);
    };
    const vocab = vocabById(j.model.vocab, fail);
    const merges = mergeIds(j.model.merges, new Map(vocab.map((t, i) => [t, i])), fail);
    const specials = (j.added_tokens ?? []).map((at, i) => {
      if (at.id !== vocab.length + i) fail(`added_tokens.${i}`, `${show(at.content)} has id ${at.id}, expected ${vocab.length + i} (special ids must follow the BPE vocab in order)`);
      return at.content;
    });
    checkSpecials(specials, `${source}: added_tokens`);
    return new ByteBpeTokenizer(vocab, merges, specials);
  }

  /** Hugging Face tokenizer.json object. */
  toJSON(): TokenizerJson {
    // Null prototype: a token spelled "__proto__" must become a key, not the prototype.
    const vocab = Object.create(null) as Record<string, number>;
    this.vocab.forEach((t, i) => (vocab[t] = i));
    const byteLevel = { type: 'ByteLevel' as const, add_prefix_space: false, trim_offsets: true, use_regex: true };
    return {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: this.specialTokens.map((content, i) => ({ id: this.textSize + i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
      normalizer: null,
      pre_tokenizer: byteLevel,
      post_processor: null,
      decoder: { ...byteLevel },
      model: {
        type: 'BPE',
        dropout: null,
        unk_token: null,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: false,
        byte_fallback: false,
        ignore_merges: false,
        vocab,
        merges: this.merges.map(([a, b]) => [this.vocab[a]!, this.vocab[b]!]),
      },
    };
  }

  /** Write tokenizer.json atomically. */
  save(path: string): void {
    writeFileAtomic(path, JSON.stringify(this.toJSON()) + '\n');
  }

  /** Token ids of `text`; special tokens inside it are recognized by exact match. */
  encode(text: string): number[] {
    const ids: number[] = [];
    for (const [piece, isSpecial] of splitSpecials(text, this.specialTrie)) {
      if (isSpecial) {
        ids.push(this.textSize + this.specialTokens.indexOf(piece));
        continue;
      }
      for (const m of piece.matchAll(GPT2_SPLIT)) {
        const word = m[0];
        let wid = this.cache.get(word);
        if (wid === undefined) {
          wid = this.bpe(utf8.encode(word));
          if (word.length <= CACHE_MAX_LEN) {
            if (this.cache.size >= CACHE_MAX_ENTRIES) this.cache.clear();
            this.cache.set(word, wid);
          }
        }
        for (const id of wid) ids.push(id);
      }
    }
    return ids;
  }

  /** Text of `ids`. Bytes of consecutive BPE tokens are decoded together (invalid UTF-8 → U+FFFD). */
  decode(ids: readonly number[], opts: { skipSpecial?: boolean } = {}): string {
    const decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });
    let out = '';
    let bytes: number[] = [];
    const flush = () => {
      if (bytes.length > 0) out += decoder.decode(Uint8Array.from(bytes));
      bytes = [];
    };
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.size) throw new UvuError(`bpe: cannot decode id ${id} (vocabulary has ${this.size} ids)`);
      if (id < this.textSize) {
        for (const b of this.tokenBytes[id]!) bytes.push(b);
      } else {
        flush();
        if (!opts.skipSpecial) out += this.specialTokens[id - this.textSize];
      }
    }
    flush();
    return out;
  }

  /** Id of a special token or of a BPE token in byte-level spelling ("Ġthe"). */
  id(token: string): number {
    const s = this.specialTokens.indexOf(token);
    if (s >= 0) return this.textSize + s;
    const id = this.tokenToId.get(token);
    if (id === undefined) throw new UvuError(`bpe: unknown token ${JSON.stringify(token)}`);
    return id;
  }

  /**
   * BPE on one pre-token: start from byte tokens, then repeatedly merge the adjacent pair of
   * lowest rank (leftmost on ties). Linked list + lazy min-heap keyed rank·2^32 + position,
   * O(n log n) even for very long pre-tokens.
   */
  private bpe(bytes: Uint8Array): number[] {
    const n = bytes.length;
    if (n === 0) return [];
    const tok = Int32Array.from(bytes, (b) => this.byteId[b]!);
    if (n === 1) return [tok[0]!];
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    const alive = new Uint8Array(n).fill(1);
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    const heap = new MinHeap();
    const consider = (i: number) => {
      if (i < 0 || next[i]! < 0) return;
      const j = next[i]!;
      const r = this.mergeRank.get(pairKey(tok[i]!, tok[j]!));
      if (r !== undefined) heap.push(r * 2 ** 32 + i);
    };
    for (let i = 0; i + 1 < n; i++) consider(i);
    while (heap.length > 0) {
      const e = heap.pop();
      const r = Math.floor(e / 2 ** 32);
      const i = e - r * 2 ** 32;
      const j = next[i]!;
      // Stale if i was absorbed, has no right neighbour, or its pair changed since the push.
      if (!alive[i] || j < 0 || this.mergeRank.get(pairKey(tok[i]!, tok[j]!)) !== r) continue;
      tok[i] = this.mergeResult[r]!;
      alive[j] = 0;
      next[i] = next[j]!;
      if (next[j]! >= 0) prev[next[j]!] = i;
      consider(prev[i]!);
      consider(i);
    }
    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i]!) out.push(tok[i]!);
    return out;
  }
}

const show = (x: unknown): string => JSON.stringify(x);

/** Error text for a value we cannot reproduce: `"WordPiece" is not supported (expected "BPE")`, or `missing (expected …)`. */
const unsupported =
  (expected: string) =>
  (iss: { input?: unknown }): string =>
    iss.input === undefined ? `missing (expected ${expected})` : `${show(iss.input)} is not supported (expected ${expected})`;
/** A value that must be exactly `v`. */
const only = <T extends string | boolean>(v: T) => z.literal(v, { error: unsupported(show(v)) });
/** An option we do not implement: absent, null or "". */
const unset = z.union([z.null(), z.literal('')], { error: unsupported('null') }).optional();
/** A boolean option we do not implement: absent or false. */
const off = only(false).optional();
const byteLevel = z.object({ type: only('ByteLevel') });

/**
 * The tokenizer.json fields our encode depends on, with the only values it reproduces; other
 * fields are ignored. Cross-field rules (ids without gaps, merges of vocab tokens, special ids
 * after the vocab) are checked in fromJSON.
 */
const TokenizerFileSchema = z.object({
  model: z.object({
    type: only('BPE'),
    dropout: unset,
    unk_token: unset,
    continuing_subword_prefix: unset,
    end_of_word_suffix: unset,
    byte_fallback: off,
    ignore_merges: off,
    // Token → id, as a Map: a plain object would lose a token spelled "__proto__".
    vocab: z.preprocess(
      (v) => (isObject(v) ? new Map(Object.entries(v)) : v),
      z.map(z.string(), z.number().int().nonnegative(), { error: (iss) => (iss.input === undefined ? 'missing' : 'must be an object of token → id') }),
    ),
    // [a, b] pairs, or "a b" strings (the older format).
    merges: z.array(z.union([z.tuple([z.string(), z.string()]), z.string()], { error: (iss) => `${show(iss.input)} is not a pair of tokens` }), {
      error: (iss) => (iss.input === undefined ? 'missing' : 'must be an array of merges'),
    }),
  }),
  normalizer: z.null({ error: unsupported('null') }).optional(),
  pre_tokenizer: byteLevel.extend({ add_prefix_space: off, use_regex: only(true).optional() }),
  decoder: byteLevel,
  added_tokens: z
    .array(
      z.object({
        id: z.number().int(),
        content: z.string().min(1),
        special: only(true),
        single_word: off,
        lstrip: off,
        rstrip: off,
        normalized: off,
      }),
    )
    .nullish(),
});

type Fail = (path: string, problem: string) => never;

/** Vocab as id → token: ids exactly 0 … n-1, tokens in byte-level spelling, all 256 byte tokens present. */
function vocabById(tokenIds: Map<string, number>, fail: Fail): string[] {
  const n = tokenIds.size;
  // Merge pairs are keyed a·2^21 + b: a larger vocab would make two pairs share a key.
  if (n >= PAIR_STRIDE) fail('model.vocab', `has ${n} tokens; at most ${PAIR_STRIDE - 1} are supported`);
  const vocab: string[] = new Array(n);
  for (const [tok, id] of tokenIds) {
    if (id >= n) fail('model.vocab', `id ${id} of ${show(tok)} is outside 0…${n - 1} (ids must have no gaps)`);
    if (vocab[id] !== undefined) fail('model.vocab', `id ${id} is used by both ${show(vocab[id])} and ${show(tok)}`);
    if (tok.length === 0 || [...tok].some((ch) => !CHAR_TO_BYTE.has(ch))) fail('model.vocab', `token ${show(tok)} is not in byte-level spelling`);
    vocab[id] = tok;
  }
  for (const ch of BYTE_TO_CHAR) if (!tokenIds.has(ch)) fail('model.vocab', `lacks byte token ${show(ch)} (byte-level BPE needs all 256)`);
  return vocab;
}

/** Merges in rank order as id pairs: both parts and their concatenation in the vocab, no pair twice. */
function mergeIds(entries: readonly (string | [string, string])[], tokenToId: Map<string, number>, fail: Fail): [number, number][] {
  const merges: [number, number][] = [];
  const seen = new Set<number>();
  for (const [r, e] of entries.entries()) {
    const pair = typeof e === 'string' ? e.split(' ') : e;
    if (pair.length !== 2) fail(`model.merges.${r}`, `${show(e)} is not a pair of tokens`);
    const [ta, tb] = pair as [string, string];
    const a = tokenToId.get(ta);
    const b = tokenToId.get(tb);
    if (a === undefined || b === undefined || !tokenToId.has(ta + tb)) return fail(`model.merges.${r}`, `(${show(ta)}, ${show(tb)}) uses or makes a token missing from the vocab`);
    // HF keeps the last rank of a repeated pair, our encoder the first: refuse the ambiguity.
    if (seen.has(pairKey(a, b))) fail(`model.merges.${r}`, `(${show(ta)}, ${show(tb)}) is repeated`);
    seen.add(pairKey(a, b));
    merges.push([a, b]);
  }
  return merges;
}

/** Check the training options; returns minFrequency (default 2). */
function checkTrainOptions(opts: BpeTrainOptions): number {
  const { vocabSize } = opts;
  const minFrequency = opts.minFrequency ?? 2;
  if (!Number.isInteger(vocabSize) || vocabSize < 256 || vocabSize >= PAIR_STRIDE) throw new UvuError(`bpe: vocabSize must be an integer in [256, ${PAIR_STRIDE}), got ${vocabSize}`);
  if (!Number.isInteger(minFrequency) || minFrequency < 1) throw new UvuError(`bpe: minFrequency must be a positive integer, got ${minFrequency}`);
  checkSpecials(opts.specialTokens, 'bpe');
  return minFrequency;
}

/** The training corpus as distinct words: each a sequence of token ids, with its frequency. */
interface WordCounts {
  words: number[][];
  counts: number[];
}

/**
 * Step 1: frequencies of the pre-tokens of `texts` (special tokens never take part in merges),
 * each spelled in byte tokens (byte b has id b).
 */
function countWords(texts: Iterable<string>, specialTokens: readonly string[]): WordCounts {
  const trie = buildTrie(specialTokens);
  const wordFreq = new Map<string, number>();
  for (const text of texts) {
    for (const [piece, isSpecial] of splitSpecials(text, trie)) {
      if (isSpecial) continue;
      for (const m of piece.matchAll(GPT2_SPLIT)) wordFreq.set(m[0], (wordFreq.get(m[0]) ?? 0) + 1);
    }
  }
  const words: number[][] = [];
  const counts: number[] = [];
  for (const [w, c] of wordFreq) {
    words.push(Array.from(utf8.encode(w)));
    counts.push(c);
  }
  return { words, counts };
}

/** Adjacent-pair statistics of the words, kept current as merges rewrite them. */
interface PairIndex {
  /** pairKey → occurrences, each word weighted by its frequency. */
  count: Map<number, number>;
  /** pairKey → the words it occurs in (may still list a word the pair has since left). */
  words: Map<number, Set<number>>;
  /** Lazy max-heap over (count, -pair): see popBestPair. */
  heap: PairHeap;
}

/** Step 2: count every adjacent pair, note the words it occurs in, and heap the counts. */
function indexPairs({ words, counts }: WordCounts): PairIndex {
  const count = new Map<number, number>();
  const pairWords = new Map<number, Set<number>>();
  for (let w = 0; w < words.length; w++) {
    const s = words[w]!;
    for (let i = 0; i + 1 < s.length; i++) {
      const k = pairKey(s[i]!, s[i + 1]!);
      count.set(k, (count.get(k) ?? 0) + counts[w]!);
      let set = pairWords.get(k);
      if (!set) pairWords.set(k, (set = new Set()));
      set.add(w);
    }
  }
  const heap = new PairHeap();
  for (const [k, c] of count) heap.push(c, k);
  return { count, words: pairWords, heap };
}

/**
 * Step 3: the merge loop. Merge the best pair into a new token (or the existing token of the
 * same spelling) until the vocabulary has vocabSize ids or the best pair occurs fewer than
 * minFrequency times. Byte b keeps id b; merged tokens follow in order of creation.
 */
function learnMerges(corpus: WordCounts, pairs: PairIndex, vocabSize: number, minFrequency: number): { vocab: string[]; merges: [number, number][] } {
  const vocab = [...BYTE_TO_CHAR];
  const tokenToId = new Map(vocab.map((t, i) => [t, i]));
  const merges: [number, number][] = [];
  const mergedPairs = new Set<number>();
  const bar = progress('bpe merges', vocabSize - 256, 'tokens');
  while (vocab.length < vocabSize) {
    const best = popBestPair(pairs);
    if (best === undefined || best.count < minFrequency) break;
    const k = best.key;
    const a = Math.floor(k / PAIR_STRIDE);
    const b = k - a * PAIR_STRIDE;
    // Two merges can spell the same token ("ab"+"c", "a"+"bc"): reuse its id, as HF does.
    const merged = vocab[a]! + vocab[b]!;
    let z = tokenToId.get(merged);
    if (z === undefined) {
      z = vocab.length;
      vocab.push(merged);
      tokenToId.set(merged, z);
      bar.tick();
    }
    // A pair merged before can reappear next to a reused id; it keeps its first rank.
    if (!mergedPairs.has(k)) {
      mergedPairs.add(k);
      merges.push([a, b]);
    }
    mergePair(corpus, pairs, k, z);
  }
  bar.stop();
  return { vocab, merges };
}

/**
 * The most frequent pair (the smaller key on ties), taken off the heap; undefined when no pair
 * is left. The heap is lazy: an entry is valid when its count equals the pair's current count;
 * every count increase pushes a fresh entry, so each live pair always has an entry ≥ its count
 * and the first valid pop is the true (count, pair) maximum.
 */
function popBestPair(pairs: PairIndex): { count: number; key: number } | undefined {
  while (pairs.heap.length > 0) {
    const [c, k] = pairs.heap.pop();
    const cur = pairs.count.get(k) ?? 0;
    if (c === cur) return { count: c, key: k };
    if (c > cur && cur > 0) pairs.heap.push(cur, k);
  }
  return undefined;
}

/** Replace pair `k` by token z in every word containing it, updating the pair index for the changed words. */
function mergePair({ words, counts }: WordCounts, pairs: PairIndex, k: number, z: number): void {
  const a = Math.floor(k / PAIR_STRIDE);
  const b = k - a * PAIR_STRIDE;
  for (const w of pairs.words.get(k) ?? []) {
    const s = words[w]!;
    const t = mergeWord(s, a, b, z);
    if (t.length === s.length) continue; // stale membership: the pair already left this word
    words[w] = t;
    const delta = new Map<number, number>();
    for (let i = 0; i + 1 < s.length; i++) {
      const pk = pairKey(s[i]!, s[i + 1]!);
      delta.set(pk, (delta.get(pk) ?? 0) - counts[w]!);
    }
    for (let i = 0; i + 1 < t.length; i++) {
      const pk = pairKey(t[i]!, t[i + 1]!);
      delta.set(pk, (delta.get(pk) ?? 0) + counts[w]!);
      let set = pairs.words.get(pk);
      if (!set) pairs.words.set(pk, (set = new Set()));
      set.add(w);
    }
    for (const [pk, d] of delta) {
      if (d === 0) continue;
      const n = (pairs.count.get(pk) ?? 0) + d;
      pairs.count.set(pk, n);
      if (d > 0) pairs.heap.push(n, pk);
    }
  }
  pairs.words.delete(k);
}

/** New sequence with every non-overlapping (a, b), scanned left to right, replaced by z. */
function mergeWord(s: number[], a: number, b: number, z: number): number[] {
  const t: number[] = [];
  for (let i = 0; i < s.length; i++) {
    if (i + 1 < s.length && s[i] === a && s[i + 1] === b) {
      t.push(z);
      i++;
    } else t.push(s[i]!);
  }
  return t;
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function checkSpecials(specials: readonly string[], where: string): void {
  const seen = new Set<string>();
  for (const s of specials) {
    if (typeof s !== 'string' || s.length === 0) throw new UvuError(`${where}: special tokens must be non-empty strings`);
    if (seen.has(s)) throw new UvuError(`${where}: special token ${JSON.stringify(s)} is listed twice`);
    seen.add(s);
  }
}

interface TrieNode {
  children: Map<string, TrieNode>;
  /** The special token ending here, if any. */
  end?: string;
}

function buildTrie(words: readonly string[]): TrieNode {
  const root: TrieNode = { children: new Map() };
  for (const w of words) {
    let node = root;
    // By UTF-16 code unit, the unit splitSpecials steps by.
    for (let i = 0; i < w.length; i++) {
      let c = node.children.get(w[i]!);
      if (!c) node.children.set(w[i]!, (c = { children: new Map() }));
      node = c;
    }
    node.end = w;
  }
  return root;
}

/**
 * Split text into [piece, isSpecial] runs: at each position take the longest special token
 * starting there, else move on (leftmost-longest, like HF's added-token matching).
 */
function* splitSpecials(text: string, trie: TrieNode): Generator<[string, boolean]> {
  if (trie.children.size === 0) {
    if (text.length > 0) yield [text, false];
    return;
  }
  let start = 0;
  let i = 0;
  while (i < text.length) {
    let node: TrieNode | undefined = trie;
    let match: string | undefined;
    for (let j = i; j < text.length && (node = node.children.get(text[j]!)); j++) if (node.end !== undefined) match = node.end;
    if (match === undefined) {
      i++;
      continue;
    }
    if (i > start) yield [text.slice(start, i), false];
    yield [match, true];
    i += match.length;
    start = i;
  }
  if (start < text.length) yield [text.slice(start), false];
}

/** Binary min-heap of numbers. */
class MinHeap {
  private a: number[] = [];
  get length(): number {
    return this.a.length;
  }
  push(x: number): void {
    const a = this.a;
    let i = a.length;
    a.push(x);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p]! <= x) break;
      a[i] = a[p]!;
      i = p;
    }
    a[i] = x;
  }
  pop(): number {
    const a = this.a;
    const top = a[0]!;
    const last = a.pop()!;
    if (a.length > 0) {
      let i = 0;
      for (;;) {
        let c = 2 * i + 1;
        if (c >= a.length) break;
        if (c + 1 < a.length && a[c + 1]! < a[c]!) c++;
        if (a[c]! >= last) break;
        a[i] = a[c]!;
        i = c;
      }
      a[i] = last;
    }
    return top;
  }
}

/** Binary max-heap of (count, pairKey): larger count first, then smaller key. */
class PairHeap {
  private c: number[] = [];
  private k: number[] = [];
  get length(): number {
    return this.c.length;
  }
  private before(c1: number, k1: number, c2: number, k2: number): boolean {
    return c1 > c2 || (c1 === c2 && k1 < k2);
  }
  push(count: number, key: number): void {
    const { c, k } = this;
    let i = c.length;
    c.push(count);
    k.push(key);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.before(count, key, c[p]!, k[p]!)) break;
      c[i] = c[p]!;
      k[i] = k[p]!;
      i = p;
    }
    c[i] = count;
    k[i] = key;
  }
  pop(): [number, number] {
    const { c, k } = this;
    const top: [number, number] = [c[0]!, k[0]!];
    const lc = c.pop()!;
    const lk = k.pop()!;
    if (c.length > 0) {
      let i = 0;
      for (;;) {
        let ch = 2 * i + 1;
        if (ch >= c.length) break;
        if (ch + 1 < c.length && this.before(c[ch + 1]!, k[ch + 1]!, c[ch]!, k[ch]!)) ch++;
        if (!this.before(c[ch]!, k[ch]!, lc, lk)) break;
        c[i] = c[ch]!;
        k[i] = k[ch]!;
        i = ch;
      }
      c[i] = lc;
      k[i] = lk;
    }
    return top;
  }
}
