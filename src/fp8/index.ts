// Public surface of the pure FP8 numerics.
export * from './formats.js';
export * from './dtypes.js';
export * from './block-quantize.js';
export * from './scale-format.js';
