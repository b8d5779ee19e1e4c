/**
 * Loads CLIP from OpenAI's TorchScript release (`ViT-B-32.pt`, fp16), a torch.save'd state dict, or
 * Hugging Face's `openai/clip-vit-base-patch32` (model.safetensors or pytorch_model.bin). The format is
 * sniffed from the first bytes; the key layout from the names.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { loadSafetensors } from '../../io/safetensors.js';
import type { Tensor } from '../../io/tensor.js';
import { loadTorch } from '../../io/torch.js';
import { hfToOpenAI, isHfClip } from './hf.js';
import { ClipModel, type ClipModelOptions } from './model.js';

export interface ClipStateDict {
  /** OpenAI-layout tensors as stored (float16 kept as is unless widened on load; ClipModel widens). */
  tensors: Map<string, Tensor>;
  format: 'torchscript' | 'torch-zip' | 'torch-legacy' | 'pickle' | 'safetensors';
  layout: 'openai' | 'huggingface';
}

function looksLikeSafetensors(file: string): boolean {
  const fd = openSync(file, 'r');
  try {
    const head = new Uint8Array(9);
    if (readSync(fd, head, 0, 9, 0) < 9) return false;
    const len = new DataView(head.buffer).getBigUint64(0, true);
    return head[8] === 0x7b /* { */ && len > 1n && len < 100_000_000n;
  } finally {
    closeSync(fd);
  }
}

/**
 * `widen`: float16/bfloat16 tensors become float32 as the file is read (in place, partly on a worker
 * thread), so no half-precision copy stays alive beside the float32 one; off by default, since a state dict
 * is often passed on as it is stored.
 */
export function loadClipStateDict(file: string, { widen = false }: { widen?: boolean } = {}): ClipStateDict {
  let tensors: Map<string, Tensor>;
  let format: ClipStateDict['format'];
  if (looksLikeSafetensors(file)) {
    tensors = loadSafetensors(file, { widen }).tensors;
    format = 'safetensors';
  } else {
    const ck = loadTorch(file, { widen });
    tensors = ck.tensors;
    format = ck.format;
    // A checkpoint that wraps the state dict (e.g. {'state_dict': ...}) is unwrapped by its prefix.
    if (!tensors.has('visual.conv1.weight') && !isHfClip(tensors))
      for (const prefix of ['state_dict.', 'model.', 'module.'])
        if (tensors.has(`${prefix}visual.conv1.weight`)) {
          tensors = new Map(
            [...tensors].filter(([k]) => k.startsWith(prefix)).map(([k, t]) => [k.slice(prefix.length), t]),
          );
          break;
        }
  }
  if (isHfClip(tensors)) return { tensors: hfToOpenAI(tensors), format, layout: 'huggingface' };
  return { tensors, format, layout: 'openai' };
}

/** A ClipModel from any supported CLIP ViT checkpoint file. */
export function loadClip(file: string, options: ClipModelOptions = {}): ClipModel {
  return ClipModel.fromStateDict(loadClipStateDict(file, { widen: true }).tensors, options);
}
