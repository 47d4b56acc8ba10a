/**
 * Shared storage of a cluster run: the files that coordinator and workers exchange (each round's
 * centres and pool indices, each shard's result) live under one work folder that every machine
 * can read and write. Jobs carry names in it, never bulk data.
 *
 * `ClusterStorage` is the small interface the rest of src/cluster/ uses; `FsStorage` implements
 * it on a shared file system (NFS, a local disk for one machine). An S3-compatible object store
 * would implement the same five calls. Names are "/"-separated plain names checked before any
 * file system call (src/util/filenames.ts), so a name can never leave the folder.
 *
 * Content-addressed tensors (`putContent` / `getContent`): the name is the sha256 of the tensors'
 * names and bytes (tensorsSha256); a reader recomputes it and refuses a file that does not match.
 */
import { mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { readSafetensors, tensorsSha256, writeSafetensors, type SafetensorsFile, type Tensor } from '../io/safetensors.js';
import { relativePathProblem } from '../util/filenames.js';
import { UvuError } from '../util/errors.js';

export interface ClusterStorage {
  /** Where the storage is, for messages. */
  readonly where: string;
  /** Write tensors under `name`, atomically (a reader sees the whole file or none). */
  put(name: string, tensors: Record<string, Tensor>, metadata: Record<string, string>): Promise<number>;
  get(name: string): Promise<SafetensorsFile>;
  has(name: string): Promise<boolean>;
  /** Names of the files directly in `folder` (none when it does not exist). */
  list(folder: string): Promise<string[]>;
  remove(name: string): Promise<void>;
}

function checkName(where: string, name: string): void {
  const problem = relativePathProblem(name);
  if (problem) throw new UvuError(`${where}: storage name ${JSON.stringify(name)} ${problem}`);
}

/** ClusterStorage on a (shared) file system folder. */
export class FsStorage implements ClusterStorage {
  constructor(readonly where: string) {}

  private path(name: string): string {
    checkName(this.where, name);
    return join(this.where, name);
  }

  async put(name: string, tensors: Record<string, Tensor>, metadata: Record<string, string>): Promise<number> {
    const path = this.path(name);
    mkdirSync(dirname(path), { recursive: true });
    writeSafetensors(path, tensors, metadata);
    return statSync(path).size;
  }

  async get(name: string): Promise<SafetensorsFile> {
    return readSafetensors(this.path(name));
  }

  async has(name: string): Promise<boolean> {
    try {
      return statSync(this.path(name)).isFile();
    } catch {
      return false;
    }
  }

  async list(folder: string): Promise<string[]> {
    try {
      return readdirSync(this.path(folder));
    } catch {
      return [];
    }
  }

  async remove(name: string): Promise<void> {
    rmSync(this.path(name), { force: true });
  }
}


const contentName = (folder: string, hash: string): string => `${folder}/${hash}.safetensors`;

/** Store `tensors` once under folder/<hash>.safetensors; returns the hash and the bytes written (0 when it was there). */
export async function putContent(storage: ClusterStorage, folder: string, tensors: Record<string, Tensor>): Promise<{ hash: string; bytes: number }> {
  const hash = tensorsSha256(tensors);
  const name = contentName(folder, hash);
  if (await storage.has(name)) return { hash, bytes: 0 };
  return { hash, bytes: await storage.put(name, tensors, { sha256: hash }) };
}

/** Read folder/<hash>.safetensors and check that its content still has that hash. */
export async function getContent(storage: ClusterStorage, folder: string, hash: string): Promise<Record<string, Tensor>> {
  const name = contentName(folder, hash);
  if (!(await storage.has(name))) throw new UvuError(`${storage.where}/${name}: missing (is the work folder shared with the coordinator?)`);
  const { tensors } = await storage.get(name);
  const actual = tensorsSha256(tensors);
  if (actual !== hash) throw new UvuError(`${storage.where}/${name}: content does not match its hash (sha256 ${actual.slice(0, 12)}…); the file was changed or damaged`);
  return tensors;
}
