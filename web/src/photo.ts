/**
 * "Upload photo": the photo goes to POST /api/jobs/invert (aligned, encoded/optimized on the server); the
 * job's SSE events drive the status line, and the new latent joins the gallery, selected, ready to edit.
 */

interface Item {
  id: string;
  label: string;
  source: string;
}

interface PhotoEvent {
  type: string;
  stage?: string;
  step?: number;
  steps?: number;
  loss?: number;
  position?: number;
  error?: string;
  added?: Item | null;
  psnr?: number;
  image?: string | null;
}

export interface PhotoDeps {
  api<T>(path: string, body?: unknown): Promise<T>;
  addThumb(item: Item): void;
  select(id: string): Promise<void>;
  setStatus(text: string): void;
  setAfter(src: string, caption: string): void;
}

const PHOTO_BYTES = 16 * 1024 * 1024;

const STAGES: Record<string, string> = {
  align: 'finding and aligning the face',
  encode: 'encoding (e4e)',
  render: 'rendering',
};

export function initPhotoUpload(input: HTMLInputElement, align: HTMLInputElement, d: PhotoDeps): void {
  input.addEventListener('change', async () => {
    const file = input.files?.[0];
    input.value = '';
    if (!file) return;
    if (file.size > PHOTO_BYTES) {
      d.setStatus(`${file.name} is too large (limit ${PHOTO_BYTES / 2 ** 20} MB)`);
      return;
    }
    d.setStatus(`uploading ${file.name}…`);
    try {
      const bytes = new Uint8Array(await file.arrayBuffer());
      let bin = '';
      for (let i = 0; i < bytes.length; i += 0x8000)
        bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
      const job = await d.api<{ id: string }>('/api/jobs/invert', {
        name: file.name,
        data: btoa(bin),
        align: align.checked,
      });
      const source = new EventSource(`/api/jobs/${job.id}/events`);
      const on = (type: string, fn: (e: PhotoEvent) => void) =>
        source.addEventListener(type, (m) => fn(JSON.parse((m as MessageEvent).data) as PhotoEvent));
      on('queued', (e) => d.setStatus(`${file.name}: waiting in the queue (position ${e.position})`));
      on('progress', (e) => {
        if (e.stage && e.stage !== 'optimize') d.setStatus(`${file.name}: ${STAGES[e.stage] ?? e.stage}…`);
        else if (e.step)
          d.setStatus(
            `${file.name}: inverting, step ${e.step}/${e.steps}${e.loss !== undefined ? ` · loss ${e.loss.toFixed(4)}` : ''}`,
          );
      });
      on('done', async (e) => {
        source.close();
        if (!e.added) return;
        d.addThumb(e.added);
        await d.select(e.added.id);
        if (e.image) d.setAfter(e.image, 'reconstruction');
        d.setStatus(`${file.name}: added to the gallery (PSNR ${e.psnr?.toFixed(1)} dB)`);
      });
      on('failed', (e) => {
        source.close();
        d.setStatus(`${file.name}: ${e.error}`);
      });
      on('cancelled', () => {
        source.close();
        d.setStatus(`${file.name}: cancelled`);
      });
    } catch (e) {
      d.setStatus(`photo upload failed: ${(e as Error).message}`);
    }
  });
}
