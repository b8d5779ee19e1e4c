/**
 * The StyleGAN2 generator as an engine graph, written like the paper (Karras et al. 2020, fig. 2):
 * mapping network z → w, W+ → StyleSpace (one affine per layer), and the synthesis network driven by
 * StyleSpace codes. Weights are graph constants, so autodiff differentiates only latents and codes.
 *
 * Modulated convolution is computed on activations, not weights: `conv(x · s, W) · demod(s)` with the
 * constant W, which equals conv(x, W·s·demod) per sample (rosinality's grouped conv) and lets ONNX Runtime
 * keep W as a plain initializer. demod(s)[o] = rsqrt(Σ_i s_i² Σ_k W[o,i,k]² + 1e-8). The exception is a
 * single image that is only rendered: its high-resolution blocks modulate the weights (blockedBlock).
 */
import type { Graph, Value } from '../../graph/graph.js';
import {
  add,
  concat,
  conv2d,
  convTranspose2d,
  expand,
  leakyRelu,
  matmul,
  max,
  mean,
  mul,
  neg,
  powConst,
  reciprocal,
  reshape,
  sliceAxis,
  sub,
  transpose,
} from '../../ops/index.js';
import {
  blockDepthwiseFilter,
  blockFilter,
  nchwcConv,
  nchwcInterleave,
  nchwcReorderInput,
  nchwcReorderOutput,
} from '../../ops/nchwc.js';
import {
  type GeneratorWeights,
  type ModConvWeights,
  type StyledConvWeights,
  scaled,
  squaredWeightSums,
  type ToRGBWeights,
  tiled,
  transposedScaled,
} from './weights.js';

/** An activation with a pending positive factor per channel: its value is x · scale (scale [B, C]). */
interface Pending {
  x: Value;
  scale: Value | null;
  /** x is in ONNX Runtime's blocked layout (blockedBlock's output). */
  blocked?: boolean;
}

interface ModConvOut {
  /** conv(x · s, W), before demodulation. */
  y: Value;
  /** The demodulation (times the layer gain), [B, out]. */
  demod: Value;
}

/**
 * Where a generator graph gets trainable weights: `value(key)` gives the graph value for an effective weight
 * that StyleGAN2Graph would otherwise make a constant (keys as in its `c()` calls; undefined keeps the
 * constant), and `noiseStrength(i)` the noise gain (× sqrt 2) of styled conv i as a [1] value.
 */
export interface WeightSource {
  value(key: string): Value | undefined;
  noiseStrength(i: number): Value;
}

/** Noise for the styled convs: the checkpoint's fixed buffers, one graph value per layer, or none. */
export type NoiseSpec = 'const' | 'zero' | readonly Value[];

const SQRT2 = Math.SQRT2;

/** Binds one generator's weights to one graph; constants are created once per graph, however often used. */
export class StyleGAN2Graph {
  private readonly consts = new Map<string, Value>();

  constructor(
    readonly g: Graph,
    readonly weights: GeneratorWeights,
    readonly name = 'stylegan2',
    /**
     * `blocked`: ONNX Runtime's NCHWc block size (from `nchwcBlockSize()`), for graphs that are never
     * differentiated; high-resolution blocks then run on its blocked conv kernels. 0: standard ops only.
     */
    readonly options: {
      blocked?: number;
      /**
       * Trainable weights: graph values (from the raw checkpoint tensors, see trainable.ts) that stand in for
       * the constants, so gradients reach them. Forward-only graphs leave this out.
       */
      params?: WeightSource;
    } = {},
  ) {}

  private get blocked(): number {
    return this.options.blocked ?? 0;
  }

  get config() {
    return this.weights.config;
  }

  private c(key: string, shape: readonly number[], make: () => Float32Array): Value {
    let v = this.consts.get(key);
    if (!v && this.options.params) {
      v = this.options.params.value(key);
      if (v && (v.shape.length !== shape.length || v.shape.some((d, i) => d !== shape[i])))
        throw new RangeError(`trainable weight ${key} is [${v.shape}], the graph needs [${shape}]`);
      if (v) this.consts.set(key, v);
    }
    if (!v) {
      const parts = key.split('/');
      const leaf = parts.pop()!;
      const scopes = [this.name, ...parts];
      const build = (i: number): Value =>
        i === scopes.length ? this.g.const(make(), shape, leaf) : this.g.scope(scopes[i], () => build(i + 1));
      v = build(0);
      this.consts.set(key, v);
    }
    return v;
  }

  // --- mapping network -------------------------------------------------------------------------------

  /** z [B, D] → w [B, D]: PixelNorm then n_mlp × (EqualLinear, leaky ReLU 0.2, × sqrt 2). */
  mapping(z: Value): Value {
    let x = pixelNorm(z);
    this.weights.mapping.forEach((layer, l) => {
      const w = this.c(`mapping/${l}/weight`, [layer.inFeatures, layer.outFeatures], () => layer.weight);
      const b = this.c(`mapping/${l}/bias`, [layer.outFeatures], () => layer.bias);
      x = mul(leakyRelu(add(matmul(x, w), b), 0.2), SQRT2);
    });
    return x;
  }

  /** The checkpoint's mean latent [1, D] as a constant (throws if it has none; see StyleGAN2.meanLatent). */
  latentAvg(): Value {
    const avg = this.weights.latentAvg;
    if (!avg) throw new Error('this generator has no stored mean latent (latent_avg / w_avg)');
    return this.c('latent_avg', [1, this.config.styleDim], () => avg);
  }

  /** w [B, D] → W+ [B, n_latent, D] (the same w for every layer). */
  broadcast(w: Value): Value {
    const [b, d] = w.shape;
    return expand(reshape(w, [b, 1, d]), [b, this.config.nLatent, d]); // [B, 1, D] -> [B, L, D]
  }

  /** Style mixing: rows [0, inject) from w1, the rest from w2; both [B, D]. */
  mix(w1: Value, w2: Value, injectIndex: number): Value {
    const L = this.config.nLatent;
    if (!(injectIndex >= 1 && injectIndex < L)) throw new RangeError(`inject index must be in [1, ${L - 1}]`);
    const [b, d] = w1.shape;
    const a = expand(reshape(w1, [b, 1, d]), [b, injectIndex, d]); // [B, 1, D] -> [B, inject, D]
    const c = expand(reshape(w2, [b, 1, d]), [b, L - injectIndex, d]); // [B, 1, D] -> [B, L - inject, D]
    return concat([a, c], 1); // [B, L, D]
  }

  // --- W+ -> StyleSpace -------------------------------------------------------------------------------

  /** The modulated conv of StyleSpace layer i. */
  modConvOf(i: number): ModConvWeights {
    if (i === 0) return this.weights.convs[0].conv;
    if (i === 1) return this.weights.toRGBs[0].conv;
    const block = Math.floor((i - 2) / 3);
    const k = (i - 2) % 3;
    return k === 2 ? this.weights.toRGBs[block + 1].conv : this.weights.convs[1 + 2 * block + k].conv;
  }

  /** The affine of StyleSpace layer i applied to w [B, D] → s [B, C_i]. */
  affine(i: number, w: Value): Value {
    const m = this.modConvOf(i);
    const d = this.config.styleDim;
    const A = this.c(`style/${i}/affine_weight`, [d, m.inChannels], () => m.affineWeight);
    const b = this.c(`style/${i}/affine_bias`, [m.inChannels], () => m.affineBias);
    return add(matmul(w, A), b);
  }

  /** W+ [B, n_latent, D] → the StyleSpace codes, one [B, C_i] per layer (toRGB layers included). */
  styles(wplus: Value): Value[] {
    const [b, L, d] = wplus.shape;
    if (L !== this.config.nLatent || d !== this.config.styleDim)
      throw new RangeError(
        `W+ must be [B, ${this.config.nLatent}, ${this.config.styleDim}], got [${wplus.shape}]`,
      );
    return this.config.styleWIndex.map((row, i) =>
      // W+ row [B, 1, D] -> w [B, D]
      this.g.scope(`style${i}`, () => this.affine(i, reshape(sliceAxis(wplus, 1, row, row + 1), [b, d]))),
    );
  }

  // --- synthesis ---------------------------------------------------------------------------------------

  /** StyleSpace codes → image [B, 3, size, size] in the generator's raw range. */
  synthesis(styles: readonly Value[], noise: NoiseSpec = 'const'): Value {
    const cfg = this.config;
    if (styles.length !== cfg.styleDims.length)
      throw new RangeError(`expected ${cfg.styleDims.length} StyleSpace codes, got ${styles.length}`);
    styles.forEach((s, i) => {
      if (s.rank !== 2 || s.shape[1] !== cfg.styleDims[i] || s.shape[0] !== styles[0].shape[0])
        throw new RangeError(`StyleSpace code ${i} must be [B, ${cfg.styleDims[i]}], got [${s.shape}]`);
    });
    if (typeof noise !== 'string' && noise.length !== cfg.numLayers)
      throw new RangeError(`expected ${cfg.numLayers} noise inputs, got ${noise.length}`);
    const batch = styles[0].shape[0];
    const W = this.weights;
    const c4 = cfg.channels[4];

    const input = this.c('input', [1, c4, 4, 4], () => W.constInput);
    let x: Pending = { x: expand(input, [batch, c4, 4, 4]), scale: null }; // [B, C4, 4, 4]
    x = this.g.scope('conv1', () => this.styledConv(0, x, styles[0], noise));
    let skip = this.g.scope('to_rgb1', () => this.toRGB(0, x, styles[1], null));
    for (let b = 0; b < W.toRGBs.length - 1; b++) {
      const res = 8 << b;
      this.g.scope(`b${res}`, () => {
        if (this.canBlock(b, batch, noise)) {
          [x, skip] = this.blockedBlock(b, x, styles, skip);
          return;
        }
        if (x.blocked) x = { x: nchwcReorderOutput(x.x, x.x.shape[1]), scale: x.scale };
        x = this.g.scope('conv_up', () => this.styledConv(1 + 2 * b, x, styles[2 + 3 * b], noise));
        x = this.g.scope('conv', () => this.styledConv(2 + 2 * b, x, styles[3 + 3 * b], noise));
        skip = this.g.scope('to_rgb', () => this.toRGB(b + 1, x, styles[4 + 3 * b], skip));
      });
    }
    return skip;
  }

  /**
   * Whether block b runs blocked: one image with the checkpoint's noise, no clamps, channels in whole
   * blocks, and activations at least 16 times the size of the 3x3 weights (the weights are modulated per
   * run, so at 512 channels and 64² that costs as much as it saves).
   */
  private canBlock(b: number, batch: number, noise: NoiseSpec): boolean {
    const B = this.blocked;
    if (!B || batch !== 1 || noise !== 'const') return false;
    const up = this.weights.convs[1 + 2 * b];
    const cv = this.weights.convs[2 + 2 * b];
    const c = cv.conv.outChannels;
    return (
      cv.resolution ** 2 >= 16 * 9 * c &&
      up.clamp === null &&
      cv.clamp === null &&
      this.weights.toRGBs[b + 1].clamp === null &&
      up.conv.inChannels % B === 0 &&
      up.conv.outChannels % B === 0 &&
      cv.conv.inChannels % B === 0 &&
      cv.conv.outChannels % B === 0
    );
  }

  /** demod(s)[o] = rsqrt(Σ_i s_i² Σ_k W[o,i,k]² + 1e-8) · gain, [B, out]. */
  private demod(key: string, s: Value, m: ModConvWeights, gain: number): Value {
    const wsq = this.c(`${key}/weight_sq_t`, [m.inChannels, m.outChannels], () =>
      transposedScaled(squaredWeightSums(m), m.outChannels, m.inChannels, 1),
    );
    return mul(powConst(add(matmul(mul(s, s), wsq), 1e-8), -0.5), gain); // [B, out]
  }

  /**
   * (noise·strength + bias) / d for styled conv i as a blocked [1, C, r, r] addend: one batched MatMul of
   * the constant [noise, 1] columns with the per-block rows [1/d; bias/d], written fresh each run so the
   * conv accumulates into it in place (a constant addend would be copied, and would cost 0.3 GB).
   */
  private blockedAddend(i: number, d: Value): Value {
    const B = this.blocked;
    const L = this.weights.convs[i];
    const r = L.resolution;
    const c = L.conv.outChannels;
    const basis = this.c(`convs/${i}/noise_basis_rows`, [1, r * r, 2], () => {
      const out = new Float32Array(2 * r * r).fill(1);
      for (let p = 0; p < r * r; p++) out[2 * p] = L.noiseConst[p] * L.noiseStrength * SQRT2;
      return out;
    });
    const bias = this.c(`convs/${i}/bias_row`, [1, c], () => scaled(L.bias, SQRT2));
    const inv = reciprocal(d); // [1, C]
    const u = transpose(reshape(concat([inv, mul(inv, bias)], 0), [2, c / B, B]), [1, 0, 2]); // [C/B, 2, B]
    return reshape(matmul(basis, u), [1, c, r, r]); // [C/B, r·r, B]: the blocked layout of [1, C, r, r]
  }

  /**
   * One resolution block for a single image on ONNX Runtime's blocked conv kernels: the modulation goes
   * into the (small) weights, and the noise-and-bias addend and leaky ReLU are fused into the conv. As in
   * styledConv, each layer's demodulation d is left pending (lrelu(y·d + a) = d·lrelu(y + a/d)) and
   * folded into the next layer's weights.
   */
  private blockedBlock(b: number, x: Pending, styles: readonly Value[], skip: Value): [Pending, Value] {
    const B = this.blocked;
    const [i1, i2] = [1 + 2 * b, 2 + 2 * b];
    const [m1, m2] = [this.weights.convs[i1].conv, this.weights.convs[i2].conv];
    const [s1, s2, s3] = [styles[2 + 3 * b], styles[3 + 3 * b], styles[4 + 3 * b]];
    const inC = m1.inChannels;
    const c = m1.outChannels;
    // The stride-2 transposed conv as its four phases: output pixel (2m + p, 2n + q) takes the taps of
    // parity (p, q), so each phase is a small conv at the input's size and together they do the same
    // multiply-adds. Phases are [1, out, H + 1, W + 1]; the odd ones end in a row or column of zeros,
    // which then stands in for the blur's bottom and right padding.
    const xb = x.blocked ? x.x : nchwcReorderInput(x.x, B);
    const mod1 = reshape(x.scale ? mul(s1, x.scale) : s1, [1, inC, 1, 1]); // · pending scale
    const phases = [0, 1].flatMap((p) =>
      [0, 1].map((q) => {
        const [rows, cols] = [PHASE_TAPS[p], PHASE_TAPS[q]];
        const K = this.c(`convs/${i1}/phase_${p}${q}`, [c, inC, rows.length, cols.length], () =>
          phaseKernel(m1, rows, cols),
        );
        return nchwcConv(xb, blockFilter(mul(K, mod1), B), { pads: [1 - p, 1 - q, 1, 1] });
      }),
    );
    const d1 = this.demod(`convs/${i1}`, s1, m1, SQRT2);
    const blurK = this.c(`blur/depthwise_${c}`, [c, 1, 4, 4], () =>
      tiled(flip4(scaled(this.weights.blurKernel, 4)), c),
    );
    const blur = blockDepthwiseFilter(blurK, B);
    let h = nchwcInterleave(phases, B); // [1, out, 2H + 2, 2W + 2]
    h = nchwcConv(h, blur, { pads: [1, 1, 0, 0], group: c, sum: this.blockedAddend(i1, d1), leaky: 0.2 }); // · d1
    // 3x3 conv: weights [out, in, 3, 3] · (s · d1)[in]
    const W2 = this.c(`convs/${i2}/weight`, [c, c, 3, 3], () => m2.weight);
    const w2 = mul(W2, reshape(mul(s2, d1), [1, c, 1, 1]));
    const d2 = this.demod(`convs/${i2}`, s2, m2, SQRT2);
    h = nchwcConv(h, blockFilter(w2, B), { pads: 1, sum: this.blockedAddend(i2, d2), leaky: 0.2 }); // · d2
    // ToRGB as a 1x1 blocked conv with the 3 output channels padded to one block
    const T = this.weights.toRGBs[b + 1];
    const wrgb = this.c(`to_rgbs/${b + 1}/weight`, [1, 3, c], () => T.conv.weight);
    const wr = mul(reshape(wrgb, [3, c]), mul(s3, d2)); // [1, 3, C] -> [3, C], modulated
    const pad = this.c(`to_rgbs/zero_${B - 3}x${c}`, [B - 3, c], () => new Float32Array((B - 3) * c));
    const wr16 = reshape(concat([wr, pad], 0), [B, c, 1, 1]);
    let rgb = nchwcReorderOutput(nchwcConv(h, blockFilter(wr16, B), { pads: 0 }), 3); // [1, 3, r, r]
    rgb = add(
      rgb,
      this.c(`to_rgbs/${b + 1}/bias`, [1, 3, 1, 1], () => T.bias),
    );
    return [{ x: h, scale: d2, blocked: true }, add(rgb, this.upsample2x(skip))];
  }

  /** W+ → image, the common path (W+ → S → image). */
  image(wplus: Value, noise: NoiseSpec = 'const'): Value {
    return this.synthesis(this.styles(wplus), noise);
  }

  /**
   * Modulated 3x3 conv, computed on activations: conv(x · s, W) · demod(s), W constant. An upsampling conv
   * is rosinality's: a stride-2 transposed conv, then the 4x4 blur with pad 1. (A polyphase 2x2 conv with
   * DepthToSpace does 16/9 of the multiply-adds and keeps two more full-size tensors for the backward;
   * measured at 1024²: 2.7 s and 5.0 GB against 2.5 s and 3.7 GB for forward + gradient.) `gain` scales
   * the demodulation.
   */
  private modConv(key: string, h: Pending, s: Value, m: ModConvWeights, gain: number): ModConvOut {
    const [b, inC] = h.x.shape;
    const k = m.kernel;
    const inScale = h.scale ? mul(s, h.scale) : s; // the previous layer's pending factor rides along
    const xs = mul(h.x, reshape(inScale, [b, inC, 1, 1])); // [B, in, H, W] scaled per input channel
    let y: Value;
    if (m.upsample) {
      if (k !== 3) throw new RangeError('upsampling convs must be 3x3');
      const wt = this.c(`${key}/weight_t`, [inC, m.outChannels, 3, 3], () => transposeOI(m));
      y = convTranspose2d(xs, wt, { stride: 2 }); // [B, out, 2H+1, 2W+1]
      y = this.blur(y); // [B, out, 2H, 2W]
    } else {
      const wc = this.c(`${key}/weight`, [m.outChannels, inC, k, k], () => m.weight);
      y = conv2d(xs, wc, { pads: (k - 1) >> 1 }); // [B, out, H, W]
    }
    return { y, demod: this.demod(key, s, m, gain) };
  }

  /**
   * StyledConv: modulated conv, + noise·strength, + bias, leaky ReLU(0.2)·sqrt 2, clamp. The sqrt 2 gain is
   * folded into the demodulation, noise and bias (leaky ReLU is positively homogeneous).
   */
  private styledConv(i: number, x: Pending, s: Value, noise: NoiseSpec): Pending {
    const L: StyledConvWeights = this.weights.convs[i];
    const key = `convs/${i}`;
    const { y, demod } = this.modConv(key, x, s, L.conv, SQRT2);
    const r = L.resolution;
    const [b, c] = [y.shape[0], L.conv.outChannels];
    const bias = this.c(`${key}/bias`, [1, c], () => scaled(L.bias, SQRT2));
    const params = this.options.params;
    if (params && noise === 'const')
      throw new RangeError(
        'a generator with trainable weights takes noise inputs (or none), not the fixed buffers',
      );
    const hostStrength = L.noiseStrength * SQRT2; // the fixed-noise paths below run only without params
    const strength = params ? params.noiseStrength(i) : hostStrength;
    if (L.clamp !== null) {
      // The clamp needs the true values, so here the demodulation is applied at once.
      let out = mul(y, reshape(demod, [b, c, 1, 1])); // demod [B, out] -> [B, out, 1, 1]
      if (noise === 'const')
        out = add(
          out,
          this.c(`${key}/noise_scaled`, [1, 1, r, r], () => scaled(L.noiseConst, hostStrength)),
        );
      else if (noise !== 'zero') out = add(out, mul(this.noiseInput(i, noise, r), strength));
      out = leakyRelu(add(out, reshape(bias, [1, c, 1, 1])), 0.2);
      return { x: clamp(out, L.clamp), scale: null };
    }
    // lrelu(y·d + n + b) = d · lrelu(y + (n + b)/d) for d > 0: the demodulation d is left pending for the
    // next layer's modulation, and noise and bias become one addend Z = [1/d, b/d] · [n; 1], made by a
    // MatMul that only writes. That saves two full passes over the activation per layer.
    const inv = reciprocal(demod); // [B, out]
    const invBias = mul(inv, bias); // [B, out]
    let z: Value;
    if (noise === 'const') {
      const basis = this.c(`${key}/noise_basis`, [2, r * r], () => noiseBasis(L.noiseConst, hostStrength));
      const u = concat([reshape(inv, [b, c, 1]), reshape(invBias, [b, c, 1])], 2); // [B, out, 2]
      z = reshape(matmul(u, basis), [b, c, r, r]); // [B, out, r·r] -> [B, out, r, r]
    } else {
      z = reshape(invBias, [b, c, 1, 1]); // [B, out] -> [B, out, 1, 1]
      if (noise !== 'zero')
        z = add(mul(this.noiseInput(i, noise, r), reshape(mul(inv, strength), [b, c, 1, 1])), z);
    }
    return { x: leakyRelu(add(y, z), 0.2), scale: demod };
  }

  private noiseInput(i: number, noise: readonly Value[], r: number): Value {
    const n = noise[i];
    if (n.rank !== 4 || n.shape[1] !== 1 || n.shape[2] !== r || n.shape[3] !== r)
      throw new RangeError(`noise ${i} must be [B or 1, 1, ${r}, ${r}], got [${n.shape}]`);
    return n;
  }

  /**
   * ToRGB: a 1x1 modulated conv without demodulation, so the modulation goes into the [3, C] weight and the
   * conv is a batched matmul over pixels; + bias, clamp, + the upsampled skip.
   */
  private toRGB(j: number, x: Pending, s: Value, skip: Value | null): Value {
    const T: ToRGBWeights = this.weights.toRGBs[j];
    const key = `to_rgbs/${j}`;
    const [b, c, h, w] = x.x.shape;
    const wr = this.c(`${key}/weight`, [1, 3, c], () => T.conv.weight); // [1, 3, C]
    const mod = x.scale ? mul(s, x.scale) : s;
    const wm = mul(wr, reshape(mod, [b, 1, c])); // [B, 3, C] modulated
    let y = reshape(matmul(wm, reshape(x.x, [b, c, h * w])), [b, 3, h, w]); // [B, 3, H·W] -> [B, 3, H, W]
    y = add(
      y,
      this.c(`${key}/bias`, [1, 3, 1, 1], () => T.bias),
    );
    if (T.clamp !== null) y = clamp(y, T.clamp);
    return skip ? add(y, this.upsample2x(skip)) : y;
  }

  /** upfirdn2d(x, 4·blur, pad=(1, 1)): a depthwise 4x4 conv with the (flipped) kernel, gain 4 (= up²). */
  private blur(x: Value): Value {
    const c = x.shape[1];
    const k = this.c(`blur/depthwise_${c}`, [c, 1, 4, 4], () =>
      tiled(flip4(scaled(this.weights.blurKernel, 4)), c),
    );
    return conv2d(x, k, { pads: 1, groups: c });
  }

  /**
   * upfirdn2d(x, 4·blur, up=2, pad=(2, 1)) as a depthwise transposed conv: stride 2, pads 1, so
   * [B, C, H, W] → [B, C, 2H, 2W].
   */
  private upsample2x(x: Value): Value {
    const c = x.shape[1];
    const k = this.c(`blur/upsample_${c}`, [c, 1, 4, 4], () => tiled(scaled(this.weights.blurKernel, 4), c));
    return convTranspose2d(x, k, { stride: 2, pads: 1, groups: c });
  }
}

/** x · rsqrt(mean(x², dim 1) + 1e-8) over the feature axis of [B, D]. */
export function pixelNorm(x: Value): Value {
  return mul(x, powConst(add(mean(mul(x, x), 1, true), 1e-8), -0.5));
}

/** Truncation towards `avg` [1, D]: avg + psi (w - avg) for w [B, D], or for W+ rows [0, cutoff). */
export function truncate(w: Value, avg: Value, psi: number, cutoff?: number): Value {
  if (psi === 1) return w;
  const t = add(avg, mul(sub(w, avg), psi));
  if (w.rank === 2 || cutoff === undefined || cutoff >= w.shape[1]) return t;
  return concat([sliceAxis(t, 1, 0, cutoff), sliceAxis(w, 1, cutoff, w.shape[1])], 1); // [B, L, D]
}

/** clamp(x, -c, c) from max, so its gradient is the engine's max rule. */
export function clamp(x: Value, c: number): Value {
  return neg(max(neg(max(x, -c)), -c));
}

/** [noise · strength; ones] as a [2, r·r] matrix, the right factor of the noise-and-bias addend. */
function noiseBasis(noise: Float32Array, strength: number): Float32Array {
  const out = new Float32Array(2 * noise.length).fill(1, noise.length);
  for (let i = 0; i < noise.length; i++) out[i] = noise[i] * strength;
  return out;
}

function flip4(k: Float32Array): Float32Array {
  const out = new Float32Array(16);
  for (let i = 0; i < 16; i++) out[i] = k[15 - i];
  return out;
}

/**
 * The 3x3 taps a stride-2 transposed conv gives output rows of each parity, in cross-correlation order
 * over the input padded by one row before: even rows 2m take k = 0 from row m and k = 2 from row m - 1.
 */
const PHASE_TAPS = [[2, 0], [1]];

/** The [out, in, rows, cols] phase kernel of an upsampling conv's [out, in, 3, 3] weights. */
function phaseKernel(m: ModConvWeights, rows: readonly number[], cols: readonly number[]): Float32Array {
  const { inChannels: inC, outChannels: outC } = m;
  const [kh, kw] = [rows.length, cols.length];
  const out = new Float32Array(outC * inC * kh * kw);
  for (let oi = 0; oi < outC * inC; oi++)
    for (let t = 0; t < kh; t++)
      for (let u = 0; u < kw; u++) out[(oi * kh + t) * kw + u] = m.weight[oi * 9 + rows[t] * 3 + cols[u]];
  return out;
}

/** [out, in, 3, 3] → ConvTranspose's [in, out, 3, 3] (rosinality's weight.transpose(1, 2)). */
function transposeOI(m: ModConvWeights): Float32Array {
  const { inChannels: inC, outChannels: outC } = m;
  const out = new Float32Array(m.weight.length);
  for (let o = 0; o < outC; o++)
    for (let i = 0; i < inC; i++)
      for (let k = 0; k < 9; k++) out[(i * outC + o) * 9 + k] = m.weight[(o * inC + i) * 9 + k];
  return out;
}
