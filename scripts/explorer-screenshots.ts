/**
 * `node dist/scripts/explorer-screenshots.js URL [--out docs/explorer] [--pages codebook,roundtrip,runs,eval]`
 *
 * Screenshots of the pages of a running `uvu serve` (the URL it printed) in Debian's chromium,
 * for the README: the codebook page with a code selected, the round trip with a patch hovered,
 * the runs page and the evaluation page.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import type { Page } from 'playwright-core';
import { launchChromium } from '../test/browser.js';

const program = new Command('explorer-screenshots')
  .argument('<url>', 'the URL uvu serve printed')
  .option('--out <dir>', 'folder of the PNGs', 'docs/explorer')
  .option('--pages <names>', 'which pages', 'codebook,roundtrip,runs,eval');
program.parse();
const [base] = program.args as [string];
const opts = program.opts<{ out: string; pages: string }>();
mkdirSync(opts.out, { recursive: true });

/** Per page: what to do once it is ready, before the screenshot. */
const SCENES: Record<string, (page: Page) => Promise<void>> = {
  codebook: async (page) => {
    await page.selectOption('#sort', 'count');
    await page.waitForSelector('#pane-0[data-sort="count"] .grid[data-drawn]:not([data-drawn="0"])');
    await page.click('#pane-0 canvas.codes', { position: { x: 16, y: 16 } });
    await page.waitForSelector('#code-id');
    await page.waitForSelector('.hist canvas');
    await page.waitForTimeout(500);
  },
  roundtrip: async (page) => {
    const img = await page.waitForSelector('img[data-which="recon"]');
    await page.waitForFunction(() => [...document.querySelectorAll<HTMLImageElement>('.figures img')].every((i) => i.complete && i.naturalWidth > 0));
    const box = (await img.boundingBox())!;
    await page.mouse.move(box.x + box.width * 0.4, box.y + box.height * 0.45);
    await page.waitForTimeout(500);
  },
  runs: async (page) => {
    await page.waitForSelector('.chart canvas');
    await page.waitForTimeout(500);
  },
  eval: async (page) => {
    await page.waitForSelector('#eval-scores');
    await page.waitForTimeout(1500);
  },
};

const browser = await launchChromium();
try {
  for (const name of opts.pages.split(',')) {
    const scene = SCENES[name];
    if (!scene) throw new Error(`unknown page ${name} (have ${Object.keys(SCENES).join(', ')})`);
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    await page.goto(`${base}#/${name}`);
    await page.waitForSelector('main[data-ready="1"]');
    await scene(page);
    const path = join(opts.out, `${name}.png`);
    await page.screenshot({ path });
    console.log(`wrote ${path}`);
    await page.close();
  }
} finally {
  await browser.close();
}
