/**
 * The explicit key map between Hugging Face's CLIPModel (`openai/clip-vit-base-patch32`, safetensors or
 * pytorch_model.bin) and OpenAI's state-dict layout, which is what ClipModel reads.
 *
 * Differences beyond names: HF splits the attention input projection into q/k/v (OpenAI stacks them
 * as in_proj_weight [3W, W] in q, k, v order), and stores the two projections as Linear weights [E, W]
 * where OpenAI keeps matrices [W, E] used as `x @ proj`.
 */
import { allocate, type Tensor, type TypedArray } from '../../io/tensor.js';
import { ClipWeightsError, type StateDict } from './model.js';

/** Parameter renames that need no reshaping, per block (OpenAI suffix → HF suffix). */
const BLOCK_RENAMES: readonly [string, string][] = [
  ['attn.out_proj.weight', 'self_attn.out_proj.weight'],
  ['attn.out_proj.bias', 'self_attn.out_proj.bias'],
  ['ln_1.weight', 'layer_norm1.weight'],
  ['ln_1.bias', 'layer_norm1.bias'],
  ['mlp.c_fc.weight', 'mlp.fc1.weight'],
  ['mlp.c_fc.bias', 'mlp.fc1.bias'],
  ['mlp.c_proj.weight', 'mlp.fc2.weight'],
  ['mlp.c_proj.bias', 'mlp.fc2.bias'],
  ['ln_2.weight', 'layer_norm2.weight'],
  ['ln_2.bias', 'layer_norm2.bias'],
];

/** Top-level renames (OpenAI → HF). */
const TOP_RENAMES: readonly [string, string][] = [
  ['token_embedding.weight', 'text_model.embeddings.token_embedding.weight'],
  ['positional_embedding', 'text_model.embeddings.position_embedding.weight'],
  ['ln_final.weight', 'text_model.final_layer_norm.weight'],
  ['ln_final.bias', 'text_model.final_layer_norm.bias'],
  ['logit_scale', 'logit_scale'],
  ['visual.class_embedding', 'vision_model.embeddings.class_embedding'],
  ['visual.conv1.weight', 'vision_model.embeddings.patch_embedding.weight'],
  ['visual.positional_embedding', 'vision_model.embeddings.position_embedding.weight'],
  ['visual.ln_pre.weight', 'vision_model.pre_layrnorm.weight'], // sic: HF's spelling
  ['visual.ln_pre.bias', 'vision_model.pre_layrnorm.bias'],
  ['visual.ln_post.weight', 'vision_model.post_layernorm.weight'],
  ['visual.ln_post.bias', 'vision_model.post_layernorm.bias'],
];

/** Projection matrices: OpenAI [W, E] ↔ HF Linear weight [E, W]. */
const TRANSPOSED: readonly [string, string][] = [
  ['text_projection', 'text_projection.weight'],
  ['visual.proj', 'visual_projection.weight'],
];

const TOWERS: readonly [string, string][] = [
  ['transformer.resblocks', 'text_model.encoder.layers'],
  ['visual.transformer.resblocks', 'vision_model.encoder.layers'],
];

export function isHfClip(sd: StateDict): boolean {
  return sd.has('text_model.embeddings.token_embedding.weight');
}

/** A lookup that names the layout whose key is missing. */
function getter(sd: StateDict, layout: string): (k: string) => Tensor {
  return (k) => {
    const t = sd.get(k);
    if (!t) throw new ClipWeightsError(`${layout} is missing "${k}"`);
    return t;
  };
}

function layerCount(sd: StateDict, prefix: string): number {
  let n = 0;
  while (sd.has(`${prefix}.${n}.self_attn.q_proj.weight`) || sd.has(`${prefix}.${n}.attn.in_proj_weight`))
    n++;
  return n;
}

function transpose2d(t: Tensor, key: string): Tensor {
  if (t.shape.length !== 2) throw new ClipWeightsError(`"${key}" must be a matrix, has shape [${t.shape}]`);
  const [r, c] = t.shape;
  const src = t.data as Exclude<TypedArray, BigInt64Array>;
  const out = allocate(t.dtype, r * c) as Exclude<TypedArray, BigInt64Array>;
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = src[i * c + j];
  return { dtype: t.dtype, shape: [c, r], data: out };
}

function stack(parts: Tensor[], key: string): Tensor {
  const dt = parts[0].dtype;
  if (parts.some((p) => p.dtype !== dt || p.shape.slice(1).join() !== parts[0].shape.slice(1).join()))
    throw new ClipWeightsError(`q/k/v parts of "${key}" differ in dtype or shape`);
  const total = parts.reduce((s, p) => s + p.data.length, 0);
  const out = allocate(dt, total) as Exclude<TypedArray, BigInt64Array>;
  let off = 0;
  for (const p of parts) {
    out.set(p.data as Exclude<TypedArray, BigInt64Array>, off);
    off += p.data.length;
  }
  return {
    dtype: dt,
    shape: [parts.reduce((s, p) => s + p.shape[0], 0), ...parts[0].shape.slice(1)],
    data: out,
  };
}

function split3(t: Tensor): Tensor[] {
  const rows = t.shape[0] / 3;
  const per = t.data.length / 3;
  return [0, 1, 2].map((i) => ({
    dtype: t.dtype,
    shape: [rows, ...t.shape.slice(1)],
    data: (t.data as Exclude<TypedArray, BigInt64Array>).slice(i * per, (i + 1) * per),
  }));
}

/** Renames a Hugging Face CLIPModel state dict into OpenAI's layout. HF-only buffers (position_ids) are dropped. */
export function hfToOpenAI(sd: StateDict): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  const need = getter(sd, 'Hugging Face CLIP checkpoint');
  for (const [oa, hf] of TOP_RENAMES) out.set(oa, need(hf));
  for (const [oa, hf] of TRANSPOSED) out.set(oa, transpose2d(need(hf), hf));
  for (const [oaTower, hfTower] of TOWERS) {
    const n = layerCount(sd, hfTower);
    for (let i = 0; i < n; i++) {
      const hf = `${hfTower}.${i}`;
      const oa = `${oaTower}.${i}`;
      for (const [a, h] of BLOCK_RENAMES) out.set(`${oa}.${a}`, need(`${hf}.${h}`));
      for (const kind of ['weight', 'bias'])
        out.set(
          `${oa}.attn.in_proj_${kind}`,
          stack(
            ['q', 'k', 'v'].map((p) => need(`${hf}.self_attn.${p}_proj.${kind}`)),
            `${hf}.self_attn.*_proj.${kind}`,
          ),
        );
    }
  }
  return out;
}

/** The inverse map: an OpenAI-layout state dict under Hugging Face CLIPModel names. */
export function openAIToHF(sd: StateDict): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  const need = getter(sd, 'OpenAI CLIP state dict');
  for (const [oa, hf] of TOP_RENAMES) out.set(hf, need(oa));
  for (const [oa, hf] of TRANSPOSED) out.set(hf, transpose2d(need(oa), oa));
  for (const [oaTower, hfTower] of TOWERS) {
    const n = layerCount(sd, oaTower);
    for (let i = 0; i < n; i++) {
      const hf = `${hfTower}.${i}`;
      const oa = `${oaTower}.${i}`;
      for (const [a, h] of BLOCK_RENAMES) out.set(`${hf}.${h}`, need(`${oa}.${a}`));
      for (const kind of ['weight', 'bias']) {
        const parts = split3(need(`${oa}.attn.in_proj_${kind}`));
        ['q', 'k', 'v'].forEach((p, j) => {
          out.set(`${hf}.self_attn.${p}_proj.${kind}`, parts[j]);
        });
      }
    }
  }
  return out;
}
