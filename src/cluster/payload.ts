/**
 * The assignment job a coordinator queues and a worker runs: one shard of a round's candidate
 * pool. It names everything by reference (store folder and its fingerprint, the work folder, the
 * content hashes of the round's centres and pool indices); results go to a file named by the job
 * key. `version` is the payload format, `code` the uvu version that made it: a worker refuses a
 * job of another format or code version, since another version may assign differently.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { PosEncSchema } from '../codebook/posenc.js';

/** Format of the job payload; raise it whenever its fields or their meaning change. */
export const PAYLOAD_VERSION = 1;

/** The uvu version of this code (package.json), which a worker and its coordinator must share. */
export const CODE_VERSION: string = (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** Default BullMQ queue of assignment jobs. */
export const DEFAULT_QUEUE = 'uvu-assign';

const hex64 = z.string().regex(/^[0-9a-f]{64}$/, 'a sha256 in hex');
/** Job keys name result files and BullMQ jobs: short, plain, no ":" (BullMQ's separator). */
export const JOB_KEY = /^[A-Za-z0-9_-]{1,128}$/;

export const AssignPayloadSchema = z
  .object({
    kind: z.literal('assign'),
    version: z.number().int(),
    code: z.string().max(64),
    /** Absolute path of the patch store (the same on every machine: a shared mount). */
    store: z.string().min(1).max(4096),
    /** Content fingerprint of that store. */
    fingerprint: hex64,
    /** Absolute path of the run's work folder on shared storage. */
    work: z.string().min(1).max(4096),
    /** Content hash of work/centres/<hash>.safetensors (centers [Ka, D] f32, slots [Ka] i32). */
    centres: hex64,
    /** Content hash of work/indices/<hash>.safetensors (the round's ascending store indices, u32). */
    indices: hex64,
    round: z.number().int().min(0),
    shard: z.number().int().min(0),
    shardSize: z.number().int().min(1).max(1 << 24),
    pe: PosEncSchema,
    /** Result file: work/results/<key>.safetensors. */
    key: z.string().regex(JOB_KEY),
  })
  .strict();
export type AssignPayload = z.infer<typeof AssignPayloadSchema>;

/** What a worker returns for a job (the results themselves are in the result file). */
export interface AssignReturn {
  worker: string;
  patches: number;
  /** Bytes of the result file written. */
  bytes: number;
  /** Milliseconds: reading centres/indices (0 when cached), reading and assigning the patches, writing the result. */
  loadMs: number;
  computeMs: number;
  writeMs: number;
}

export const resultName = (key: string): string => `results/${key}.safetensors`;
