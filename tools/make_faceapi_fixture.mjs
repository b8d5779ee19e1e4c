/**
 * Reference fixture for the face-api nets (test/fixtures/photos/faceapi_*), made by @vladmandic/face-api
 * itself: its browser bundle (dist/face-api.js, with TF.js 4 inside) runs in a node:vm context on TF.js's
 * CPU backend (the package's node builds need @tensorflow/tfjs-node, which we do not install), with the
 * weight files of its model/ folder loaded through tf.io.decodeWeights.
 *
 *   node tools/make_faceapi_fixture.mjs
 *
 * Writes:
 *   faceapi_detector_in.png   astronaut.png scaled to 416² (the detector's input)
 *   faceapi_landmark_in.png   the face box face-api finds, cut out and padded as toBatchTensor(112, true)
 *                             does, scaled to 112² (the landmark net's input)
 *   faceapi_ref.json          {detector: TinyFaceDetector's raw output [13, 13, 25] (NHWC, flattened),
 *                              box: [x, y, w, h] of its detection in astronaut.png, score,
 *                              landmarks: FaceLandmark68Net's raw output [136]}
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';
import sharp from 'sharp';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = (f) => join(root, 'test', 'fixtures', 'photos', f);
const pkg = dirname(createRequire(import.meta.url).resolve('@vladmandic/face-api/package.json'));

const ctx = vm.createContext({ console, setTimeout, clearTimeout, TextEncoder, TextDecoder, performance });
ctx.globalThis = ctx;
ctx.self = ctx;
vm.runInContext(readFileSync(join(pkg, 'dist', 'face-api.js'), 'utf8'), ctx);
const { faceapi } = ctx;
const tf = faceapi.tf;
tf.env().setPlatform('vm', {
  fetch: () => {
    throw new Error('no network');
  },
  now: () => performance.now(),
  encode: (t) => new TextEncoder().encode(t),
  decode: (b, e) => new TextDecoder(e).decode(b),
  isTypedArray: (a) => ArrayBuffer.isView(a) && !(a instanceof DataView),
});
await tf.setBackend('cpu');
await tf.ready();
// face-api's own environment: no canvas or media here, tensors only.
const none = () => {
  throw new Error('no DOM');
};
class NoMedia {}
faceapi.env.setEnv({
  Canvas: NoMedia,
  CanvasRenderingContext2D: NoMedia,
  Image: NoMedia,
  ImageData: NoMedia,
  Video: NoMedia,
  createCanvasElement: none,
  createImageElement: none,
  createVideoElement: none,
  fetch: none,
  readFile: none,
});

function load(net, name) {
  const groups = JSON.parse(readFileSync(join(pkg, 'model', `${name}-weights_manifest.json`), 'utf8'));
  const specs = groups.flatMap((g) => g.weights);
  const bytes = Buffer.concat(groups.flatMap((g) => g.paths.map((p) => readFileSync(join(pkg, 'model', p)))));
  net.loadFromWeightMap(tf.io.decodeWeights(new Uint8Array(bytes).buffer, specs));
}

const rgb = async (s) => {
  const { data, info } = await s.removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data), width: info.width, height: info.height };
};
const tensor = (img) => tf.tensor4d(Float32Array.from(img.data), [1, img.height, img.width, 3]);

// Detector: astronaut.png (512², square) scaled to 416².
const photo = out('astronaut.png');
const det = await rgb(sharp(photo).resize(416, 416, { kernel: 'linear', fit: 'fill' }));
await sharp(det.data, { raw: { width: 416, height: 416, channels: 3 } }).png().toFile(out('faceapi_detector_in.png'));
const detector = new faceapi.TinyFaceDetector();
load(detector, 'tiny_face_detector_model');
const raw = await detector.forward(tensor(det), 416);
const found = await detector.locateFaces(tensor(det), new faceapi.TinyFaceDetectorOptions({ inputSize: 416 }));
if (found.length !== 1) throw new Error(`expected one face, face-api found ${found.length}`);
const rel = found[0].relativeBox;
const box = [rel.x * 512, rel.y * 512, rel.width * 512, rel.height * 512];

// Landmarks: the box (rounded, clipped) cut out of astronaut.png, padded to a centred square, 112².
const [x0, y0] = [Math.max(0, Math.round(box[0])), Math.max(0, Math.round(box[1]))];
const w = Math.min(512, Math.round(box[0] + box[2])) - x0;
const h = Math.min(512, Math.round(box[1] + box[3])) - y0;
const diff = Math.abs(w - h);
const after = Math.round(diff / 2);
const pad = w < h ? { left: diff - after, right: after } : { top: diff - after, bottom: after };
const crop = await rgb(sharp(photo).extract({ left: x0, top: y0, width: w, height: h }).extend({ ...pad, background: '#000' }));
const lmIn = await rgb(sharp(crop.data, { raw: { width: crop.width, height: crop.height, channels: 3 } }).resize(112, 112, { kernel: 'linear', fit: 'fill' }));
await sharp(lmIn.data, { raw: { width: 112, height: 112, channels: 3 } }).png().toFile(out('faceapi_landmark_in.png'));
const lmNet = new faceapi.FaceLandmark68Net();
load(lmNet, 'face_landmark_68_model');
const lm = lmNet.runNet(await faceapi.toNetInput(tensor(lmIn)));

writeFileSync(
  out('faceapi_ref.json'),
  `${JSON.stringify({ detector: Array.from(await raw.data()), box, score: found[0].score, landmarks: Array.from(await lm.data()) })}\n`,
);
console.log('face-api', faceapi.version, 'tfjs', tf.version_core, 'box', box.map((v) => v.toFixed(1)).join(', '));
