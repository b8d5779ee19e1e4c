/**
 * End to end in Debian's Chromium (playwright-core drives /usr/bin/chromium; .ci/run installs it): the page
 * on the fixture models, clicked and typed into like a person would. Screenshots go to out/e2e/ (and, with
 * UPDATE_DOCS=1, the README's docs/serve.png).
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { BrowserContext, Page } from 'playwright-core';
import type { RunningServer } from '../../src/server/index.js';
import { buildWeb } from '../../web/build.js';
import { fx, startFixtureServer } from '../server/helpers.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const found = existsSync(CHROMIUM);
const skip = found
  ? false
  : `Chromium not found at ${CHROMIUM}: install Debian's chromium (apt-get install -y chromium; .ci/run does) or set CHROMIUM_PATH`;
if (!found) console.warn(`e2e: SKIPPED. ${skip}`);

const root = fileURLToPath(new URL('../../', import.meta.url));
const outDir = join(root, 'out', 'e2e');

describe('styleclip serve in Chromium', { skip }, () => {
  let srv: RunningServer;
  let ctx: BrowserContext;
  let page: Page;
  let profile: string;
  let webRoot: string;

  before(async () => {
    webRoot = await buildWeb(mkdtempSync(join(tmpdir(), 'styleclip-web-')));
    ({ srv } = await startFixtureServer(webRoot));
    profile = mkdtempSync(join(tmpdir(), 'styleclip-chromium-'));
    mkdirSync(outDir, { recursive: true });
    const { chromium } = await import('playwright-core');
    ctx = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      viewport: { width: 1280, height: 760 },
    });
    page = ctx.pages()[0] ?? (await ctx.newPage());
    page.setDefaultTimeout(30_000);
  });

  after(async () => {
    await ctx?.close();
    await srv?.close();
    for (const d of [profile, webRoot]) if (d) rmSync(d, { recursive: true, force: true });
  });

  const src = (id: string) => page.locator(`#${id}`).getAttribute('src');

  /** Waits until #id's text matches; a timeout says what the text was. */
  async function waitText(id: string, re: RegExp): Promise<void> {
    try {
      await page.waitForFunction(
        ([i, r]) => new RegExp(r).test(document.getElementById(i)?.textContent ?? ''),
        [id, re.source] as const,
      );
    } catch (e) {
      throw new Error(`#${id} never matched ${re}; it says "${await page.locator(`#${id}`).textContent()}"`, {
        cause: e,
      });
    }
  }

  test('load the page, pick an image, type a target, move α: the image changes and channels show', async () => {
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${srv.url}/`);
    await page.waitForSelector('body[data-ready="true"]');
    assert.equal(await page.locator('#gallery .thumb').count(), 6);
    assert.match((await page.locator('.note').textContent()) ?? '', /or a photo of a face/);
    // /api/info's photoAlign (a fixture generator, not the world's): photos are aligned.
    assert.equal(await page.locator('#photo-align').isChecked(), true);

    await page.locator('#gallery .thumb').nth(2).click();
    await waitText('status', /^seed:2$/);
    const original = await src('before');
    assert.match(original ?? '', /^data:image\/png/);
    assert.equal(await src('after'), original);

    await page.fill('#target', 'smiling face');
    await page.locator('#alpha').fill('6');
    await page.waitForFunction(
      (o) => (document.getElementById('after') as HTMLImageElement).src !== o,
      original,
    );
    await page.waitForFunction(() => /^\d+$/.test(document.getElementById('channels')?.textContent ?? ''));
    const channels = Number(await page.locator('#channels').textContent());
    assert.ok(channels > 0, `channel count ${channels}`);
    assert.equal(await page.locator('#alpha-out').textContent(), '6.0');
    const first = await src('after');

    // A stricter β moves fewer channels; a new α renders a new image.
    await page.locator('#beta').fill('0.25');
    await page.waitForFunction((c) => Number(document.getElementById('channels')?.textContent) < c, channels);
    await page.locator('#alpha').fill('-6');
    await page.waitForFunction(
      (f) => (document.getElementById('after') as HTMLImageElement).src !== f,
      first,
    );
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
    assert.equal(download.suggestedFilename(), 'styleclip_seed_2.png');
    await page.screenshot({ path: join(outDir, 'global.png') });
    assert.deepEqual(errors, []);
  });

  test('run an optimization for 3 steps and see its progress', async () => {
    await page.click('.tab[data-tab="optimize"]');
    await page.fill('#prompt', 'a person with purple hair');
    await page.fill('#steps', '3');
    const beforeRun = await src('after');
    await page.click('#opt-run');
    await waitText('opt-status', /^done/);
    assert.equal(await page.locator('#opt-progress').evaluate((p) => (p as HTMLProgressElement).value), 3);
    assert.notEqual(await src('after'), beforeRun);
    assert.match((await page.locator('#after-caption').textContent()) ?? '', /optimized/);
    assert.equal(await page.locator('#opt-cancel').isDisabled(), true);
    assert.equal(await page.locator('#gallery .thumb').count(), 7, 'the result joins the gallery');
    await page.screenshot({ path: join(outDir, 'optimize.png') });
  });

  test('cancel a long optimization from the page', async () => {
    await page.fill('#steps', '1000');
    await page.click('#opt-run');
    await waitText('opt-status', /^step \d+\/1000/);
    await page.click('#opt-cancel');
    await waitText('opt-status', /^cancelled/);
    assert.equal(await page.locator('#opt-run').isEnabled(), true);
  });

  test('upload a latent file: its images join the gallery', async () => {
    const before = await page.locator('#gallery .thumb').count();
    await page.setInputFiles('#upload', fx('stylegan2/wplus_trunc.npy'));
    await waitText('status', /^upload:u\d+:0$/);
    assert.equal(await page.locator('#gallery .thumb').count(), before + 2);
    assert.equal(
      await page.locator('#gallery .thumb[aria-pressed="true"]').getAttribute('title'),
      'wplus_trunc.npy #0',
    );
  });

  test('apply a mapper', async () => {
    await page.click('.tab[data-tab="mapper"]');
    assert.equal(await page.locator('#mapper').inputValue(), 'mapper');
    await page.locator('#strength').fill('2');
    const beforeApply = await src('after');
    await page.click('#mapper-apply');
    await waitText('mapper-msg', /^applied/);
    assert.notEqual(await src('after'), beforeApply);
    assert.match((await page.locator('#after-caption').textContent()) ?? '', /mapper mapper · strength 2\.0/);
    const shot = join(outDir, 'mapper.png');
    await page.screenshot({ path: shot });
    // The README's picture: the global-directions view.
    await page.click('.tab[data-tab="global"]');
    await page.locator('#alpha').fill('5');
    await waitText('after-caption', /^α 5\.0/);
    await page.screenshot({ path: join(outDir, 'app.png') });
    if (process.env.UPDATE_DOCS) copyFileSync(join(outDir, 'app.png'), join(root, 'docs', 'serve.png'));
  });
});
