/** Loads ArcFace IR-SE weights (`model_ir_se50.pth`: a torch.save'd state dict, zip or legacy format). */
import type { Tensor } from '../../io/tensor.js';
import { loadTorch } from '../../io/torch.js';
import { ArcFaceModel, type ArcFaceOptions } from './model.js';

/** The backbone's tensors; a wrapped state dict (`{'state_dict': …}`, `module.` prefixes) is unwrapped. */
export function loadArcFaceStateDict(file: string): Map<string, Tensor> {
  const tensors = loadTorch(file).tensors;
  if (tensors.has('input_layer.0.weight')) return tensors;
  for (const prefix of ['state_dict.', 'module.', 'facenet.'])
    if (tensors.has(`${prefix}input_layer.0.weight`))
      return new Map(
        [...tensors].filter(([k]) => k.startsWith(prefix)).map(([k, t]) => [k.slice(prefix.length), t]),
      );
  return tensors; // inferArcFaceConfig names what is missing
}

export function loadArcFace(file: string, options: ArcFaceOptions = {}): ArcFaceModel {
  return ArcFaceModel.fromStateDict(loadArcFaceStateDict(file), options);
}
