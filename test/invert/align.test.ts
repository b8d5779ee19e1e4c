import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { detectBoxes } from '../../src/align/detect.js';
import {
  alignImage,
  alignPhoto,
  alignQuad,
  detectFaces,
  type Face,
  ImageError,
  type RgbImage,
  readPhoto,
} from '../../src/align/index.js';
import { faceNets } from '../../src/align/nets.js';
import { assertClose, fixture } from '../helpers.js';

const tmp = mkdtempSync(join(tmpdir(), 'align-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const ASTRONAUT = fixture('photos/astronaut.png');
const SIZE = 256;
const meanY = (f: Face, a: number, b: number) =>
  f.landmarks.slice(a, b).reduce((s, p) => s + p[1], 0) / (b - a);
const rawOf = (img: RgbImage) =>
  sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } });

let photo: RgbImage;
before(async () => {
  photo = await readPhoto(ASTRONAUT);
});

describe('face detection and 68 landmarks (face-api nets on our engine)', () => {
  test('the astronaut: one face, eyes above the nose above the mouth, all inside the box', async () => {
    const faces = await detectFaces(photo);
    assert.equal(faces.length, 1);
    const [f] = faces;
    assert.ok(f.score > 0.8, `score ${f.score}`);
    assert.equal(f.landmarks.length, 68);
    const eyes = meanY(f, 36, 48);
    const nose = meanY(f, 27, 36);
    const mouth = meanY(f, 48, 68);
    assert.ok(eyes < nose && nose < mouth, `eyes ${eyes}, nose ${nose}, mouth ${mouth}`);
    // Left eye left of the right eye (image coordinates: the subject's right eye is points 36-41).
    assert.ok(f.landmarks[39][0] < f.landmarks[42][0]);
    const { x, y, width, height } = f.box;
    const m = 0.1 * width; // the jaw line may touch the box edge
    for (const [px, py] of f.landmarks)
      assert.ok(
        px > x - m && px < x + width + m && py > y - m && py < y + height + m,
        `(${px}, ${py}) outside the box`,
      );
  });
});

describe('the face-api nets on our engine match face-api on TF.js (tools/make_faceapi_fixture.mjs)', () => {
  const ref = () =>
    JSON.parse(readFileSync(fixture('photos/faceapi_ref.json'), 'utf8')) as {
      detector: number[];
      box: number[];
      landmarks: number[];
    };
  const planar = (img: RgbImage) => {
    const px = img.width * img.height;
    const out = new Float32Array(3 * px);
    for (let i = 0; i < px; i++) for (let c = 0; c < 3; c++) out[c * px + i] = img.data[3 * i + c];
    return out;
  };

  test('TinyFaceDetector raw output, and the decoded box', async () => {
    const img = await readPhoto(fixture('photos/faceapi_detector_in.png'));
    const net = await faceNets().detector(416);
    const { boxes } = await net.run({ image: { shape: [1, 3, 416, 416], data: planar(img) } });
    const [, c, n] = boxes.shape; // [1, 25, 13, 13] -> NHWC [13, 13, 25] as TF.js gives it
    const d = boxes.data as Float32Array;
    const nhwc = new Float32Array(d.length);
    for (let ch = 0; ch < c; ch++) for (let p = 0; p < n * n; p++) nhwc[p * c + ch] = d[ch * n * n + p];
    const r = ref();
    assertClose(nhwc, r.detector, { what: 'detector output' });
    const [found] = await detectBoxes(photo);
    const got = [found.box.x, found.box.y, found.box.width, found.box.height];
    for (let i = 0; i < 4; i++) assert.ok(Math.abs(got[i] - r.box[i]) < 0.01, `box ${got} vs ${r.box}`);
  });

  test('FaceLandmark68Net raw output', async () => {
    const img = await readPhoto(fixture('photos/faceapi_landmark_in.png'));
    const net = await faceNets().landmarks();
    const { landmarks } = await net.run({ face: { shape: [1, 3, 112, 112], data: planar(img) } });
    assertClose(landmarks.data as Float32Array, ref().landmarks, { what: 'landmark output' });
  });
});

describe('FFHQ alignment (align_face)', () => {
  test('aligning the aligned crop again is close to the identity (landmarks within 2 % of the size)', async () => {
    const a = await alignPhoto(photo, SIZE);
    assert.equal(a.image.width, SIZE);
    assert.equal(a.faceCount, 1);
    const f1 = (await detectFaces(a.image))[0];
    // The crop square of the aligned image is the image itself.
    const q = alignQuad(f1.landmarks);
    const corners = [
      [0, 0],
      [0, SIZE],
      [SIZE, SIZE],
      [SIZE, 0],
    ];
    q.quad.forEach(([qx, qy], i) => {
      const d = Math.hypot(qx - corners[i][0], qy - corners[i][1]) / SIZE;
      assert.ok(d < 0.02, `corner ${i} off by ${(d * 100).toFixed(2)} %`);
    });
    const b = await alignPhoto(a.image, SIZE);
    const f2 = (await detectFaces(b.image))[0];
    let worst = 0;
    for (let i = 0; i < 68; i++)
      worst = Math.max(
        worst,
        Math.hypot(f1.landmarks[i][0] - f2.landmarks[i][0], f1.landmarks[i][1] - f2.landmarks[i][1]),
      );
    assert.ok(worst / SIZE < 0.02, `a landmark moved ${((worst / SIZE) * 100).toFixed(2)} % of the crop`);
  });

  test("matches e4e's align_face on the same landmarks (tools/make_align_fixture.py)", async () => {
    const lm = JSON.parse(readFileSync(fixture('photos/astronaut_landmarks.json'), 'utf8')) as [
      number,
      number,
    ][];
    const diff = async (img: RgbImage, points: [number, number][], size: number, ref: string) => {
      const ours = await alignImage(img, alignQuad(points), size);
      const want = await readPhoto(fixture(`photos/${ref}`));
      let sum = 0;
      let max = 0;
      for (let i = 0; i < ours.data.length; i++) {
        const d = Math.abs(ours.data[i] - want.data[i]);
        sum += d;
        max = Math.max(max, d);
      }
      return { mean: sum / ours.data.length, max };
    };
    // Crop and quad warp only: the same bytes.
    assert.deepEqual(await diff(photo, lm, SIZE, 'astronaut_aligned_256.png'), { mean: 0, max: 0 });
    // Shrink (Lanczos) and reflect pad with blur: libvips' Lanczos and Gaussian differ from PIL's and scipy's
    // by at most a level or two here and there.
    const edge = await readPhoto(fixture('photos/astronaut_edge.png'));
    const moved = lm.map(([x, y]) => [(x - 120) * 3, (y - 40) * 3] as [number, number]);
    const d = await diff(edge, moved, 128, 'astronaut_edge_aligned_128.png');
    assert.ok(d.max <= 2 && d.mean < 0.02, `mean ${d.mean}, max ${d.max}`);
  });

  test('each bad photo gets a clear answer', async () => {
    const gray = await sharp({
      create: { width: 320, height: 240, channels: 3, background: { r: 128, g: 128, b: 128 } },
    })
      .png()
      .toBuffer();
    await assert.rejects(
      alignPhoto(await readPhoto(gray), SIZE),
      (e: Error) => e instanceof ImageError && /no face found/.test(e.message),
    );

    const two = await sharp({
      create: { width: 1024, height: 512, channels: 3, background: { r: 0, g: 0, b: 0 } },
    })
      .composite([
        { input: ASTRONAUT, left: 0, top: 0 },
        { input: ASTRONAUT, left: 512, top: 0 },
      ])
      .png()
      .toBuffer();
    const twoFaces = await readPhoto(two);
    await assert.rejects(
      alignPhoto(twoFaces, SIZE),
      (e: Error) => e instanceof ImageError && /^2 faces found.*--face N/.test(e.message),
    );
    const second = await alignPhoto(twoFaces, SIZE, { face: 2 });
    assert.ok(second.face.box.x > 512);

    const small = await rawOf(photo).resize(96, 96).png().toBuffer();
    const tiny = await sharp({
      create: { width: 400, height: 400, channels: 3, background: { r: 128, g: 128, b: 128 } },
    })
      .composite([{ input: small, left: 150, top: 150 }])
      .png()
      .toBuffer();
    await assert.rejects(
      alignPhoto(await readPhoto(tiny), SIZE),
      (e: Error) => e instanceof ImageError && /(only \d+ pixels wide|no face found)/.test(e.message),
    );

    const text = join(tmp, 'notes.jpg');
    writeFileSync(text, 'this is not a photo\n');
    await assert.rejects(
      readPhoto(text),
      (e: Error) => e instanceof ImageError && /is not an image/.test(e.message),
    );

    const wide = join(tmp, 'wide.png');
    await sharp({ create: { width: 20_000, height: 64, channels: 3, background: { r: 9, g: 9, b: 9 } } })
      .png()
      .toFile(wide);
    await assert.rejects(
      readPhoto(wide),
      (e: Error) => e instanceof ImageError && /20000×64 pixels; photos up to 16384/.test(e.message),
    );
  });
});
