import { defineConfig } from '@playwright/test';

// JupyterLab is started by run.sh (with a registry and kernelspecs); the browser is Debian's
// Chromium, since Playwright's own browser download is not available everywhere.
export default defineConfig({
  testDir: './tests',
  timeout: 180_000,
  expect: { timeout: 60_000 },
  retries: 0,
  workers: 1,
  reporter: [['list']],
  outputDir: './test-results',
  use: {
    baseURL: process.env.MLC_UI_URL ?? 'http://127.0.0.1:8899',
    viewport: { width: 1400, height: 850 },
    screenshot: 'only-on-failure',
    trace: 'retain-on-failure',
    launchOptions: {
      executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run'
      ]
    }
  }
});
