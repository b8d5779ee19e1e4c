export * from './composite/nn.js';
export * from './conv.js';
export * from './elementwise.js';
export * from './matmul.js';
export * from './pool.js';
export * from './reduce.js';
export * from './shape.js';
