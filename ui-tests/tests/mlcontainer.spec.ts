import { expect, Locator, Page, test } from '@playwright/test';

import { dismissNews } from './jupyterlab';

const TOKEN = process.env.MLC_UI_TOKEN ?? 'ui-test';
const PULL_IMAGE = process.env.MLC_UI_PULL_IMAGE ?? '';
const SHOTS = process.env.MLC_UI_SCREENSHOTS ?? 'screenshots';

/** The panel at its default width shows everything: nothing sticks out to the right. */
async function expectNoOverflow(panel: Locator): Promise<void> {
  const widths = await panel.evaluate(node => {
    const right = node.getBoundingClientRect().right;
    const boxes = [node, ...node.querySelectorAll<HTMLElement>('.jp-mlcontainer-section')];
    return {
      panel: node.clientWidth,
      overflowing: boxes
        .filter(box => box.scrollWidth > box.clientWidth)
        .map(box => `${box.className}: ${box.scrollWidth} > ${box.clientWidth}`),
      outside: [...node.querySelectorAll<HTMLElement>('*')]
        .filter(child => child.getBoundingClientRect().right > right + 0.5)
        .map(child => `${child.tagName}.${child.className}`)
    };
  });
  expect(widths.panel).toBeGreaterThan(200); // the default width, not a collapsed panel
  expect(widths.overflowing).toEqual([]);
  expect(widths.outside).toEqual([]);
}


/** Choose JupyterLab's theme in the user's settings (it applies on the next page load). */
async function setTheme(page: Page, theme: string): Promise<void> {
  const answer = await page.request.put('/lab/api/settings/@jupyterlab/apputils-extension:themes', {
    headers: { Authorization: `token ${TOKEN}` },
    data: { raw: JSON.stringify({ theme }) }
  });
  expect(answer.ok()).toBe(true);
}

/** Start a notebook session with a kernel through the REST API; returns the kernel id. */
async function startSession(page: Page, path: string, kernel: string): Promise<string> {
  const headers = { Authorization: `token ${TOKEN}` };
  await page.request.put(`/api/contents/${path}`, {
    headers,
    data: { type: 'notebook', format: 'json', content: { cells: [], metadata: {}, nbformat: 4, nbformat_minor: 5 } }
  });
  const answer = await page.request.post('/api/sessions', {
    headers,
    data: { path, name: path, type: 'notebook', kernel: { name: kernel } }
  });
  expect(answer.ok()).toBe(true);
  return (await answer.json()).kernel.id;
}

test('container kernel from the launcher, status bar, sidebar and a pull', async ({ page }) => {
  await page.goto(`/lab?token=${TOKEN}`);
  await page.locator('.jp-LauncherCard', { hasText: 'Container Python (UI test)' }).first().waitFor();
  await page.screenshot({ path: `${SHOTS}/launcher.png` });
  await page.locator('.jp-LauncherCard', { hasText: 'Container Python (UI test)' }).first().click();
  await dismissNews(page);

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

  // The sidebar: engine, the running container, named by its notebook.
  await page.locator('.jp-SideBar [title="Container kernels"]').click();
  const panel = page.locator('#jp-mlcontainer-panel');
  await expect(panel.locator('.jp-mlcontainer-engine')).toContainText('Docker ');
  const kernel = panel.locator('.jp-mlcontainer-kernel').first();
  await expect(kernel.locator('.jp-mlcontainer-kernel-label')).toHaveText(/^Untitled\d*\.ipynb$/);
  await expect(kernel).toContainText('mlcontainer/python:3.11');
  await expect(kernel).toContainText(/Up .* · CPU/);
  await expect(kernel).not.toContainText('Last death');

  // Its buttons are JupyterLab's toolbar buttons, with JupyterLab's icons.
  const logButton = kernel.getByRole('button', { name: 'Show log' });
  await expect(logButton).toHaveClass(/jp-ToolbarButtonComponent/);
  await expect(logButton.locator('svg')).toHaveCount(1);

  // Once started, the kernelspec has a ready kernel in the warm pool for the next start.
  const pooled = panel.locator('.jp-mlcontainer-pool .jp-mlcontainer-pooled').first();
  await expect(pooled).toContainText('mlcontainer/python:3.11', { timeout: 60_000 });

  // The kernel's HOME (its caches) is a volume of its own, listed with its size.
  const home = panel.locator('.jp-mlcontainer-volume[data-volume^="mlc-home-"]').first();
  await expect(home).toContainText(/HOME for mlcontainer\/python:3\.11.*\d+ (B|KiB|MiB)/s);

  // An image built on this engine cannot be pulled: no pull button, "built locally".
  const local = panel.locator('.jp-mlcontainer-image', { hasText: 'Container Python (UI test)' });
  await expect(local).toContainText('built locally');
  await expect(local.locator('.jp-mlcontainer-pull')).toHaveCount(0);

  // Pull an image that a kernelspec needs and watch the bar finish.
  if (PULL_IMAGE) {
    const row = panel.locator(`.jp-mlcontainer-image[data-image="${PULL_IMAGE}"]`);
    await expect(row).toContainText('not on the engine');
    await row.getByRole('button', { name: 'Pull' }).click();
    await expect(row.locator('.jp-mlcontainer-progress')).toHaveAttribute('data-status', 'done', {
      timeout: 120_000
    });
    await expect(row.locator('.jp-mlcontainer-progress')).toContainText('Pull complete');
    await expect(row.getByRole('button', { name: 'Pull again' })).toBeVisible(); // a registry has it
  }
  await expectNoOverflow(panel);
  await page.screenshot({ path: `${SHOTS}/sidebar.png` });

  // Create a container kernelspec from the dialog; the launcher offers it at once.
  await panel.getByTitle('New container kernel…').click();
  const form = page.locator('.jp-Dialog');
  await form.locator('input[name="image"]').fill('mlcontainer/python:3.11');
  await form.locator('input[name="name"]').fill('ui-created');
  await form.locator('input[name="display_name"]').fill('Made in the dialog');
  await form.locator('input[name="gpus"]').fill('none');
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

test('welcome.ipynb opens clean, and names the panel as the sidebar does', async ({ page }) => {
  await page.goto(`/lab/tree/welcome.ipynb?reset&token=${TOKEN}`);
  await dismissNews(page);
  const notebook = page.locator('.jp-NotebookPanel');
  await expect(notebook).toContainText("the sidebar's Container kernels panel says which");
  // Connected: JupyterLab has the kernel's info (language_info) and spec by now.
  await expect(page.locator('.jp-mlcontainer-status')).toContainText('mlcontainer/python:3.11');
  await expect(page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]')).toHaveCount(1);
  await page.waitForTimeout(3000); // metadata updates arrive after the kernel's info reply
  const tab = page.locator('.lm-TabBar-tab', { hasText: 'welcome.ipynb' });
  await expect(tab).not.toHaveClass(/jp-mod-dirty/);
  await page.getByRole('menuitem', { name: 'Kernel', exact: true }).click();
  await page.getByRole('menuitem', { name: /^Shut Down Kernel/ }).click();
});

test('kernels are named by their notebooks; a stop asks first and leaves a sane status bar', async ({
  page
}) => {
  const first = await startSession(page, 'first.ipynb', 'ui-python');
  const second = await startSession(page, 'second.ipynb', 'ui-python');
  await page.goto(`/lab/tree/first.ipynb?reset&token=${TOKEN}`);
  await dismissNews(page);
  const status = page.locator('.jp-mlcontainer-status');
  await expect(status).toContainText('mlcontainer/python:3.11');

  await page.locator('.jp-SideBar [title="Container kernels"]').click();
  const panel = page.locator('#jp-mlcontainer-panel');
  const card = (name: string) =>
    panel.locator('.jp-mlcontainer-kernel', {
      has: page.locator('.jp-mlcontainer-kernel-label', { hasText: name })
    });
  for (const [name, id] of [
    ['first.ipynb', first],
    ['second.ipynb', second]
  ]) {
    await expect(card(name)).toHaveAttribute('data-kernel', id);
    await expect(card(name).locator('.jp-mlcontainer-kernel-usage')).toContainText(
      'mlcontainer/python:3.11' // the image is the secondary text
    );
  }

  // A card's log opens under it, and stays open across the sidebar's refreshes.
  const logButton = card('second.ipynb').getByRole('button', { name: 'Show log' });
  await expect(logButton).toHaveClass(/jp-ToolbarButtonComponent/);
  await logButton.click();
  await expect(logButton).toHaveAttribute('aria-pressed', 'true');
  // (A kernel claimed from the warm pool may have logged nothing of its own yet.)
  await expect(card('second.ipynb').locator('.jp-mlcontainer-log')).toHaveText(
    /IPKernelApp|written nothing to its log/
  );

  // Stop asks, as the Running panel does; Cancel keeps the kernel.
  await card('first.ipynb').getByRole('button', { name: 'Shut down kernel' }).click();
  const dialog = page.locator('.jp-Dialog', { hasText: 'Shut Down Kernel?' });
  await expect(dialog).toContainText('first.ipynb');
  await page.screenshot({ path: `${SHOTS}/stop-confirm.png` });
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  await expect(page.locator('.jp-Dialog')).toHaveCount(0);
  const alive = await page.request.get(`/api/kernels/${first}`, {
    headers: { Authorization: `token ${TOKEN}` }
  });
  expect(alive.ok()).toBe(true);
  await expect(card('first.ipynb')).toHaveCount(1);

  await card('first.ipynb').getByRole('button', { name: 'Shut down kernel' }).click();
  await page.locator('.jp-Dialog').getByRole('button', { name: 'Shut Down' }).click();
  await expect(card('first.ipynb')).toHaveCount(0);
  await expect(card('second.ipynb')).toHaveCount(1);
  // The notebook's kernel is gone: no "⚠ no kernel <id>", the item steps aside.
  await expect(status).toBeHidden();
  await page.waitForTimeout(6000); // a poll of the status bar later, still sane
  await expect(status).toBeHidden();
  await expect(page.locator('#jp-main-statusbar')).not.toContainText('no kernel');
  await page.request.delete(`/api/kernels/${second}`, {
    headers: { Authorization: `token ${TOKEN}` }
  });
});

test('the new-kernel dialog warns about GPUs, offers Replace, keeps what was typed', async ({
  page
}) => {
  const made = await page.request.post('/mlcontainer/kernelspecs', {
    headers: { Authorization: `token ${TOKEN}` },
    data: { image: 'mlcontainer/python:3.11', name: 'ui-twice', gpus: 'none' }
  });
  expect(made.status()).toBe(201);
  await page.goto(`/lab?reset&token=${TOKEN}`);
  await dismissNews(page);
  await page.locator('.jp-SideBar [title="Container kernels"]').click();
  const panel = page.locator('#jp-mlcontainer-panel');
  await panel.getByTitle('New container kernel…').click();
  const form = page.locator('.jp-Dialog');
  const typed = {
    image: 'mlcontainer/python:3.11',
    name: 'ui-twice',
    display_name: 'Made twice',
    gpus: 'all'
  };
  for (const [field, value] of Object.entries(typed)) {
    await form.locator(`input[name="${field}"]`).fill(value);
  }
  // GPUs asked of an engine without any: said before the form is submitted.
  const warning = form.locator('.jp-mlcontainer-gpu-warning');
  await expect(warning).toBeVisible();
  await expect(warning).toContainText('no NVIDIA runtime');
  await expect(warning.locator('code')).toHaveText(['auto', 'none']);
  await expect(warning).not.toContainText('`');
  await page.screenshot({ path: `${SHOTS}/new-kernel-dialog.png` });
  await form.locator('input[name="gpus"]').fill('none');
  typed.gpus = 'none';
  await expect(warning).toBeHidden();

  // The name is taken: the error says so in the dialog's terms, the form keeps its values.
  await form.getByRole('button', { name: 'Create' }).click();
  const error = page.locator('.jp-Dialog .jp-mlcontainer-form-error');
  await expect(error).toContainText('A kernel named ui-twice exists');
  await expect(error.locator('code')).toHaveText('ui-twice');
  await expect(error).not.toContainText('--');
  await expect(error).not.toContainText('`');
  for (const [field, value] of Object.entries(typed)) {
    await expect(page.locator(`.jp-Dialog input[name="${field}"]`)).toHaveValue(value);
  }
  const replace = page.locator('.jp-Dialog .jp-mlcontainer-form-check');
  await expect(replace).toHaveClass(/jp-mod-highlighted/);
  await page.screenshot({ path: `${SHOTS}/new-kernel-name-taken.png` });
  await replace.locator('input').check();
  await page.locator('.jp-Dialog').getByRole('button', { name: 'Create' }).click();
  await expect(page.locator('.jp-Dialog')).toContainText('Container kernel created');
  await expect(page.locator('.jp-Dialog code').first()).toHaveText('ui-twice');
  await page.locator('.jp-Dialog').getByRole('button', { name: 'Ok' }).click();

  // An image no registry has: the error shows in the form, which keeps what was typed.
  await panel.getByTitle('New container kernel…').click();
  await page.locator('.jp-Dialog input[name="image"]').fill('127.0.0.1:9/nobody/nothing:1');
  await page.locator('.jp-Dialog input[name="name"]').fill('ui-missing');
  await page.locator('.jp-Dialog').getByRole('button', { name: 'Create' }).click();
  await expect(page.locator('.jp-Dialog .jp-mlcontainer-form-error')).toContainText(
    'Could not pull image',
    { timeout: 120_000 }
  );
  await expect(page.locator('.jp-Dialog input[name="image"]')).toHaveValue(
    '127.0.0.1:9/nobody/nothing:1'
  );
  await expect(page.locator('.jp-Dialog input[name="name"]')).toHaveValue('ui-missing');
  await page.locator('.jp-Dialog').getByRole('button', { name: 'Cancel' }).click();
});

test('the sidebar in the dark theme: JupyterLab colours, no overflow', async ({ page }) => {
  await page.goto(`/lab?reset&token=${TOKEN}`);
  await dismissNews(page);
  await page.locator('.jp-SideBar [title="Container kernels"]').click();
  const panel = page.locator('#jp-mlcontainer-panel');
  await expect(panel.locator('.jp-mlcontainer-image').first()).toBeVisible();
  await setTheme(page, 'JupyterLab Dark');
  await page.reload();
  await page.locator('.jp-SideBar [title="Container kernels"]').click();
  await expect(panel.locator('.jp-mlcontainer-image').first()).toBeVisible();
  await expect(page.locator('body')).toHaveAttribute('data-jp-theme-light', 'false');
  await page.waitForTimeout(1000); // the theme's stylesheet applies
  const colours = await panel.evaluate(node => {
    const luminance = (css: string) => {
      const [r, g, b] = (css.match(/\d+(\.\d+)?/g) ?? ['0', '0', '0']).map(Number);
      return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
    };
    const label = node.querySelector('.jp-mlcontainer-item-label') ?? node;
    const theme = getComputedStyle(document.body);
    return {
      background: luminance(getComputedStyle(node).backgroundColor),
      text: luminance(getComputedStyle(label).color),
      layout1: theme.getPropertyValue('--jp-layout-color1').trim(),
      panelBackground: getComputedStyle(node).backgroundColor
    };
  });
  expect(colours.background).toBeLessThan(0.3);
  expect(colours.text).toBeGreaterThan(0.6);
  await expectNoOverflow(panel);
  await page.screenshot({ path: `${SHOTS}/sidebar-dark.png` });
  await setTheme(page, 'JupyterLab Light');
});
