/** `uvu bench-data build|stamps`: the perception benchmark's data. */
import { Command, InvalidArgumentError, Option } from 'commander';
import { buildBench, DEFAULT_BENCH_SEED, DEFAULT_TEST_SCENES, DEFAULT_TRAIN_SCENES, REGIMES, type Regime } from '../perception/build.js';
import { DEFAULT_STAMPS_DIR, listStamps, loadPhotoStampList, photoStats, proposePhoto, PHOTO_STAMPS_LIST } from '../perception/stamps.js';
import { loadRgba } from '../image/io.js';
import { info, progress } from '../util/progress.js';
import { collect, applyOutputOptions, emit, parseNonNegativeInt, parsePositiveInt, withOutputOptions, type OutputOptions } from './common.js';

interface BuildFlags extends OutputOptions {
  out: string;
  backgrounds: string[];
  objects?: string;
  stamps: string;
  trainScenes: number;
  testScenes: number;
  size?: number;
  seed: number;
  regime: Regime;
}


function parseSceneSize(value: string): number {
  const v = parsePositiveInt(value);
  if (v % 32 !== 0 || v < 64 || v > 1024) throw new InvalidArgumentError(`expected a multiple of 32 in [64, 1024], got "${value}"`);
  return v;
}

export function benchDataCommand(): Command {
  const cmd = new Command('bench-data');

  withOutputOptions(
    cmd
      .command('build')
      .description('write scenes, train/test QA items, pretraining captions and a manifest to a folder')
      .requiredOption('--out <dir>', 'output folder (new, empty, or a previous benchmark build, which is replaced)')
      .option('--backgrounds <dir>', 'background photos: folder, file or glob; repeatable (default: bundled photos + data/photos/{train,val})', collect, [])
      .option('--objects <dir>', 'object cut-outs with alpha as DIR/<class>/*.png (default: reviewed tuxpaint photo stamps)')
      .option('--stamps <dir>', 'tuxpaint stamps root', DEFAULT_STAMPS_DIR)
      .option('--train-scenes <n>', 'scenes in the train split', parsePositiveInt, DEFAULT_TRAIN_SCENES)
      .option('--test-scenes <n>', 'scenes in the test split', parsePositiveInt, DEFAULT_TEST_SCENES)
      .addOption(new Option('--regime <name>', 'hard: test objects are unseen photos (192 px); in-distribution: seen photos in new scenes, classes with ≥ 5 photos, larger objects, class-agnostic questions, dense captions (128 px)').choices(REGIMES).default('hard'))
      .option('--size <px>', "scene side in pixels (multiple of 32; default: the regime's, 192 or 128)", parseSceneSize)
      .option('--seed <s>', 'random seed (scenes, splits, questions)', parseNonNegativeInt, DEFAULT_BENCH_SEED),
  ).action(async (o: BuildFlags) => {
    applyOutputOptions(o);
    const bar = progress('bench-data', o.trainScenes + o.testScenes, 'scenes');
    const r = await buildBench({
      out: o.out,
      backgrounds: o.backgrounds,
      objects: o.objects,
      stampsDir: o.stamps,
      trainScenes: o.trainScenes,
      testScenes: o.testScenes,
      size: o.size,
      seed: o.seed,
      regime: o.regime,
      onScene: () => bar.tick(),
    });
    bar.stop();
    const m = r.manifest;
    const result = {
      out: r.out,
      seconds: r.seconds,
      seed: m.seed,
      regime: o.regime,
      size: m.size,
      classes: m.objects.classes.length,
      instances: Object.fromEntries((['train', 'test'] as const).map((s) => [s, m.objects.classes.reduce((a, c) => a + c[s].length, 0)])),
      backgrounds: { train: m.backgrounds.train.length, test: m.backgrounds.test.length },
      scenes: m.scenes,
      items: m.items,
      pretrain: m.pretrain,
    };
    emit(o, result, () =>
      [
        `wrote ${r.out}: ${m.scenes.train} train + ${m.scenes.test} test scenes (${m.size}×${m.size}), ${m.objects.classes.length} classes, ${result.instances.train}/${result.instances.test} train/test instances, ${result.backgrounds.train}/${result.backgrounds.test} train/test backgrounds, ${r.seconds.toFixed(1)} s`,
        ...(['train', 'test'] as const).map((s) => `${s.padEnd(5)} items: ${Object.entries(m.items[s]).map(([t, n]) => `${t} ${n}`).join(', ')}`),
        `pretrain captions: ${m.pretrain}`,
      ].join('\n'),
    );
  });

  withOutputOptions(
    cmd
      .command('stamps')
      .description('check the reviewed photo-stamp list against the installed stamps and the photo heuristic (for maintaining the list)')
      .option('--stamps <dir>', 'tuxpaint stamps root', DEFAULT_STAMPS_DIR)
      .option('--list <file>', 'reviewed list', PHOTO_STAMPS_LIST),
  ).action(async (o: OutputOptions & { stamps: string; list: string }) => {
    applyOutputOptions(o);
    const list = loadPhotoStampList(o.list);
    const kept = new Set(list.classes.flatMap((c) => c.instances));
    const rejected = new Set(list.rejected.map((r) => r.file));
    const stamps = listStamps(o.stamps);
    const byRel = new Set(stamps.map((s) => s.rel));
    const bar = progress('stamps', stamps.length, 'stamps');
    let proposed = 0;
    const unreviewed: string[] = [];
    const keptNotProposed: string[] = [];
    for (const s of stamps) {
      const p = proposePhoto(photoStats(await loadRgba(s.path)), s);
      bar.tick();
      proposed += p ? 1 : 0;
      if (p && !kept.has(s.rel) && !rejected.has(s.rel)) unreviewed.push(s.rel);
      if (!p && kept.has(s.rel)) keptNotProposed.push(s.rel);
    }
    bar.stop();
    const missing = [...kept].filter((f) => !byRel.has(f));
    if (missing.length) info(`listed but not installed: ${missing.join(' ')}`);
    const result = { stamps: stamps.length, proposed, kept: kept.size, classes: list.classes.length, rejected: rejected.size, kept_not_proposed: keptNotProposed, proposed_unlisted: unreviewed.length, missing };
    emit(o, result, () =>
      `${stamps.length} stamps, ${proposed} proposed as photographs; list v${list.version}: ${kept.size} kept in ${list.classes.length} classes (${keptNotProposed.length} of them not proposed), ${rejected.size} rejected, ${unreviewed.length} proposed photos not used, ${missing.length} listed files missing`,
    );
  });

  return cmd;
}
