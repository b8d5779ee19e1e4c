import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { readNpyF32 } from '../../src/io/npy.js';
import { encodeE4e, loadE4e } from '../../src/models/e4e/load.js';
import { alignCornersMatrix } from '../../src/models/e4e/model.js';
import { assertClose, fixture } from '../helpers.js';

describe('e4e encoder (Encoder4Editing on the IR-SE body)', () => {
  test('loads the official checkpoint layout and matches the reference W+ (tools/make_e4e_fixture.py)', async () => {
    const ck = loadE4e(fixture('e4e/e4e.pt'));
    const c = ck.encoder.config;
    assert.equal(c.styleCount, 8);
    assert.equal(c.styleDim, 24);
    assert.deepEqual(c.taps, [6, 20, 23]);
    assert.deepEqual(c.styleConvs, [4, 4, 4, 5, 5, 5, 5, 6]);
    assert.equal(ck.decoder.config.size, 32);
    assert.equal(ck.opts.encoder_type, 'Encoder4Editing');
    const x = readNpyF32(fixture('e4e/input.npy'));
    const w = await encodeE4e(ck, x.data, 64);
    const want = readNpyF32(fixture('e4e/wplus.npy'));
    assertClose(w, want.data, { what: 'W+' });
    const codes = readNpyF32(fixture('e4e/codes.npy'));
    assertClose(
      w.map((v, i) => v - ck.latentAvg[i]),
      codes.data,
      { what: 'encoder(x)' },
    );
  });

  test('bilinear align_corners upsampling matrix: ends map to ends, rows sum to 1', () => {
    const m = alignCornersMatrix(4, 8); // [8, 4]
    assert.equal(m[0], 1);
    assert.equal(m[7 * 4 + 3], 1);
    for (let i = 0; i < 8; i++)
      assert.ok(Math.abs(m.slice(i * 4, i * 4 + 4).reduce((a, b) => a + b, 0) - 1) < 1e-6);
  });
});
