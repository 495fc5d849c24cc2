import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { type Browser, chromium } from 'playwright-core';

const run = promisify(execFile);

/** Debian's package installs its launcher here; Playwright downloads no browser of its own. */
const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser'];

export class ChromiumMissing extends Error {
  override name = 'ChromiumMissing';
}

/**
 * The chromium binary: CHROMIUM_PATH when set (it must exist), else Debian's, else `chromium` on
 * PATH. A missing one is an error that names the package, never a reason to skip.
 */
export async function chromiumBinary(): Promise<string> {
  const override = process.env.CHROMIUM_PATH;
  if (override) {
    if (!existsSync(override)) {
      throw new ChromiumMissing(`CHROMIUM_PATH=${override} does not exist (unset it to use Debian's chromium: ` +
        'apt-get install -y chromium).');
    }
    return override;
  }
  const found = CANDIDATES.find((p) => existsSync(p)) ??
    (await run('sh', ['-c', 'command -v chromium']).then((r) => r.stdout.trim(), () => ''));
  if (!found) {
    throw new ChromiumMissing('chromium is not installed: the system tests need it for the Swagger UI test ' +
      '(Debian/Ubuntu: apt-get install -y chromium; .ci/run installs it; or set CHROMIUM_PATH).');
  }
  return found;
}

/**
 * Headless Chromium driven by playwright-core. --no-sandbox: CI runs as root, where Chromium's
 * sandbox refuses to start.
 */
export async function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: await chromiumBinary(), headless: true, args: ['--no-sandbox'] });
}
