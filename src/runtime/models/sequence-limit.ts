// The longest sequence a run accepts, alone in its module so the CLI's flag tables (loaded before
// any command runs) can check --calibration-seq-len against it without loading the token-id I/O.

/** Longest sequence a run accepts: attention builds `[B, heads, T, T]` scores in one graph. */
export const MAX_SEQUENCE = 8192;
