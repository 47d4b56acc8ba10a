/**
 * `uvu bench-data build`: writes a perception benchmark folder
 *
 *   DIR/scenes/<split>-NNNNNN.png   the scenes (size×size RGB)
 *   DIR/scenes.jsonl                one layout per scene (background, objects, exact boxes)
 *   DIR/train.jsonl, DIR/test.jsonl QA items (sample JSONL format + metadata, see tasks.ts)
 *   DIR/pretrain.jsonl              captions of the train scenes ({image, text})
 *   DIR/manifest.json               seed, sources, classes and instance splits, counts
 *
 * Two regimes (REGIMES):
 *   hard             unseen instances: test scenes show object photos no training scene shows;
 *                    every reviewed class, objects 18–38 % of the side, 192-px scenes, the four
 *                    class-named tasks, short captions. Many classes have one or two photos, so
 *                    many test questions cannot be learned from the train split (issue 14).
 *   in-distribution  seen instances in new scenes: classes with ≥ 5 photos, every photo in both
 *                    splits (backgrounds stay disjoint), objects 30–50 % of the side, 128-px
 *                    scenes, the class-agnostic tasks as well, dense captions (count, names,
 *                    regions, boxes), existence questions balanced per class (no hard
 *                    negatives: they made "no" predictable from the class name alone).
 *
 * Every file is written atomically and manifest.json last, so a folder with a manifest is a
 * complete build. The output is a pure function of (sources, seed, size, scene counts): no
 * timestamps, so two builds with the same arguments are byte-identical.
 */
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { writePng } from '../image/io.js';
import { writeFileAtomic } from '../util/atomic.js';
import { UsageError, UvuError } from '../util/errors.js';
import { parseOrFail, readJsonFile } from '../util/fsio.js';
import { Rng } from '../util/rng.js';
import { backgroundsFrom, defaultBackgrounds, hashSeed, makeScene, prepareSplit, sharedInstances, splitBackgrounds, splitInstances, ALPHA_MIN, DEFAULT_LAYOUT, MAX_IOU, MIN_VISIBLE, TEST_FRACTION, type BackgroundSource, type LayoutParams, type Scene, type Split } from './scenes.js';
import { DEFAULT_STAMPS_DIR, folderLibrary, tuxpaintLibrary, type ObjectLibrary } from './stamps.js';
import { caption, denseCaption, isBoxTask, makeAgnosticItems, makeItems, NAMED_TASKS, TASKS, HARD_NEGATIVE_P, SPATIAL_MARGIN, COUNT_ZERO_P, type CaptionSample, type QaItem, type Task, type TaskState } from './tasks.js';

export const BENCH_FORMAT = 'uvu-perception-bench';
export const BENCH_VERSION = 1;
export const DEFAULT_TRAIN_SCENES = 2000;
export const DEFAULT_TEST_SCENES = 500;
export const DEFAULT_SCENE_SIZE = 192;
export const DEFAULT_BENCH_SEED = 0;

export const REGIMES = ['hard', 'in-distribution'] as const;
export type Regime = (typeof REGIMES)[number];

/** What a regime changes in the generator (see the header). */
export interface RegimeSpec {
  /** Classes with fewer photos are left out. */
  minInstances: number;
  /** true: both splits use every instance; false: instances are held out per class (splitInstances). */
  seenInstances: boolean;
  layout: LayoutParams;
  /** Also ask the class-agnostic questions (AGNOSTIC_TASKS). */
  agnosticTasks: boolean;
  /** Pretraining captions: denseCaption (count, names, regions, boxes) instead of caption. */
  denseCaptions: boolean;
  /** Existence questions balanced per class (TaskState.existenceByClass) instead of hard negatives. */
  balancedExistence: boolean;
  /** Default scene side. */
  size: number;
}

export const REGIME_SPECS: Record<Regime, RegimeSpec> = {
  hard: { minInstances: 1, seenInstances: false, layout: DEFAULT_LAYOUT, agnosticTasks: false, denseCaptions: false, balancedExistence: false, size: DEFAULT_SCENE_SIZE },
  'in-distribution': { minInstances: 5, seenInstances: true, layout: { scaleRange: [0.3, 0.5], singleObjectP: 0.5 }, agnosticTasks: true, denseCaptions: true, balancedExistence: true, size: 128 },
};

export interface BenchBuildOptions {
  out: string;
  /** Background folders/files/globs; default: the bundled photos plus data/photos/{train,val}. */
  backgrounds?: string[];
  /** Backgrounds given directly (library use and tests); overrides `backgrounds`. */
  backgroundSources?: BackgroundSource[];
  /** Cut-out folder DIR/<class>/*.png; default: the reviewed tuxpaint photo stamps. */
  objects?: string;
  /** Root of the tuxpaint stamps (default /usr/share/tuxpaint/stamps). */
  stampsDir?: string;
  trainScenes?: number;
  testScenes?: number;
  /** Scene side; default: the regime's. */
  size?: number;
  seed?: number;
  /** Default 'hard' (unseen instances). */
  regime?: Regime;
  /** Called after each scene (for progress reporting). */
  onScene?: (done: number, total: number) => void;
}

const count = z.number().int().nonnegative();
const perSplit = <T extends z.ZodType>(t: T) => z.object({ train: t, test: t });
/** The four named tasks always; the class-agnostic ones in regimes that ask them. */
const perTask = <T extends z.ZodType>(t: T) => z.object({ grounding: t, counting: t, spatial: t, existence: t, 'counting-any': t.optional(), 'grounding-any': t.optional(), naming: t.optional(), ordering: t.optional() });

/** A scene side: a multiple of the 32-px patch in [64, 1024] (as checkSceneSize). */
export const SceneSizeSchema = z.number().int().min(64).max(1024).multipleOf(32);

/** DIR/manifest.json of a benchmark: the one schema its reader checks. */
export const BenchManifestSchema = z.object({
  format: z.literal(BENCH_FORMAT),
  version: z.literal(BENCH_VERSION),
  seed: z.number().int().nonnegative(),
  size: SceneSizeSchema,
  objects: z.object({
    source: z.string(),
    selection: z.string(),
    classes: z.array(z.object({ name: z.string().min(1), plural: z.string().min(1), category: z.string(), train: z.array(z.string()), test: z.array(z.string()) })),
  }),
  backgrounds: perSplit(z.array(z.string())),
  scenes: perSplit(count),
  items: perSplit(perTask(count)),
  /** Answer histograms per task (counts, yes/no); empty for grounding. */
  answers: perSplit(perTask(z.record(z.string(), count))),
  pretrain: count,
  params: z.record(z.string(), z.unknown()),
});
export type BenchManifest = z.infer<typeof BenchManifestSchema>;

export interface BenchBuildResult {
  out: string;
  manifest: BenchManifest;
  seconds: number;
}

/** A scene side must be a multiple of the 32-px patch, at least two patches. */
export function checkSceneSize(size: number): void {
  if (!Number.isInteger(size) || size < 64 || size % 32 !== 0 || size > 1024) throw new UsageError(`scene size must be a multiple of 32 in [64, 1024], got ${size}`);
}

/** Refuse to write into a non-empty folder that is not a previous benchmark build; clear a previous build. */
function prepareOut(out: string): void {
  if (existsSync(out)) {
    if (!statSync(out).isDirectory()) throw new UvuError(`${out}: exists and is not a folder`);
    const entries = readdirSync(out);
    if (entries.length > 0 && !entries.includes('manifest.json')) throw new UvuError(`${out}: folder is not empty and holds no benchmark (manifest.json); choose an empty or new folder`);
    for (const f of ['manifest.json', 'scenes', 'scenes.jsonl', 'train.jsonl', 'test.jsonl', 'pretrain.jsonl']) rmSync(join(out, f), { recursive: true, force: true });
  }
  mkdirSync(join(out, 'scenes'), { recursive: true });
}

const jsonl = (rows: object[]): string => rows.map((r) => JSON.stringify(r)).join('\n') + (rows.length ? '\n' : '');

export async function buildBench(opts: BenchBuildOptions): Promise<BenchBuildResult> {
  const t0 = performance.now();
  const regime = opts.regime ?? 'hard';
  const spec = REGIME_SPECS[regime];
  if (!spec) throw new UsageError(`unknown regime "${String(regime)}" (expected one of ${REGIMES.join(', ')})`);
  const size = opts.size ?? spec.size;
  checkSceneSize(size);
  const seed = opts.seed ?? DEFAULT_BENCH_SEED;
  const counts: Record<Split, number> = { train: opts.trainScenes ?? DEFAULT_TRAIN_SCENES, test: opts.testScenes ?? DEFAULT_TEST_SCENES };
  for (const s of ['train', 'test'] as const) if (!Number.isInteger(counts[s]) || counts[s] < 1) throw new UsageError(`${s} scene count must be a positive integer, got ${counts[s]}`);

  const fullLib: ObjectLibrary = opts.objects ? folderLibrary(opts.objects) : tuxpaintLibrary(opts.stampsDir ?? DEFAULT_STAMPS_DIR);
  const lib: ObjectLibrary = { ...fullLib, classes: fullLib.classes.filter((c) => c.instances.length >= spec.minInstances) };
  if (lib.classes.length < 2) throw new UvuError(`${fullLib.root}: regime ${regime} needs at least 2 object classes with ≥ ${spec.minInstances} photos, found ${lib.classes.length}`);
  const bgs = opts.backgroundSources ?? (opts.backgrounds?.length ? backgroundsFrom(opts.backgrounds) : defaultBackgrounds());
  if (bgs.length === 0) throw new UvuError('no background photos found (give --backgrounds DIR)');
  const bgSplit = splitBackgrounds(bgs, seed);
  const instSplit = spec.seenInstances ? sharedInstances(lib) : splitInstances(lib, seed);
  prepareOut(opts.out);

  const total = counts.train + counts.test;
  let done = 0;
  const scenes: Scene[] = [];
  const items: Record<Split, QaItem[]> = { train: [], test: [] };
  const captions: CaptionSample[] = [];
  for (const split of ['train', 'test'] as const) {
    const ctx = await prepareSplit(lib, split, instSplit[split], bgSplit[split], size, seed, spec.layout);
    const state: TaskState = { spatial: 0, existence: 0, ...(spec.balancedExistence ? { existenceByClass: new Map() } : {}) };
    for (let i = 0; i < counts[split]; i++) {
      const { scene, image } = await makeScene(ctx, i);
      const rel = `scenes/${scene.id}.png`;
      await writePng(join(opts.out, rel), image);
      scenes.push(scene);
      const rng = new Rng(hashSeed(seed, `items/${scene.id}`));
      items[split].push(...makeItems(scene, rel, lib.classes, state, rng));
      if (spec.agnosticTasks) items[split].push(...makeAgnosticItems(scene, rel));
      if (split === 'train') captions.push({ image: rel, text: spec.denseCaptions ? denseCaption(scene, lib.classes) : caption(scene, lib.classes) });
      opts.onScene?.(++done, total);
    }
  }

  writeFileAtomic(join(opts.out, 'scenes.jsonl'), jsonl(scenes));
  writeFileAtomic(join(opts.out, 'train.jsonl'), jsonl(items.train));
  writeFileAtomic(join(opts.out, 'test.jsonl'), jsonl(items.test));
  writeFileAtomic(join(opts.out, 'pretrain.jsonl'), jsonl(captions));
  const tasks: readonly Task[] = spec.agnosticTasks ? TASKS : NAMED_TASKS;
  const tally = (split: Split) => {
    const n = Object.fromEntries(tasks.map((t) => [t, 0])) as Record<Task, number>;
    const answers = Object.fromEntries(tasks.map((t) => [t, {} as Record<string, number>])) as Record<Task, Record<string, number>>;
    for (const it of items[split]) {
      n[it.task]++;
      // Grounding answers are boxes, nothing to tally.
      if (!isBoxTask(it.task)) answers[it.task][it.answer] = (answers[it.task][it.answer] ?? 0) + 1;
    }
    return { n, answers };
  };
  const tr = tally('train'), te = tally('test');
  const manifest: BenchManifest = {
    format: BENCH_FORMAT,
    version: BENCH_VERSION,
    seed,
    size,
    objects: {
      source: lib.root,
      selection: lib.selection,
      classes: lib.classes.map((c) => ({ name: c.name, plural: c.plural, category: c.category, train: (instSplit.train.get(c.name) ?? []).map((i) => i.id), test: (instSplit.test.get(c.name) ?? []).map((i) => i.id) })),
    },
    backgrounds: { train: bgSplit.train.map((b) => b.id), test: bgSplit.test.map((b) => b.id) },
    scenes: counts,
    items: { train: tr.n, test: te.n },
    answers: { train: tr.answers, test: te.answers },
    pretrain: captions.length,
    params: {
      ...(regime === 'hard' ? {} : { regime, minInstances: spec.minInstances, seenInstances: spec.seenInstances, singleObjectP: spec.layout.singleObjectP, agnosticTasks: spec.agnosticTasks, denseCaptions: spec.denseCaptions, balancedExistence: spec.balancedExistence }),
      testFraction: TEST_FRACTION, maxIou: MAX_IOU, minVisible: MIN_VISIBLE, alphaMin: ALPHA_MIN, scaleRange: spec.layout.scaleRange, spatialMargin: SPATIAL_MARGIN, hardNegativeP: HARD_NEGATIVE_P, countZeroP: COUNT_ZERO_P,
    },
  };
  writeFileAtomic(join(opts.out, 'manifest.json'), `${JSON.stringify(manifest, null, 1)}\n`);
  return { out: opts.out, manifest, seconds: (performance.now() - t0) / 1000 };
}

/** Read a benchmark's manifest: one schema check (format, version, sizes, counts). */
export function readBenchManifest(dir: string): BenchManifest {
  const path = join(dir, 'manifest.json');
  if (!existsSync(path)) throw new UvuError(`${path}: not found (is this a benchmark folder built by \`uvu bench-data build\`?)`);
  return parseOrFail(BenchManifestSchema, readJsonFile(path, 'benchmark manifest'), `${path}: not a perception benchmark manifest`);
}
