/** Reading (and writing) the files StyleCLIP users hold: PyTorch checkpoints, safetensors, npy, images. */
export { CheckpointError, ForbiddenGlobalError } from './errors.js';
export {
  type GridOptions,
  type ImageTensor,
  imageGrid,
  type Range,
  type ReadImageOptions,
  readImage,
  signedToUnit,
  toUint8,
  unitToSigned,
  type WriteImageOptions,
  writeImage,
} from './image.js';
export { encodeNpy, type NpyArray, NpyError, parseNpy, readNpy, readNpyF32, writeNpy } from './npy.js';
export { loadSafetensors, parseSafetensors, type Safetensors, saveSafetensors } from './safetensors.js';
export {
  type DType,
  float32ToHalf,
  halfToFloat32,
  isTensor,
  numel,
  stateDict,
  type Tensor,
  type TypedArray,
  toFloat32,
  toNumbers,
} from './tensor.js';
export {
  ALLOWED_GLOBALS,
  type Checkpoint,
  type LoadOptions,
  loadNvidiaPkl,
  loadTensor,
  loadTorch,
  loadTorchBytes,
  type NvidiaNetwork,
  type TorchFormat,
} from './torch.js';
export { pickleTorch, saveTorch } from './torch-write.js';

import { extname } from 'node:path';
import { CheckpointError } from './errors.js';
import { readNpy } from './npy.js';
import { loadSafetensors } from './safetensors.js';
import type { Tensor } from './tensor.js';
import { type LoadOptions, loadTorch } from './torch.js';

/** Any supported weights file to named tensors, by extension then by sniffing (npy: one tensor under ''). */
export function loadTensors(file: string, opts: LoadOptions = {}): Map<string, Tensor> {
  const ext = extname(file).toLowerCase();
  if (ext === '.safetensors') return loadSafetensors(file, opts).tensors;
  if (ext === '.npy') return new Map([['', readNpy(file, opts)]]);
  try {
    return loadTorch(file, opts).tensors;
  } catch (e) {
    if (e instanceof CheckpointError) throw e;
    throw new CheckpointError(file, 'a readable weights file', (e as Error).message);
  }
}
