/** `uvu codebook build|refine|eval`. */
import { Command, Option } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import { buildKmeansCodebook, type KmeansBuildOptions, type KmeansTrainingSet } from '../codebook/build.js';
import type { AssignAll } from '../codebook/kmeans.js';
import type { RedisTarget } from '../cluster/redis.js';
import { createHash } from 'node:crypto';
import { loadCodebook, saveCodebook, type Codebook } from '../codebook/file.js';
import { buildUvuCodebook, estimateMemory } from '../codebook/uvu/build.js';
import { parseUvuConfig, type UvuClusterConfig } from '../codebook/uvu/config.js';
import type { AssignBackendFactory } from '../codebook/uvu/assign.js';
import { join } from 'node:path';
import { writeFileAtomic } from '../util/atomic.js';
import type { CodebookMetrics } from '../codebook/metrics.js';
import { evalCodebookOnImages, evalCodebookOnStore, tokenChanges } from '../codebook/eval.js';
import { PatchStore } from '../patches/store.js';
import { info, progress } from '../util/progress.js';
import { UsageError } from '../util/errors.js';
import { applyOutputOptions, emit, fmt, parseNonNegative, parsePositiveInt, parseNonNegativeInt, withOutputOptions, type OutputOptions } from './common.js';
import { DEFAULT_CODEBOOK_SEED, DEFAULT_MAX_PIXELS, DEFAULT_PE_SCALE } from '../util/defaults.js';
import { parseSize } from '../util/limits.js';

export function codebookCommand(): Command {
  const cmd = new Command('codebook');

  withOutputOptions(
    cmd
      .command('build')
      .description('cluster patches of a store into a K-entry codebook (safetensors): baseline k-means or the paper\'s method')
      .requiredOption('--patches <dir>', 'patch store to train on')
      .option('--size <K>', 'codebook size K (required unless given by --config)', parsePositiveInt)
      .addOption(new Option('--method <name>', 'kmeans: Faiss-style Lloyd; uvu: PE + dedup + iterative hierarchical clustering').choices(['kmeans', 'uvu']).default('kmeans'))
      .option('--seed <s>', 'random seed', parseNonNegativeInt)
      .addOption(new Option('--pe <type>', 'positional encoding before clustering (default: none for kmeans, 2d-sincos for uvu)').choices(['none', '1d-sincos', '2d-sincos']))
      .option('--pe-scale <lambda>', `scale λ of the positional encoding (default ${DEFAULT_PE_SCALE})`, parseNonNegative)
      .option('--iters <n>', 'kmeans: Lloyd iterations', parsePositiveInt, 25)
      .option('--sample <n>', 'kmeans: training patches to draw from the store (default: all, at most 256·K)', parsePositiveInt)
      .addOption(new Option('--init <how>', 'kmeans: centre initialisation').choices(['random', 'kmeans++']).default('random'))
      .option('--config <file>', 'uvu: JSON config file (fields as in README; flags override it)')
      .option('--round-size <n>', 'uvu: N_round, patches per round (paper: 20M)', parsePositiveInt)
      .option('--pool-factor <f>', 'uvu: candidate pool = f·N_round patches per round', parseNonNegative)
      .option('--delta <n>', 'uvu: δ, clusters with fewer members per round go to the long-tail cache', parseNonNegativeInt)
      .option('--alpha <n>', 'uvu: α, re-cluster the cache when it holds this many features', parsePositiveInt)
      .option('--epsilon <e>', 'uvu: ε, stop when the validation objective changes less than this (relative)', parseNonNegative)
      .option('--max-rounds <n>', 'uvu: maximum rounds', parsePositiveInt)
      .option('--val-size <n>', 'uvu: fixed validation sample for the convergence test', parsePositiveInt)
      .option('--workers <n>', 'uvu: worker threads for the assignment (1 = in-process)', parsePositiveInt)
      .option('--redis [url]', 'run the assignment (uvu rounds, k-means iterations) on `uvu worker` processes through this Redis; without URL: $UVU_REDIS_URL (keeps the password out of the process list)')
      .option('--queue <name>', 'with --redis: BullMQ queue of the workers', 'uvu-assign')
      .option('--work-dir <dir>', 'with --redis: folder on storage shared with the workers for centres and shard results (default: CHECKPOINT_DIR/cluster for uvu, OUT.cluster for kmeans)')
      .option('--shard-size <n>', 'patches per assignment shard (uvu: threads and workers; kmeans --redis: workers, a multiple of 4096); default 8192', parsePositiveInt)
      .option('--max-memory <size>', 'uvu: refuse to start above this estimated peak (e.g. 8G, 512M)', parseMemory)
      .option('--checkpoint-dir <dir>', 'uvu: per-round checkpoints (default: OUT.ckpt)')
      .option('--resume', 'uvu: continue from the newest good checkpoint', false)
      .option('--log <file>', 'uvu: JSONL log, one line per round (default: OUT.log.jsonl)')
      .option('--no-verify', 'skip the sha256 check of the store\'s shards (done once per run)')
      .requiredOption('--out <file>', 'codebook file to write (.safetensors)'),
  ).action(async (o: BuildFlags) => {
    applyOutputOptions(o);
    if (o.method === 'uvu') return buildUvu(o);
    if (o.size === undefined) throw new UsageError('codebook build: --size is required');
    const pe = o.pe ?? 'none';
    const options: KmeansBuildOptions = { method: 'kmeans', size: o.size, iters: o.iters, seed: o.seed ?? DEFAULT_CODEBOOK_SEED, sample: o.sample, init: o.init, pe: { type: pe, scale: pe === 'none' ? 0 : (o.peScale ?? DEFAULT_PE_SCALE) } };
    const remote = await kmeansOnWorkers(o, options);
    const bar = progress('k-means', o.iters, 'iters');
    const t0 = performance.now();
    let cb: Codebook;
    try {
      cb = buildKmeansCodebook(
        o.patches,
        options,
        (s) => {
          bar.tick();
          if (!process.stderr.isTTY) info(`iter ${s.iter}: objective ${s.objective.toPrecision(7)} mse ${s.mse.toExponential(4)} imbalance ${s.imbalance.toFixed(3)} splits ${s.nsplit} (${s.seconds.toFixed(2)} s)`);
        },
        { verify: o.verify, assignAll: remote?.start },
      );
    } finally {
      remote?.close();
    }
    bar.stop();
    saveCodebook(o.out, cb);
    const seconds = (performance.now() - t0) / 1000;
    const result = { out: o.out, k: cb.K, method: o.method, pe: cb.pe, seconds, build: cb.build, metrics: cb.metrics };
    emit(o, result, () => `wrote ${o.out}: K = ${cb.K}, trained on ${cb.build.trained_on} patches, final mse ${fmt(cb.metrics.train_mse as number, 6)}, ${seconds.toFixed(1)} s`);
  });

  withOutputOptions(
    cmd
      .command('refine')
      .description('continue the uvu rounds of a codebook on new patches; token ids of unchanged clusters stay put')
      .argument('<codebook>', 'codebook built with --method uvu')
      .requiredOption('--patches <dir>', 'patch store with the new data')
      .requiredOption('--out <file>', 'refined codebook to write')
      .option('--max-rounds <n>', 'rounds on the new data (default: the original config)', parsePositiveInt)
      .option('--workers <n>', 'worker threads for the assignment', parsePositiveInt)
      .option('--checkpoint-dir <dir>', 'per-round checkpoints (default: OUT.ckpt)')
      .option('--resume', 'continue from the newest good checkpoint', false)
      .option('--log <file>', 'JSONL log, one line per round (default: OUT.log.jsonl)')
      .option('--no-verify', 'skip the sha256 check of the store\'s shards (done once per run)'),
  ).action(async (file: string, o: OutputOptions & { patches: string; out: string; maxRounds?: number; workers?: number; checkpointDir?: string; resume: boolean; log?: string; verify: boolean }) => {
    applyOutputOptions(o);
    const initial = loadCodebook(file);
    if (initial.build.method !== 'uvu') throw new UsageError(`${file}: refine continues a codebook built with --method uvu (this one: ${String(initial.build.method)})`);
    const base = parseUvuConfig(initial.build.config, `${file} build config`);
    const config = parseUvuConfig({ ...base, ...(o.maxRounds ? { maxRounds: o.maxRounds } : {}), ...(o.workers ? { workers: o.workers } : {}) });
    const t0 = performance.now();
    const { codebook, state, movedSlots } = await runUvu(o, config, initial);
    const seconds = (performance.now() - t0) / 1000;
    // The run above checked the shards already (unless --no-verify): no second pass here.
    const changed = tokenChanges(initial, codebook, o.patches, config.valSize, { verify: false });
    const result = { out: o.out, k: codebook.K, rounds: state.round, moved_ids: movedSlots, stable_ids: codebook.K - movedSlots, token_changes_on_new_data: changed, seconds, totals: state.totals };
    emit(o, result, () => `wrote ${o.out}: ${state.round} rounds on ${o.patches}; ${movedSlots} of ${codebook.K} token ids moved (centre replaced), ${(100 * changed).toFixed(1)}% of sampled new patches change token (${seconds.toFixed(1)} s)`);
  });

  withOutputOptions(
    cmd
      .command('eval')
      .description('measure PRP, PSC, MSE, PSNR, R², utilization and cluster radii on a store or on images')
      .argument('<codebook>', 'codebook file')
      .option('--patches <dir>', 'evaluate on every patch of this store')
      .option('--images <paths...>', 'evaluate on the patches of these images')
      .option('--max-pixels <n>', 'resize policy for --images (w·h ≤ n)', parsePositiveInt, DEFAULT_MAX_PIXELS)
      .option('--no-verify', 'with --patches: skip the sha256 check of each shard before its first read'),
  ).action(async (file: string, o: OutputOptions & { patches?: string; images?: string[]; maxPixels: number; verify: boolean }) => {
    applyOutputOptions(o);
    if (Boolean(o.patches) === Boolean(o.images)) throw new UsageError('codebook eval: give exactly one of --patches DIR or --images PATHS...');
    const cb = loadCodebook(file);
    let metrics: CodebookMetrics;
    if (o.patches) {
      const store = PatchStore.open(o.patches, { verify: o.verify });
      const bar = progress('eval', store.count, 'patches');
      metrics = evalCodebookOnStore(cb, store, (n) => bar.tick(n));
      bar.stop();
      store.close();
    } else {
      for (const p of o.images!) if (!existsSync(p)) throw new UsageError(`${p}: no such file`);
      const bar = progress('eval', o.images!.length, 'images');
      metrics = await evalCodebookOnImages(cb, o.images!, o.maxPixels, () => bar.tick());
      bar.stop();
    }
    emit(o, { codebook: file, ...metrics }, () => formatMetrics(metrics));
  });

  return cmd;
}

export function formatMetrics(m: CodebookMetrics): string {
  return [
    `patches     ${m.m}`,
    `PRP         ${fmt(m.prp)}  (1 − MSE/σ²_max, σ²_max = ${fmt(m.sigma2_max, 5)})`,
    `PSC         ${m.psc.toExponential(4)}`,
    `MSE         ${m.mse.toExponential(4)}  per element, pixels in [0,1]`,
    `PSNR        ${fmt(m.psnr, 2)} dB`,
    `R²          ${fmt(m.r2)}`,
    `utilization ${fmt(m.utilization)}  (${m.k_active} of ${m.k} codes used)`,
    `radius q10/q50/q90  ${fmt(m.radius_q10)} / ${fmt(m.radius_q50)} / ${fmt(m.radius_q90)}`,
  ].join('\n');
}

interface BuildFlags extends OutputOptions {
  patches: string;
  size?: number;
  method: 'kmeans' | 'uvu';
  seed?: number;
  pe?: 'none' | '1d-sincos' | '2d-sincos';
  peScale?: number;
  iters: number;
  sample?: number;
  init: 'random' | 'kmeans++';
  config?: string;
  roundSize?: number;
  poolFactor?: number;
  delta?: number;
  alpha?: number;
  epsilon?: number;
  maxRounds?: number;
  valSize?: number;
  workers?: number;
  shardSize?: number;
  redis?: string | true;
  queue: string;
  workDir?: string;
  maxMemory?: number;
  checkpointDir?: string;
  resume: boolean;
  log?: string;
  verify: boolean;
  out: string;
}

/** A size flag ("8G", "512M"; a plain number is MiB) → MiB. */
function parseMemory(value: string): number {
  return /^\d+(\.\d+)?$/.test(value.trim()) ? parseSize(`${value}M`) / 2 ** 20 : parseSize(value) / 2 ** 20;
}

/**
 * The --config file: a JSON object (fields checked by parseUvuConfig after the flags are laid
 * over it). Unreadable, invalid JSON, or anything but an object is a usage error naming the file.
 */
export function readUvuConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`${path}: cannot read the --config file (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new UsageError(`${path}: the --config file is not valid JSON`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new UsageError(`${path}: the --config file must hold a JSON object of uvu fields, not ${raw === null ? 'null' : Array.isArray(raw) ? 'an array' : `a ${typeof raw}`}`);
  }
  return raw as Record<string, unknown>;
}

/** Config file (if any) overlaid with the flags that were given. */
function uvuConfigFrom(o: BuildFlags): UvuClusterConfig {
  const fromFile: Record<string, unknown> = o.config ? readUvuConfigFile(o.config) : {};
  const flags: Record<string, unknown> = {
    size: o.size,
    seed: o.seed,
    roundSize: o.roundSize,
    poolFactor: o.poolFactor,
    delta: o.delta,
    alpha: o.alpha,
    epsilon: o.epsilon,
    maxRounds: o.maxRounds,
    valSize: o.valSize,
    workers: o.workers,
    shardSize: o.shardSize,
    maxMemoryMiB: o.maxMemory,
  };
  if (o.pe) flags.pe = { type: o.pe, scale: o.pe === 'none' ? 0 : (o.peScale ?? DEFAULT_PE_SCALE) };
  else if (o.peScale !== undefined) flags.pe = { type: '2d-sincos', scale: o.peScale };
  for (const k of Object.keys(flags)) if (flags[k] === undefined) delete flags[k];
  if (fromFile.size === undefined && flags.size === undefined) throw new UsageError('codebook build: --size is required (or "size" in --config)');
  return parseUvuConfig({ ...fromFile, ...flags }, o.config ?? 'flags');
}

/** Run the rounds with a progress bar, a JSONL log rewritten after each round, and save the codebook. */
type RunFlags = OutputOptions & { patches: string; out: string; checkpointDir?: string; resume: boolean; log?: string; verify: boolean; redis?: string | true; queue?: string; workDir?: string };

/**
 * With --redis, k-means's per-iteration assignment on the workers (the coordinator thread is
 * started once the training set is known); undefined without --redis.
 */
async function kmeansOnWorkers(o: BuildFlags, options: KmeansBuildOptions): Promise<{ start: (t: KmeansTrainingSet) => AssignAll; close: () => void } | undefined> {
  if (!o.redis) return undefined;
  const target = await checkedRedisTarget(o.redis);
  const { remoteKmeans } = await import('../cluster/kmeans-remote.js');
  let remote: { assignAll: AssignAll; close: () => void } | undefined;
  return {
    start: (training) => {
      const runId = createHash('sha256').update(JSON.stringify(options)).update(training.fingerprint).digest('hex');
      remote = remoteKmeans({ target, queue: o.queue, workDir: o.workDir ?? `${o.out}.cluster`, shardSize: o.shardSize ?? 8192, runId, quiet: Boolean(o.quiet) }, training);
      return remote.assignAll;
    },
    close: () => remote?.close(),
  };
}

/** The Redis target of --redis [URL], checked with one PING (a wrong password is one line, before any work). */
async function checkedRedisTarget(flag: string | true): Promise<RedisTarget> {
  const { redisTarget } = await import('./cluster.js');
  const { connectRedis } = await import('../cluster/redis.js');
  const target = redisTarget(flag, 'codebook build');
  (await connectRedis(target)).disconnect();
  return target;
}

/** With --redis: the cluster backend (loaded only then), else undefined (threads in this process). */
async function assignBackendFor(o: RunFlags, checkpointDir: string): Promise<AssignBackendFactory | undefined> {
  if (!o.redis) return undefined;
  const target = await checkedRedisTarget(o.redis);
  const { RedisAssignBackend } = await import('../cluster/coordinator.js');
  return (ctx) => RedisAssignBackend.open({ target, queue: o.queue ?? 'uvu-assign', workDir: o.workDir ?? join(checkpointDir, 'cluster') }, ctx);
}

async function runUvu(o: RunFlags, config: UvuClusterConfig, initial?: Codebook) {
  const logPath = o.log ?? `${o.out}.log.jsonl`;
  const checkpointDir = o.checkpointDir ?? `${o.out}.ckpt`;
  const assignBackend = await assignBackendFor(o, checkpointDir);
  const bar = progress('uvu rounds', config.maxRounds, 'rounds');
  const result = await buildUvuCodebook({
    storeDir: o.patches,
    verify: o.verify,
    config,
    checkpointDir,
    resume: o.resume,
    initial,
    assignBackend,
    onRound: (log, state) => {
      writeFileAtomic(logPath, state.history.map((h) => JSON.stringify(h)).join('\n') + '\n');
      bar.set(log.round);
      if (!process.stderr.isTTY) info(`round ${log.round}: objective ${log.objective.toPrecision(6)} PRP ${log.prp.toFixed(4)} active ${log.k_active} cached ${log.clusters_cached} cache ${log.cache_size} reclusters ${log.reclusters} dups ${log.duplicates_dropped} splits ${log.splits} (${log.patches_per_s.toFixed(0)} patches/s)`);
    },
  });
  bar.stop();
  saveCodebook(o.out, result.codebook);
  return result;
}

async function buildUvu(o: BuildFlags): Promise<void> {
  const config = uvuConfigFrom(o);
  const t0 = performance.now();
  const { codebook, state } = await runUvu(o, config);
  const seconds = (performance.now() - t0) / 1000;
  const last = state.history.at(-1);
  const estimated = Object.values(estimateMemory(config)).reduce((a, b) => a + b, 0);
  const result = {
    out: o.out,
    k: codebook.K,
    method: 'uvu',
    pe: codebook.pe,
    rounds: state.round,
    converged: state.converged,
    seconds,
    val_objective: last?.objective ?? null,
    val_prp: last?.prp ?? null,
    patches_per_s: state.history.length ? state.history.reduce((a, h) => a + h.patches_per_s, 0) / state.history.length : null,
    estimated_peak_mib: estimated / 2 ** 20,
    peak_rss_mib: process.resourceUsage().maxRSS / 1024,
    totals: state.totals,
    config,
  };
  emit(o, result, () => `wrote ${o.out}: K = ${codebook.K}, ${state.round} rounds (${state.converged ? 'converged' : 'max rounds'}), validation PRP ${last ? fmt(last.prp) : 'n/a'}, ${state.totals.duplicatesDropped} duplicates dropped, ${state.totals.reclusters} re-clusters, ${seconds.toFixed(1)} s`);
}
