/**
 * The styleclip serve page: a gallery, a before/after stage and three tools (global directions,
 * optimization, mapper). It speaks only the JSON API documented in the README.
 */

import { initPhotoUpload } from './photo.js';

interface GalleryItem {
  id: string;
  label: string;
  source: string;
}
interface Info {
  generator: { size: number };
  previewSize: number | null;
  global: boolean;
  arcface: boolean;
  mappers: string[];
  photoAlign: boolean;
  limits: { textChars: number; steps: number; uploadBytes: number };
}
interface EditAnswer {
  image: string;
  size: number;
  numChannels?: number;
  preview?: boolean;
  timing?: { totalMs: number };
}
interface JobEvent {
  type: string;
  position?: number;
  step?: number;
  steps?: number;
  loss?: number;
  clip?: number;
  image?: string | null;
  error?: string;
}

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

class ApiFailure extends Error {}

async function api<T>(path: string, body?: unknown, signal?: AbortSignal, method?: string): Promise<T> {
  const res = await fetch(path, {
    method: method ?? (body === undefined ? 'GET' : 'POST'),
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
  });
  const data = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
  if (!res.ok) throw new ApiFailure((data as { error?: string }).error ?? `HTTP ${res.status}`);
  return data as T;
}

const state = {
  info: null as Info | null,
  selected: null as string | null,
  originals: new Map<string, string>(),
};

function setStatus(text: string): void {
  $('status').textContent = text;
}

function showMessage(id: string, text: string, error = false): void {
  const el = $(id);
  el.textContent = text;
  el.classList.toggle('error', error);
}

// Each tool panel owns its result: what the right-hand image shows is the result of the open panel (or the
// original while it has none), so a running optimization never overwrites a global edit on screen, and
// Download saves what is shown.
type Panel = 'global' | 'optimize' | 'mapper';
interface Result {
  src: string;
  caption: string;
}
const results: Record<Panel, Result | null> = { global: null, optimize: null, mapper: null };

function showAfter(): void {
  const r = results[currentTab];
  const img = $<HTMLImageElement>('after');
  const original = $<HTMLImageElement>('before').getAttribute('src');
  const src = r?.src ?? original;
  if (src) img.src = src;
  else img.removeAttribute('src');
  $('after-caption').textContent = r?.caption ?? 'Edited';
  $<HTMLButtonElement>('download').disabled = !src;
}

/** Shows an image that belongs to no panel (a photo's reconstruction) until a panel shows its own. */
function setAfter(src: string, caption: string): void {
  $<HTMLImageElement>('after').src = src;
  $('after-caption').textContent = caption;
  $<HTMLButtonElement>('download').disabled = false;
}

function setResult(panel: Panel, src: string, caption: string): void {
  results[panel] = { src, caption };
  if (panel === currentTab) showAfter();
}

$('download').addEventListener('click', () => {
  const a = document.createElement('a');
  a.href = $<HTMLImageElement>('after').src;
  const what = currentTab === 'global' ? '' : `${currentTab}_`;
  a.download = `styleclip_${what}${(state.selected ?? 'image').replace(/[^\w-]+/g, '_')}.png`;
  a.click();
});

// --- gallery ------------------------------------------------------------------------------------------

async function original(id: string): Promise<string> {
  let src = state.originals.get(id);
  if (!src) {
    src = (await api<{ image: string }>(`/api/images/${encodeURIComponent(id)}`)).image;
    state.originals.set(id, src);
  }
  return src;
}

function addThumb(item: GalleryItem): void {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = 'thumb';
  b.dataset.id = item.id;
  b.title = item.label;
  b.setAttribute('aria-pressed', 'false');
  b.setAttribute('aria-label', item.label);
  const img = document.createElement('img');
  img.alt = item.label;
  const label = document.createElement('span');
  label.className = 'thumb-label';
  label.textContent = item.label;
  b.append(img, label);
  b.addEventListener('click', () => void select(item.id));
  $('gallery').append(b);
  thumbQueue.push([item.id, img]);
  void drainThumbs();
}

// Thumbnails load one at a time so that a click on one is never stuck behind all the others.
const thumbQueue: [string, HTMLImageElement][] = [];
let draining = false;
async function drainThumbs(): Promise<void> {
  if (draining) return;
  draining = true;
  while (thumbQueue.length) {
    const [id, img] = thumbQueue.shift()!;
    try {
      img.src = await original(id);
    } catch (e) {
      img.alt = `failed: ${(e as Error).message}`;
    }
  }
  draining = false;
}

async function select(id: string): Promise<void> {
  state.selected = id;
  for (const b of document.querySelectorAll<HTMLButtonElement>('#gallery .thumb'))
    b.setAttribute('aria-pressed', String(b.dataset.id === id));
  setStatus(`loading ${id}…`);
  try {
    const src = await original(id);
    if (state.selected !== id) return;
    $<HTMLImageElement>('before').src = src;
    // The global and mapper results were of the previous image; an optimization's belongs to its job.
    results.global = null;
    results.mapper = null;
    showAfter();
    setStatus(id);
    if (currentTab === 'global' && $<HTMLInputElement>('target').value.trim()) globalRender(false);
  } catch (e) {
    setStatus(`error: ${(e as Error).message}`);
  }
}

async function loadGallery(): Promise<void> {
  const { images } = await api<{ images: GalleryItem[] }>('/api/gallery');
  $('gallery').replaceChildren();
  images.forEach(addThumb);
  if (images.length) await select(images[0].id);
}

/** The seeds the CLI takes: RandomState's 0 … 2^32 − 1. */
const MAX_SEED = 0xffffffff;

$('seed-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const input = $<HTMLInputElement>('seed');
  const v = input.value.trim();
  const n = Number(v);
  if (!/^\d+$/.test(v) || n > MAX_SEED) {
    setStatus(`seed must be a whole number from 0 to ${MAX_SEED}${v ? `, not ${v}` : ''}`);
    input.setAttribute('aria-invalid', 'true');
    return;
  }
  input.removeAttribute('aria-invalid');
  const id = `seed:${n}`;
  if (!document.querySelector(`#gallery button[data-id="${id}"]`))
    addThumb({ id, label: `seed ${n}`, source: 'seed' });
  void select(id);
});

$<HTMLInputElement>('upload').addEventListener('change', async (ev) => {
  const input = ev.target as HTMLInputElement;
  const file = input.files?.[0];
  input.value = '';
  if (!file) return;
  const limit = state.info?.limits.uploadBytes ?? Number.POSITIVE_INFINITY;
  if (file.size > limit) {
    setStatus(`${file.name} is too large (limit ${(limit / 2 ** 20).toFixed(0)} MB)`);
    return;
  }
  setStatus(`uploading ${file.name}…`);
  try {
    const bytes = new Uint8Array(await file.arrayBuffer());
    let bin = '';
    for (let i = 0; i < bytes.length; i += 0x8000)
      bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    const { images } = await api<{ images: GalleryItem[] }>('/api/latents', {
      name: file.name,
      data: btoa(bin),
    });
    images.forEach(addThumb);
    setStatus(`added ${images.length} image(s) from ${file.name}`);
    if (images.length) await select(images[0].id);
  } catch (e) {
    setStatus(`upload failed: ${(e as Error).message}`);
  }
});

initPhotoUpload($<HTMLInputElement>('photo'), $<HTMLInputElement>('photo-align'), {
  api,
  addThumb,
  select,
  setStatus,
  setAfter,
});

// --- tabs ---------------------------------------------------------------------------------------------

let currentTab: Panel = 'global';
for (const b of document.querySelectorAll<HTMLButtonElement>('.tabs button'))
  b.addEventListener('click', () => {
    currentTab = b.dataset.tab as Panel;
    for (const o of document.querySelectorAll<HTMLButtonElement>('.tabs button'))
      o.setAttribute('aria-selected', String(o === b));
    for (const p of document.querySelectorAll<HTMLElement>('.panel'))
      p.hidden = p.id !== `panel-${currentTab}`;
    showAfter();
  });

// --- global directions --------------------------------------------------------------------------------

// Renders are debounced while a slider moves, and at most one is in flight: what the sliders say meanwhile
// is kept as the next request (only the latest), sent when the answer arrives. An answer for anything older
// than what is on screen (another image, an earlier request) is dropped, so the picture follows the sliders.
let issued = 0;
let shown = 0;
let busy = false;
let wanted: { preview: boolean } | null = null;
let debounce: ReturnType<typeof setTimeout> | undefined;

function globalRender(preview: boolean, delay = 0): void {
  clearTimeout(debounce);
  debounce = setTimeout(() => {
    wanted = { preview };
    void pump();
  }, delay);
}

async function pump(): Promise<void> {
  if (busy || !wanted) return;
  const w = wanted;
  wanted = null;
  busy = true;
  try {
    await globalRequest(w.preview);
  } finally {
    busy = false;
  }
  void pump();
}

async function globalRequest(preview: boolean): Promise<void> {
  const target = $<HTMLInputElement>('target').value.trim();
  if (!state.selected) return;
  if (!target) {
    showMessage('global-msg', 'Type a target text, then move α.');
    return;
  }
  const seq = ++issued;
  const body = {
    image: state.selected,
    neutral: $<HTMLInputElement>('neutral').value.trim() || 'face',
    target,
    alpha: Number($<HTMLInputElement>('alpha').value),
    beta: Number($<HTMLInputElement>('beta').value),
    preview: preview && state.info?.previewSize != null,
  };
  try {
    const r = await api<EditAnswer>('/api/global', body);
    if (seq < shown || body.image !== state.selected) return; // stale
    shown = seq;
    $('channels').textContent = String(r.numChannels);
    setResult(
      'global',
      r.image,
      `α ${body.alpha.toFixed(1)} · β ${body.beta.toFixed(2)}${r.preview ? ` · preview ${r.size}²` : ''}`,
    );
    $('render-info').textContent = `${r.size}² in ${r.timing?.totalMs ?? '?'} ms`;
    showMessage('global-msg', r.numChannels === 0 ? 'No channel passes β: lower β or change the texts.' : '');
  } catch (e) {
    if (seq < shown) return;
    showMessage('global-msg', (e as Error).message, true);
  }
}

// The channel count follows β at once (no render needed).
let countSeq = 0;
async function channelCount(): Promise<void> {
  const target = $<HTMLInputElement>('target').value.trim();
  if (!target || !state.info?.global) return;
  const seq = ++countSeq;
  try {
    const r = await api<{ numChannels: number }>('/api/global/channels', {
      neutral: $<HTMLInputElement>('neutral').value.trim() || 'face',
      target,
      beta: Number($<HTMLInputElement>('beta').value),
    });
    if (seq === countSeq) $('channels').textContent = String(r.numChannels);
  } catch {
    // the render's answer will say what is wrong
  }
}

function bindSlider(id: string, out: string, digits: number): void {
  const input = $<HTMLInputElement>(id);
  const show = () => {
    $(out).textContent = Number(input.value).toFixed(digits);
  };
  input.addEventListener('input', () => {
    show();
    if (id === 'beta') void channelCount();
    globalRender(true, 40);
  });
  input.addEventListener('change', () => {
    show();
    globalRender(false);
  });
}
bindSlider('alpha', 'alpha-out', 1);
bindSlider('beta', 'beta-out', 2);
for (const id of ['neutral', 'target'])
  $<HTMLInputElement>(id).addEventListener('change', () => globalRender(false));

// --- optimization -------------------------------------------------------------------------------------

let job: { id: string; source: EventSource } | null = null;

function optBusy(busy: boolean): void {
  $<HTMLButtonElement>('opt-run').disabled = busy;
  $<HTMLButtonElement>('opt-cancel').disabled = !busy;
}

$('opt-run').addEventListener('click', async () => {
  const num = (id: string) => Number($<HTMLInputElement>(id).value);
  const mode = $<HTMLSelectElement>('mode').value;
  const body = {
    image: mode === 'edit' ? (state.selected ?? undefined) : undefined,
    prompt: $<HTMLInputElement>('prompt').value.trim(),
    steps: num('steps'),
    lr: num('lr'),
    l2Lambda: num('l2'),
    idLambda: num('idl'),
    space: $<HTMLSelectElement>('space').value,
    mode,
  };
  if (!body.prompt) {
    showMessage('opt-status', 'Type a prompt first.', true);
    return;
  }
  const bar = $<HTMLProgressElement>('opt-progress');
  bar.max = body.steps;
  bar.value = 0;
  try {
    optBusy(true);
    const j = await api<{ id: string }>('/api/jobs/optimize', body);
    const source = new EventSource(`/api/jobs/${j.id}/events`);
    job = { id: j.id, source };
    const on = (type: string, fn: (e: JobEvent) => void) =>
      source.addEventListener(type, (m) => fn(JSON.parse((m as MessageEvent).data) as JobEvent));
    on('queued', (e) => showMessage('opt-status', `waiting in the queue: position ${e.position}`));
    on('started', () => showMessage('opt-status', 'starting…'));
    on('progress', (e) => {
      bar.value = e.step ?? 0;
      if (e.loss !== undefined)
        showMessage(
          'opt-status',
          `step ${e.step}/${e.steps} · loss ${e.loss.toFixed(4)} · clip ${e.clip?.toFixed(4)}`,
        );
      if (e.image) setResult('optimize', e.image, `optimization, step ${e.step}`);
    });
    const finish = (text: string, error = false) => {
      source.close();
      job = null;
      optBusy(false);
      showMessage('opt-status', text, error);
    };
    on('done', (e) => {
      bar.value = bar.max;
      const added = (e as { added?: GalleryItem | null }).added;
      if (added && !document.querySelector(`#gallery .thumb[data-id="${added.id}"]`)) addThumb(added);
      if (e.image) setResult('optimize', e.image, `optimized: “${body.prompt}”`);
      finish(`done: ${body.steps} steps`);
    });
    on('failed', (e) => finish(`failed: ${e.error}`, true));
    on('cancelled', (e) => {
      // A cancelled job keeps what it reached (as the CLI does on Ctrl-C): its image and gallery entry.
      const steps = e.step ?? (e as { steps?: number }).steps ?? 0;
      const added = (e as { added?: GalleryItem | null }).added;
      if (added && !document.querySelector(`#gallery .thumb[data-id="${added.id}"]`)) addThumb(added);
      if (e.image) setResult('optimize', e.image, `cancelled after ${steps} steps: “${body.prompt}”`);
      finish(`cancelled after ${steps} steps${added ? '; the result joined the gallery' : ''}`);
    });
  } catch (e) {
    optBusy(false);
    showMessage('opt-status', (e as Error).message, true);
  }
});

$('opt-cancel').addEventListener('click', async () => {
  if (!job) return;
  const id = job.id;
  showMessage('opt-status', 'cancelling…');
  try {
    await api(`/api/jobs/${id}`, undefined, undefined, 'DELETE');
  } catch (e) {
    // 409: it finished meanwhile; its own event says how.
    if (job?.id === id) showMessage('opt-status', (e as Error).message, true);
  }
});

// --- mapper -------------------------------------------------------------------------------------------

$<HTMLInputElement>('strength').addEventListener('input', (ev) => {
  $('strength-out').textContent = Number((ev.target as HTMLInputElement).value).toFixed(1);
});

$('mapper-apply').addEventListener('click', async () => {
  const mapper = $<HTMLSelectElement>('mapper').value;
  if (!state.selected || !mapper) return;
  const strength = Number($<HTMLInputElement>('strength').value);
  showMessage('mapper-msg', 'applying…');
  try {
    const r = await api<EditAnswer>('/api/mapper', { image: state.selected, mapper, strength });
    setResult('mapper', r.image, `mapper ${mapper} · strength ${strength.toFixed(1)}`);
    showMessage('mapper-msg', `applied ${mapper}`);
  } catch (e) {
    showMessage('mapper-msg', (e as Error).message, true);
  }
});

// --- start --------------------------------------------------------------------------------------------

async function start(): Promise<void> {
  const info = await api<Info>('/api/info');
  state.info = info;
  $('model-info').textContent =
    `generator ${info.generator.size}²${info.previewSize ? ` · preview ${info.previewSize}²` : ''}`;
  if (info.generator.size < 256) for (const id of ['before', 'after']) $(id).classList.add('pixelated');
  if (!info.global) showMessage('global-msg', 'Start the server with --fs3 to use global directions.', true);
  const sel = $<HTMLSelectElement>('mapper');
  for (const m of info.mappers) sel.append(new Option(m, m));
  if (!info.mappers.length)
    showMessage('mapper-msg', 'Start the server with --mappers DIR to use mappers.', true);
  $<HTMLInputElement>('idl').disabled = !info.arcface;
  $<HTMLInputElement>('photo-align').checked = info.photoAlign;
  $<HTMLInputElement>('steps').max = String(info.limits.steps);
  await loadGallery();
  document.body.dataset.ready = 'true';
}

start().catch((e) => setStatus(`error: ${(e as Error).message}`));
