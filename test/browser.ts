/** Debian's chromium for the explorer's tests and benchmark (CI installs the `chromium` package). Holds no tests. */
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM = process.env.UVU_CHROMIUM ?? '/usr/bin/chromium';
/** Headless, and nothing that reaches the network (no updates, sync or background requests). */
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** Launch the system browser; a clear error when it is not installed (no browser is ever downloaded). */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: the explorer's browser tests need Debian's chromium (apt-get install chromium; .ci/run installs it), or UVU_CHROMIUM=/path/to/chromium`);
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
}
