import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Graph } from '../../../src/graph/graph.js';
import { readNpy, readNpyF32 } from '../../../src/io/npy.js';
import { saveSafetensors } from '../../../src/io/safetensors.js';
import { type Tensor, toFloat32 } from '../../../src/io/tensor.js';
import { loadTorch } from '../../../src/io/torch.js';
import { openAIToHF } from '../../../src/models/clip/hf.js';
import { loadClip } from '../../../src/models/clip/load.js';
import { eotIndices, trimTokens } from '../../../src/models/clip/model.js';
import { compile } from '../../../src/runtime/session.js';
import { assertClose, fixture } from '../../helpers.js';

// These tests check the Hugging Face layout against the published one, not against our own key map:
// the key names follow transformers' CLIPModel modules (the layout of openai/clip-vit-base-patch32's
// model.safetensors: `self_attn.{q,k,v,out}_proj`, `layer_norm1/2`, `mlp.fc1/fc2`, the misspelt
// `pre_layrnorm`, `visual_projection`/`text_projection` as bias-free Linear weights [E, W]), and the
// conversion below is written here the way transformers' convert_clip_original_pytorch_to_hf.py does
// it (`in_proj_weight.chunk(3)` in q, k, v order; projections transposed), independently of hf.ts.

const dir = mkdtempSync(join(tmpdir(), 'clip-hf-layout-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const openai = loadTorch(fixture('clip/clip.pt')).tensors; // widened to float32
const f32 = (k: string) => toFloat32(openai.get(k)!);
const layers = (prefix: string) =>
  new Set(
    [...openai.keys()].filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length).split('.')[0]),
  ).size;
const nText = layers('transformer.resblocks.');
const nVision = layers('visual.transformer.resblocks.');

/** The published key list of a CLIPModel with these layer counts. */
function publishedKeys(): string[] {
  const keys = [
    'logit_scale',
    'text_projection.weight',
    'visual_projection.weight',
    'text_model.embeddings.token_embedding.weight',
    'text_model.embeddings.position_embedding.weight',
    'text_model.final_layer_norm.weight',
    'text_model.final_layer_norm.bias',
    'vision_model.embeddings.class_embedding',
    'vision_model.embeddings.patch_embedding.weight',
    'vision_model.embeddings.position_embedding.weight',
    'vision_model.pre_layrnorm.weight',
    'vision_model.pre_layrnorm.bias',
    'vision_model.post_layernorm.weight',
    'vision_model.post_layernorm.bias',
  ];
  for (const [tower, n] of [
    ['text_model', nText],
    ['vision_model', nVision],
  ] as const)
    for (let i = 0; i < n; i++)
      for (const m of ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.out_proj'])
        for (const p of ['weight', 'bias']) keys.push(`${tower}.encoder.layers.${i}.${m}.${p}`);
  for (const [tower, n] of [
    ['text_model', nText],
    ['vision_model', nVision],
  ] as const)
    for (let i = 0; i < n; i++)
      for (const m of ['layer_norm1', 'mlp.fc1', 'mlp.fc2', 'layer_norm2'])
        for (const p of ['weight', 'bias']) keys.push(`${tower}.encoder.layers.${i}.${m}.${p}`);
  return keys.sort();
}

/** convert_clip_original_pytorch_to_hf.py's mapping, written out for this test. */
function convertLikeTransformers(): Map<string, Tensor> {
  const hf = new Map<string, Tensor>();
  const put = (k: string, t: Tensor) => hf.set(k, t);
  const transposed = (t: Tensor): Tensor => {
    const [r, c] = t.shape;
    const src = t.data as Float32Array;
    const out = new Float32Array(r * c);
    for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = src[i * c + j];
    return { dtype: 'float32', shape: [c, r], data: out };
  };
  const chunk3 = (t: Tensor, j: number): Tensor => {
    const rows = t.shape[0] / 3;
    const per = t.data.length / 3;
    return {
      dtype: 'float32',
      shape: [rows, ...t.shape.slice(1)],
      data: (t.data as Float32Array).slice(j * per, (j + 1) * per),
    };
  };
  put('logit_scale', f32('logit_scale'));
  put('text_projection.weight', transposed(f32('text_projection')));
  put('visual_projection.weight', transposed(f32('visual.proj')));
  put('text_model.embeddings.token_embedding.weight', f32('token_embedding.weight'));
  put('text_model.embeddings.position_embedding.weight', f32('positional_embedding'));
  put('text_model.final_layer_norm.weight', f32('ln_final.weight'));
  put('text_model.final_layer_norm.bias', f32('ln_final.bias'));
  put('vision_model.embeddings.class_embedding', f32('visual.class_embedding'));
  put('vision_model.embeddings.patch_embedding.weight', f32('visual.conv1.weight'));
  put('vision_model.embeddings.position_embedding.weight', f32('visual.positional_embedding'));
  for (const [hfName, oa] of [
    ['pre_layrnorm', 'ln_pre'],
    ['post_layernorm', 'ln_post'],
  ])
    for (const p of ['weight', 'bias']) put(`vision_model.${hfName}.${p}`, f32(`visual.${oa}.${p}`));
  for (const [tower, oaTower, n] of [
    ['text_model', 'transformer.resblocks', nText],
    ['vision_model', 'visual.transformer.resblocks', nVision],
  ] as const)
    for (let i = 0; i < n; i++) {
      const h = `${tower}.encoder.layers.${i}`;
      const o = `${oaTower}.${i}`;
      for (const p of ['weight', 'bias']) {
        const inProj = f32(`${o}.attn.in_proj_${p}`);
        ['q', 'k', 'v'].forEach((x, j) => {
          put(`${h}.self_attn.${x}_proj.${p}`, chunk3(inProj, j));
        });
        put(`${h}.self_attn.out_proj.${p}`, f32(`${o}.attn.out_proj.${p}`));
        put(`${h}.layer_norm1.${p}`, f32(`${o}.ln_1.${p}`));
        put(`${h}.mlp.fc1.${p}`, f32(`${o}.mlp.c_fc.${p}`));
        put(`${h}.mlp.fc2.${p}`, f32(`${o}.mlp.c_proj.${p}`));
        put(`${h}.layer_norm2.${p}`, f32(`${o}.ln_2.${p}`));
      }
    }
  return hf;
}

test('Hugging Face layout: our key map gives exactly the published key names and shapes', () => {
  const ours = openAIToHF(openai);
  assert.deepEqual([...ours.keys()].sort(), publishedKeys());
  const theirs = convertLikeTransformers();
  for (const [k, t] of theirs) assert.deepEqual(ours.get(k)!.shape, t.shape, k);
  // ViT-B/32's published shapes, scaled to the fixture: q_proj [W, W]; projections [E, W].
  const W = f32('visual.conv1.weight').shape[0];
  const E = f32('visual.proj').shape[1];
  assert.deepEqual(ours.get('vision_model.encoder.layers.0.self_attn.q_proj.weight')!.shape, [W, W]);
  assert.deepEqual(ours.get('visual_projection.weight')!.shape, [E, W]);
});

test('Hugging Face safetensors converted as transformers does give the OpenAI fixture features', async () => {
  const hf = convertLikeTransformers();
  // The published files also carry the position_ids buffers (int64), which CLIP does not need.
  hf.set('text_model.embeddings.position_ids', {
    dtype: 'int64',
    shape: [1, 77],
    data: BigInt64Array.from({ length: 77 }, (_, i) => BigInt(i)),
  });
  const file = join(dir, 'model.safetensors');
  saveSafetensors(file, hf);
  const model = loadClip(file);
  const tokens = readNpy(fixture('clip/tokens.npy')).data as Int32Array;
  const T = tokens.length / 77;
  const image = readNpyF32(fixture('clip/image_in.npy'));
  const g = new Graph();
  const img = model.encodeImage(g.input('image', image.shape));
  const txt = model.encodeText(g.input('tokens', [T, 77], 'int64'), g.input('eot', [T], 'int64'));
  const ex = await compile({ img, txt });
  const out = await ex.run({
    image: { shape: image.shape, data: image.data },
    tokens: { shape: [T, 77], data: trimTokens(tokens, 77, 77) },
    eot: { shape: [T], data: eotIndices(tokens, 77) },
  });
  const fwd = { rtol: 1e-4, atol: 1e-5 };
  assertClose(out.img.data as Float32Array, readNpyF32(fixture('clip/image_features.npy')).data, {
    ...fwd,
    what: 'image features',
  });
  assertClose(out.txt.data as Float32Array, readNpyF32(fixture('clip/text_features.npy')).data, {
    ...fwd,
    what: 'text features',
  });
});
