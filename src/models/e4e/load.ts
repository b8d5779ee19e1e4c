/**
 * Loads an e4e checkpoint as encoder4editing's coach saves it (`e4e_ffhq_encode.pt`):
 * {'state_dict': encoder.* + decoder.*, 'latent_avg': [L, D] (or [D]), 'opts': vars(opts)}.
 */
import { Graph } from '../../graph/graph.js';
import { CheckpointError } from '../../io/errors.js';
import { type Tensor, toFloat32 } from '../../io/tensor.js';
import { loadTorch } from '../../io/torch.js';
import { compile, type Executable } from '../../runtime/session.js';
import type { ArcFaceOptions } from '../arcface/model.js';
import { fromRosinality } from '../stylegan2/load.js';
import type { GeneratorWeights } from '../stylegan2/weights.js';
import { E4eEncoder } from './model.js';

export interface E4eCheckpoint {
  encoder: E4eEncoder;
  /** The StyleGAN2 generator the encoder was trained against (decoder.*). */
  decoder: GeneratorWeights;
  /** The mean latent added to the encoder's output, [L·D] (repeated when the file holds one w). */
  latentAvg: Float32Array;
  /** The training options (plain values), when the file has them. */
  opts: Record<string, unknown>;
}

function withPrefix(tensors: Map<string, Tensor>, prefix: string): Map<string, Tensor> {
  return new Map(
    [...tensors].filter(([k]) => k.startsWith(prefix)).map(([k, t]) => [k.slice(prefix.length), t]),
  );
}

export function loadE4e(file: string, options: ArcFaceOptions = {}): E4eCheckpoint {
  const ck = loadTorch(file);
  const t = ck.tensors;
  const root = t.has('state_dict.encoder.input_layer.0.weight')
    ? 'state_dict.'
    : t.has('encoder.input_layer.0.weight')
      ? ''
      : null;
  if (root === null)
    throw new CheckpointError(
      file,
      "an e4e checkpoint ({'state_dict': encoder.* + decoder.*, 'latent_avg', 'opts'})",
      `${t.size} tensors, no encoder.input_layer.0.weight (first: ${[...t.keys()].slice(0, 3).join(', ')})`,
    );
  const value = ck.value as Record<string, unknown>;
  const opts = (value && typeof value === 'object' && (value.opts as Record<string, unknown>)) || {};
  const type = opts.encoder_type;
  if (type !== undefined && type !== 'Encoder4Editing')
    throw new CheckpointError(
      file,
      'an Encoder4Editing checkpoint (opts.encoder_type)',
      `encoder_type ${String(type)}`,
    );
  const encoder = E4eEncoder.fromStateDict(withPrefix(t, `${root}encoder.`), options);
  const decoder = fromRosinality(file, t, { prefix: `${root}decoder.`, latentAvgKey: null });
  const { styleCount: L, styleDim: D } = encoder.config;
  if (decoder.config.styleDim !== D || decoder.config.nLatent !== L)
    throw new CheckpointError(
      file,
      `a decoder for the encoder's W+ [${L}, ${D}]`,
      `a generator taking [${decoder.config.nLatent}, ${decoder.config.styleDim}]`,
    );
  const avg = t.get('latent_avg');
  if (!avg)
    throw new CheckpointError(
      file,
      "'latent_avg' (e4e adds the mean latent to the encoder's output)",
      'none',
    );
  const a = toFloat32(avg).data;
  let latentAvg: Float32Array;
  if (a.length === L * D) latentAvg = a.slice();
  else if (a.length === D) {
    latentAvg = new Float32Array(L * D);
    for (let l = 0; l < L; l++) latentAvg.set(a, l * D);
  } else
    throw new CheckpointError(file, `'latent_avg' of shape [${L}, ${D}] or [${D}]`, `shape [${avg.shape}]`);
  return { encoder, decoder, latentAvg, opts };
}

const sessions = new WeakMap<E4eEncoder, Map<number, Promise<Executable>>>();

/** The compiled encoder for [1, 3, size, size] inputs (once per encoder and size). */
export function e4eSession(encoder: E4eEncoder, size: number): Promise<Executable> {
  let bySize = sessions.get(encoder);
  if (!bySize) sessions.set(encoder, (bySize = new Map()));
  let s = bySize.get(size);
  if (!s) {
    const g = new Graph();
    s = compile({ codes: encoder.forward(g.input('image', [1, 3, size, size])) });
    bySize.set(size, s);
  }
  return s;
}

/** pSp.forward's codes: encoder(x) + latent_avg for one [1, 3, S, S] image in [−1, 1] → W+ [L·D]. */
export async function encodeE4e(ck: E4eCheckpoint, image: Float32Array, size: number): Promise<Float32Array> {
  const net = await e4eSession(ck.encoder, size);
  const { codes } = await net.run({ image: { shape: [1, 3, size, size], data: image } });
  const w = Float32Array.from(codes.data as Float32Array);
  for (let i = 0; i < w.length; i++) w[i] += ck.latentAvg[i];
  return w;
}
