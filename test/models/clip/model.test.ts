import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { Graph } from '../../../src/graph/graph.js';
import { parseNpy } from '../../../src/io/npy.js';
import { saveSafetensors } from '../../../src/io/safetensors.js';
import { loadTorch } from '../../../src/io/torch.js';
import { ClipEncoder } from '../../../src/models/clip/encoder.js';
import { hfToOpenAI, openAIToHF } from '../../../src/models/clip/hf.js';
import { loadClip, loadClipStateDict } from '../../../src/models/clip/load.js';
import {
  ClipModel,
  ClipWeightsError,
  eotIndices,
  inferClipConfig,
  trimmedLength,
  trimTokens,
} from '../../../src/models/clip/model.js';
import { tokenize } from '../../../src/models/clip/tokenizer.js';
import { compile, type HostTensor } from '../../../src/runtime/session.js';
import { assertClose } from '../../helpers.js';

const fx = (p: string) => new URL(`../../fixtures/${p}`, import.meta.url);
/** A copy keeps the array's data at offset 0 of its own buffer. */
const npy = (p: string) => parseNpy(new Uint8Array(readFileSync(fx(p))));
const f32 = (p: string) => npy(p).data as Float32Array;

const clipPt = fx('clip/clip.pt').pathname;

describe('CLIP ViT model (fixture clip.pt, fp16 TorchScript)', () => {
  let model: ClipModel;
  let out: Record<string, HostTensor>;
  const tokens = npy('clip/tokens.npy').data as Int32Array; // [14, 77]
  const T = tokens.length / 77;
  const L = trimmedLength(tokens, 77);

  before(async () => {
    model = loadClip(clipPt);
    // One graph for everything: image tower, text tower trimmed and at full context, logits.
    const g = new Graph();
    const image = g.input('image', [2, 3, 224, 224]);
    const tokTrim = g.input('tokens_trim', [T, L], 'int64');
    const eotTrim = g.input('eot_trim', [T], 'int64');
    const tokFull = g.input('tokens_full', [T, 77], 'int64');
    const eotFull = g.input('eot_full', [T], 'int64');
    const img = model.encodeImage(image);
    const txt = model.encodeText(tokTrim, eotTrim);
    const txtFull = model.encodeText(tokFull, eotFull);
    const ex = await compile({ img, txt, txtFull, logits: model.logitsPerImage(img, txt) });
    out = await ex.run({
      image: { shape: [2, 3, 224, 224], data: f32('clip/image_in.npy') },
      tokens_trim: { shape: [T, L], data: trimTokens(tokens, 77, L) },
      eot_trim: { shape: [T], data: eotIndices(tokens, 77, L) },
      tokens_full: { shape: [T, 77], data: trimTokens(tokens, 77, 77) },
      eot_full: { shape: [T], data: eotIndices(tokens, 77) },
    });
  });

  test('infers the architecture from the weights as build_model', () => {
    assert.deepEqual(model.config, {
      embedDim: 64,
      imageResolution: 224,
      visionLayers: 2,
      visionWidth: 128,
      visionHeads: 2,
      visionPatchSize: 32,
      contextLength: 77,
      vocabSize: 49408,
      textWidth: 128,
      textHeads: 2,
      textLayers: 2,
    });
    assert.ok(Math.abs(model.logitScale - Math.log(100)) < 0.01, `logit scale ${model.logitScale}`);
  });

  test('image_features match encode_image', () => {
    assertClose(out.img.data as Float32Array, f32('clip/image_features.npy'), { what: 'image_features' });
  });

  test('text_features match encode_text', () => {
    assertClose(out.txt.data as Float32Array, f32('clip/text_features.npy'), { what: 'text_features' });
  });

  test('logits_per_image match model(image, text)[0]', () => {
    assertClose(out.logits.data as Float32Array, f32('clip/logits_per_image.npy'), { what: 'logits' });
  });

  test('trimming the context to the longest prompt leaves the features unchanged', () => {
    assert.ok(L < 77, `fixture prompts are shorter than the context (L = ${L})`);
    // Same numbers up to float32 summation order, far inside the parity tolerance.
    assertClose(out.txt.data as Float32Array, out.txtFull.data as Float32Array, {
      rtol: 1e-6,
      atol: 1e-6,
      what: 'trimmed vs 77',
    });
  });

  test('GetDt(["smiling face", "face"]) matches global/dt.npy; text features are cached', async () => {
    const enc = new ClipEncoder(model);
    const dt = await enc.textDirection('smiling face', 'face');
    assertClose(dt, f32('global/dt.npy'), { what: 'dt' });
    // A second request is served from the (model hash, text) cache: same values, no new session.
    const again = await enc.encodeTexts(['a photo of a face.', 'a bad photo of a smiling face.']);
    const fresh = await enc.encodeTokens(tokenize(['a photo of a face.', 'a bad photo of a smiling face.']));
    assertClose(again, fresh, { rtol: 1e-6, atol: 1e-6, what: 'cached vs fresh' });
    await enc.release();
  });

  test('Hugging Face layout: the key map round-trips through our safetensors writer', () => {
    const sd = loadTorch(clipPt, { widen: false }).tensors;
    const hf = openAIToHF(sd);
    assert.ok(hf.has('vision_model.encoder.layers.1.self_attn.k_proj.weight'));
    assert.ok(hf.has('vision_model.pre_layrnorm.weight'));
    assert.deepEqual(hf.get('text_projection.weight')!.shape, [64, 128]);
    const dir = mkdtempSync(join(tmpdir(), 'clip-hf-'));
    try {
      const file = join(dir, 'model.safetensors');
      saveSafetensors(file, hf);
      const loaded = loadClipStateDict(file);
      assert.equal(loaded.format, 'safetensors');
      assert.equal(loaded.layout, 'huggingface');
      const a = ClipModel.fromStateDict(loaded.tensors);
      assert.deepEqual(a.config, model.config);
      const back = hfToOpenAI(hf);
      for (const [k, t] of sd) {
        if (!back.has(k)) continue; // nothing ClipModel reads is lost: fromStateDict above checks shapes
        assert.deepEqual(back.get(k)!.shape, t.shape, k);
        assert.deepEqual(
          Buffer.from(back.get(k)!.data.buffer),
          Buffer.from(t.data.buffer.slice(t.data.byteOffset, t.data.byteOffset + t.data.byteLength)),
          k,
        );
      }
      // Every weight of the HF-loaded model equals the TorchScript-loaded one, bit for bit.
      for (const k of [
        'visual.transformer.resblocks.1.attn.in_proj_weight',
        'text_projection',
        'visual.proj',
        'token_embedding.weight',
      ])
        assert.deepEqual(a.tensor(k).data, model.tensor(k).data, k);
      assert.equal(a.hash, model.hash);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('clear errors for checkpoints that are not CLIP ViT', () => {
    assert.throws(() => inferClipConfig(new Map()), ClipWeightsError);
    const sd = new Map(loadTorch(clipPt, { widen: false }).tensors);
    sd.delete('visual.transformer.resblocks.1.mlp.c_fc.bias');
    assert.throws(
      () => ClipModel.fromStateDict(sd),
      /missing "visual\.transformer\.resblocks\.1\.mlp\.c_fc\.bias"/,
    );
  });
});
