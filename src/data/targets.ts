/**
 * Next-token targets and loss masks of a batch (DESIGN §6). Position t of a row predicts
 * x[t+1]; it is supervised when its flag for the stage is set (FLAG_LOSS_PRETRAIN or
 * FLAG_LOSS_SFT). A supervised target that is an image code belongs to L_image, every other
 * supervised target (text, specials, `</img>`) to L_text. In SFT the image loss is off, so
 * imageMask is all zeros there.
 */
import type { Vocab } from '../tokens/vocab.js';
import type { Batch } from './dataset.js';
import { FLAG_LOSS_PRETRAIN, FLAG_LOSS_SFT } from './sequence.js';

export type Stage = 'pretrain' | 'sft';

export interface Targets {
  /** [B·T] target ids; <pad> where unsupervised. */
  targets: Int32Array;
  /** [B·T] 1 where the target is supervised and not an image code. */
  textMask: Float32Array;
  /** [B·T] 1 where the target is a supervised image code. */
  imageMask: Float32Array;
}

export function buildTargets(batch: Pick<Batch, 'B' | 'T' | 'ids' | 'flags'>, vocab: Vocab, stage: Stage): Targets {
  const { B, T, ids, flags } = batch;
  const n = B * T;
  const flag = stage === 'pretrain' ? FLAG_LOSS_PRETRAIN : FLAG_LOSS_SFT;
  const targets = new Int32Array(n).fill(vocab.pad);
  const textMask = new Float32Array(n);
  const imageMask = new Float32Array(n);
  for (let b = 0; b < B; b++) {
    // The last position of a row has no target inside the row.
    for (let t = 0; t < T - 1; t++) {
      const i = b * T + t;
      if ((flags[i]! & flag) === 0) continue;
      const y = ids[i + 1]!;
      targets[i] = y;
      if (vocab.isImageId(y)) {
        if (stage === 'pretrain') imageMask[i] = 1;
        else targets[i] = vocab.pad;
      } else {
        textMask[i] = 1;
      }
    }
  }
  return { targets, textMask, imageMask };
}
