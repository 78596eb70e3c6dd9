import { expect, test } from '@playwright/test';

const TOKEN = process.env.MLC_UI_TOKEN ?? 'ui-test';
const PULL_IMAGE = process.env.MLC_UI_PULL_IMAGE ?? '';
const SHOTS = process.env.MLC_UI_SCREENSHOTS ?? 'screenshots';

test('container kernel from the launcher, status bar, sidebar and a pull', async ({ page }) => {
  await page.goto(`/lab?token=${TOKEN}`);
  await page.locator('.jp-LauncherCard', { hasText: 'Container Python (UI test)' }).first().waitFor();
  await page.screenshot({ path: `${SHOTS}/launcher.png` });
  await page.locator('.jp-LauncherCard', { hasText: 'Container Python (UI test)' }).first().click();
  const news = page.locator('.jp-toast-button', { hasText: 'No' });
  try {
    await news.waitFor({ state: 'visible', timeout: 5000 });
    await news.click(); // JupyterLab's "notify about news?" toast would cover the screenshots
  } catch {
    // no toast this time
  }

  // The status bar shows the container kernel's image, by its full source reference.
  const status = page.locator('.jp-mlcontainer-status');
  await expect(status).toContainText('mlcontainer/python:3.11');
  await expect(status).toContainText('CPU');

  // Run a cell: it runs in the container (its hostname is the container id).
  const cell = page.locator('.jp-Notebook .jp-Cell .cm-content').first();
  await cell.click();
  await page.keyboard.type('import socket, os; print("host", socket.gethostname(), os.getuid())');
  await page.keyboard.press('Shift+Enter');
  const output = page.locator('.jp-OutputArea-output').first();
  await expect(output).toContainText(/host [0-9a-f]{12}/);
  await page.screenshot({ path: `${SHOTS}/notebook-status-bar.png` });

  // Click the status bar item: image, digest, resources.
  await status.click();
  const dialog = page.locator('.jp-Dialog');
  await expect(dialog).toContainText('mlcontainer/python:3.11');
  await expect(dialog).toContainText('Python 3.11.2 · ipykernel 7.4.0 · Debian GNU/Linux 12');
  await expect(dialog).toContainText(/Image ID\s*sha256:[0-9a-f]{64}/);
  await expect(dialog).toContainText('Memory');
  await expect(dialog).toContainText(/Memory\s*\d+(\.\d)? MiB of/);
  await expect(dialog).not.toContainText('Last death');
  await page.screenshot({ path: `${SHOTS}/kernel-details.png` });
  await dialog.getByRole('button', { name: 'Close' }).click();

  // A restart the user asks for is not a death.
  await page.getByRole('menuitem', { name: 'Kernel', exact: true }).click();
  await page.getByRole('menuitem', { name: /^Restart Kernel…/ }).click();
  await page.locator('.jp-Dialog').getByRole('button', { name: 'Confirm Kernel Restart' }).click();
  await expect(page.locator('.jp-Dialog')).toHaveCount(0);
  await cell.click();
  await page.keyboard.press('Shift+Enter'); // the same cell again: it runs in the new container
  await expect(output).toContainText(/host [0-9a-f]{12}/);

  // The sidebar: engine, the running container.
  await page.locator('.jp-SideBar [title="Container kernels"]').click();
  const panel = page.locator('#jp-mlcontainer-panel');
  await expect(panel).toContainText('Docker ');
  const kernel = panel.locator('.jp-mlcontainer-kernel').first();
  await expect(kernel).toContainText('mlcontainer/python:3.11');
  await expect(kernel).toContainText(/Up .* · CPU/);
  await expect(kernel).not.toContainText('last death');

  // Its buttons are JupyterLab's, not the browser's.
  const logButton = kernel.getByRole('button', { name: 'Log' });
  await expect(logButton).toHaveClass(/jp-mod-styled/);
  const style = await logButton.evaluate(node => {
    const css = getComputedStyle(node);
    const plain = document.createElement('button');
    document.body.appendChild(plain);
    const ua = getComputedStyle(plain);
    const out = {
      background: css.backgroundColor,
      uaBackground: ua.backgroundColor,
      border: css.borderTopColor,
      uaBorder: ua.borderTopColor,
      radius: css.borderTopLeftRadius
    };
    plain.remove();
    return out;
  });
  expect(style.background).not.toBe(style.uaBackground);
  expect(style.border).not.toBe(style.uaBorder);
  await logButton.click();
  await expect(kernel.locator('.jp-mlcontainer-log')).toContainText('IPKernelApp');

  // Once started, the kernelspec has a ready kernel in the warm pool for the next start.
  const pooled = panel.locator('.jp-mlcontainer-pool .jp-mlcontainer-pooled').first();
  await expect(pooled).toContainText('mlcontainer/python:3.11', { timeout: 60_000 });

  // The kernel's HOME (its caches) is a volume of its own, listed with its size.
  const home = panel.locator('.jp-mlcontainer-volume[data-volume^="mlc-home-"]').first();
  await expect(home).toContainText(/HOME of uid \d+ for mlcontainer\/python:3\.11 · \d/);

  // An image built on this engine cannot be pulled: no pull button, "built locally".
  const local = panel.locator('.jp-mlcontainer-image', { hasText: 'Container Python (UI test)' });
  await expect(local).toContainText('built locally');
  await expect(local.locator('.jp-mlcontainer-pull')).toHaveCount(0);

  // Pull an image that a kernelspec needs and watch the bar finish.
  if (PULL_IMAGE) {
    const row = panel.locator(`.jp-mlcontainer-image[data-image="${PULL_IMAGE}"]`);
    await expect(row).toContainText('not on the engine');
    await row.locator('.jp-mlcontainer-pull').click();
    await expect(row.locator('.jp-mlcontainer-progress')).toHaveAttribute('data-status', 'done', {
      timeout: 120_000
    });
    await expect(row.locator('.jp-mlcontainer-progress')).toContainText('Pull complete');
    await expect(row.locator('.jp-mlcontainer-pull')).toHaveText('Pull again'); // from a registry
  }
  await page.screenshot({ path: `${SHOTS}/sidebar.png` });

  // Create a container kernelspec from the dialog; the launcher offers it at once.
  await panel.getByRole('button', { name: 'New container kernel…' }).click();
  const form = page.locator('.jp-Dialog');
  await form.locator('input[name="image"]').fill('mlcontainer/python:3.11');
  await form.locator('input[name="name"]').fill('ui-created');
  await form.locator('input[name="display_name"]').fill('Made in the dialog');
  await form.locator('input[name="gpus"]').fill('none');
  await page.screenshot({ path: `${SHOTS}/new-kernel-dialog.png` });
  await form.getByRole('button', { name: 'Create' }).click();
  await expect(page.locator('.jp-Dialog')).toContainText('Container kernel created');
  await page.locator('.jp-Dialog').getByRole('button', { name: 'Ok' }).click();
  await page.locator('#jp-mlcontainer-panel').waitFor();
  await page.keyboard.press('Control+Shift+L'); // a new launcher
  await expect(page.locator('.jp-LauncherCard', { hasText: 'Made in the dialog' }).first()).toBeVisible();
});

test('a GPU kernel on an engine without GPUs: the whole error, wrapped, with its fix', async ({
  page
}) => {
  await page.goto(`/lab?reset&token=${TOKEN}`); // a fresh workspace: just the launcher
  const card = page.locator('.jp-LauncherCard', { hasText: 'GPU kernel (UI test)' }).first();
  await card.click();
  const dialog = page.locator('.jp-Dialog', { hasText: 'Error Starting Kernel' });
  await expect(dialog).toBeVisible();
  // The advice at the end of the message (jupyter_mlcontainer/engine.py) is there and visible.
  const advice = dialog.locator('pre', { hasText: 'NVIDIA Container Toolkit' }).first();
  await expect(advice).toBeVisible();
  await expect(advice).toContainText("set gpus='none'");
  const body = dialog.locator('.jp-Dialog-body');
  for (const box of [body, advice]) {
    const { scrollWidth, clientWidth } = await box.evaluate(node => ({
      scrollWidth: node.scrollWidth,
      clientWidth: node.clientWidth
    }));
    expect(scrollWidth).toBeLessThanOrEqual(clientWidth);
  }
  await page.screenshot({ path: `${SHOTS}/gpu-error-dialog.png` });
  await dialog.getByRole('button', { name: 'Ok' }).click();
});
