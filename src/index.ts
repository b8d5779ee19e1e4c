/** The library entry point. */
export { grad } from './autodiff/grad.js';
export { type DType, Graph, ShapeError, Value } from './graph/graph.js';
export { serialize } from './onnx/writer.js';
export * as ops from './ops/index.js';
export { compile, configureRuntime, Executable, type HostTensor, RuntimeError } from './runtime/session.js';
