/**
 * The page in Debian's Chromium (as app.test.ts): each tool panel owns its result (issue 19, item 3) and the
 * gallery's seed box, labels and a cancelled job's result (item 16).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { BrowserContext, Page } from 'playwright-core';
import type { RunningServer } from '../../src/server/index.js';
import { buildWeb } from '../../web/build.js';
import { startFixtureServer } from '../server/helpers.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const skip = existsSync(CHROMIUM) ? false : `Chromium not found at ${CHROMIUM} (see test/e2e/app.test.ts)`;

describe('styleclip serve: panels and gallery', { skip }, () => {
  let srv: RunningServer;
  let ctx: BrowserContext;
  let page: Page;
  const dirs: string[] = [];

  before(async () => {
    const webRoot = await buildWeb(mkdtempSync(join(tmpdir(), 'styleclip-web-')));
    const profile = mkdtempSync(join(tmpdir(), 'styleclip-chromium-'));
    dirs.push(webRoot, profile);
    ({ srv } = await startFixtureServer(webRoot));
    const { chromium } = await import('playwright-core');
    ctx = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--no-first-run',
        '--disable-background-networking',
      ],
      viewport: { width: 1280, height: 760 },
      acceptDownloads: true,
    });
    page = ctx.pages()[0] ?? (await ctx.newPage());
    page.setDefaultTimeout(30_000);
    await page.goto(`${srv.url}/`);
    await page.waitForSelector('body[data-ready="true"]');
  });
  after(async () => {
    await ctx?.close();
    await srv?.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  const src = (id: string) => page.locator(`#${id}`).getAttribute('src');
  const text = async (id: string) => (await page.locator(`#${id}`).textContent()) ?? '';

  test('a running optimization never replaces the Global result; Download saves what is shown', async () => {
    await page.locator('#gallery .thumb').nth(1).click();
    await page.fill('#target', 'smiling face');
    await page.locator('#alpha').fill('3');
    await page.waitForFunction(() =>
      /^α 3\.0/.test(document.getElementById('after-caption')?.textContent ?? ''),
    );
    const globalImage = await src('after');

    // Start a long job with an image every step, go back to Global while it runs.
    await page.click('.tab[data-tab="optimize"]');
    await page.fill('#prompt', 'a person with purple hair');
    await page.fill('#steps', '1000');
    await page.click('#opt-run');
    await page.waitForFunction(() =>
      /^step \d+\/1000/.test(document.getElementById('opt-status')?.textContent ?? ''),
    );
    await page.waitForFunction(() =>
      /^optimization, step/.test(document.getElementById('after-caption')?.textContent ?? ''),
    );
    await page.click('.tab[data-tab="global"]');
    const stepBefore = await text('opt-status');
    await page.waitForFunction((s) => document.getElementById('opt-status')?.textContent !== s, stepBefore); // at least one more progress event arrived while Global is open
    await page.waitForTimeout(300);
    assert.equal(await src('after'), globalImage);
    assert.match(await text('after-caption'), /^α 3\.0/);
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
    const saved = readFileSync((await download.path())!);
    assert.equal(
      `data:image/png;base64,${saved.toString('base64')}`,
      globalImage,
      'the Global image is saved',
    );

    // The job's own panel shows its progress; cancelling keeps the reached image and adds it to the gallery.
    await page.click('.tab[data-tab="optimize"]');
    assert.match(await text('after-caption'), /^optimization, step/);
    const thumbs = await page.locator('#gallery .thumb').count();
    await page.click('#opt-cancel');
    await page.waitForFunction(() =>
      /^cancelled/.test(document.getElementById('opt-status')?.textContent ?? ''),
    );
    assert.match(await text('after-caption'), /^cancelled after \d+ steps/);
    assert.equal(
      await page.locator('#gallery .thumb').count(),
      thumbs + 1,
      'the reached latent joins the gallery',
    );
  });

  test('seeds: a negative one is refused with a message, the largest CLI seed is added; labels show', async () => {
    await page.fill('#seed', '-5');
    await page.click('#seed-form button[type="submit"]');
    assert.match(await text('status'), /seed must be a whole number from 0 to 4294967295, not -5/);
    await page.fill('#seed', '4294967295');
    await page.click('#seed-form button[type="submit"]');
    await page.waitForFunction(() => document.getElementById('status')?.textContent === 'seed:4294967295');
    assert.equal(
      await page.locator('#gallery .thumb[data-id="seed:4294967295"] .thumb-label').textContent(),
      'seed 4294967295',
    );
    assert.equal(await page.locator('#gallery .thumb .thumb-label').first().textContent(), 'seed 0');
  });
});
