/**
 * Defaults that more than one layer or command uses, in one place. Each is a choice of ours
 * (DESIGN.md fixes the method; these fix what the paper leaves open); flags and config fields
 * override them.
 */

/** DESIGN §1 resize policy: images are scaled down (never up) until w·h ≤ this many pixels. */
export const DEFAULT_MAX_PIXELS = 512 * 512;

/** λ, the scale of the sin/cos positional encoding added to patches before clustering (paper: not given). */
export const DEFAULT_PE_SCALE = 0.1;

/** Seed of codebook construction (k-means and the paper's rounds) when none is given. */
export const DEFAULT_CODEBOOK_SEED = 1234;
