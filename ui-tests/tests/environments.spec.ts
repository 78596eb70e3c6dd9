import { expect, Page, test } from '@playwright/test';

import { dismissNews } from './jupyterlab';

// Environment versions (issue 20) on the ui-env kernelspec that run.sh adds, with the
// extension's wheelhouse (extend_wheelhouse) holding mlc-ui-demo 1.0. In order: the first test
// makes version 2, the second opens a notebook recorded with version 1.
test.describe.configure({ mode: 'serial' });

const TOKEN = process.env.MLC_UI_TOKEN ?? 'ui-test';
const SHOTS = process.env.MLC_UI_SCREENSHOTS ?? 'screenshots';
const KERNEL = 'ui-env';
const headers = { Authorization: `token ${TOKEN}` };
/** A workspace of its own: the other specs find JupyterLab's default one as they left it. */
const LAB = '/lab/workspaces/environments';
const NOTEBOOKS = ['env.ipynb', 'recorded.ipynb'];

test.afterAll(async ({ request }) => {
  // Its kernels go, so that the other specs see only their own.
  const sessions = await (await request.get('/api/sessions', { headers })).json();
  for (const session of sessions.filter((s: any) => NOTEBOOKS.includes(s.path))) {
    await request.delete(`/api/sessions/${session.id}`, { headers });
  }
  await request.delete('/lab/api/workspaces/environments', { headers });
});


function notebook(metadata: Record<string, unknown>): Record<string, unknown> {
  return {
    type: 'notebook',
    format: 'json',
    content: {
      cells: [],
      metadata: {
        kernelspec: { name: KERNEL, display_name: 'Container Python (environments)', language: 'python' },
        ...metadata
      },
      nbformat: 4,
      nbformat_minor: 5
    }
  };
}

async function versions(page: Page): Promise<any> {
  const answer = await page.request.get(`/mlcontainer/kernelspecs/${KERNEL}/versions`, { headers });
  expect(answer.ok()).toBe(true);
  return answer.json();
}

test('Add packages… builds a new version, shown with its build and in the versions list', async ({ page }) => {
  await page.request.put('/api/contents/env.ipynb', { headers, data: notebook({}) });
  await page.goto(`${LAB}/tree/env.ipynb?token=${TOKEN}`);
  await dismissNews(page);
  const status = page.locator('.jp-mlcontainer-status');
  await expect(status).toContainText('mlcontainer/python:3.11');

  await status.click();
  await page.locator('.jp-Dialog').getByRole('button', { name: 'Add packages…' }).click();
  const form = page.locator('.jp-Dialog');
  await expect(form).toContainText(`Add packages to ${KERNEL}`);
  await form.locator('textarea.jp-mlcontainer-extend-pip').fill('mlc-ui-demo==1.0');
  await page.screenshot({ path: `${SHOTS}/add-packages-dialog.png` });
  await form.getByRole('button', { name: 'Add', exact: true }).click();

  const progress = page.locator('.jp-Dialog .jp-mlcontainer-extend-progress');
  await expect(progress.locator('.jp-mlcontainer-extend-status')).toContainText(
    `${KERNEL} is now version 2: + mlc-ui-demo==1.0`,
    { timeout: 150_000 }
  );
  await expect(progress.locator('.jp-mlcontainer-extend-log')).toContainText('Resolving mlc-ui-demo==1.0');
  await page.screenshot({ path: `${SHOTS}/add-packages-done.png` });
  await page.locator('.jp-Dialog').getByRole('button', { name: 'Close' }).click();
  expect((await versions(page)).current).toBe(2);

  // The versions, the current one marked, Roll back on the others.
  await status.click();
  await page.locator('.jp-Dialog').getByRole('button', { name: 'Versions…' }).click();
  const list = page.locator('.jp-Dialog .jp-mlcontainer-versions');
  await expect(list.locator('.jp-mlcontainer-version.jp-mod-current')).toContainText('v2');
  await expect(list.locator('.jp-mlcontainer-version[data-version="1"]')).toContainText('as added');
  await expect(list.locator('.jp-mlcontainer-version[data-version="1"] .jp-mlcontainer-rollback')).toBeVisible();
  await expect(list.locator('.jp-mlcontainer-version.jp-mod-current .jp-mlcontainer-rollback')).toHaveCount(0);
  await page.screenshot({ path: `${SHOTS}/versions-dialog.png` });
  await page.locator('.jp-Dialog').getByRole('button', { name: 'Close' }).click();

  // The same from the sidebar's row of the kernelspec.
  await page.getByRole('tab', { name: 'Container kernels' }).click();
  const row = page.locator(`.jp-mlcontainer-image[title^="${KERNEL}: "]`);
  await expect(row.locator('.jp-mlcontainer-add-packages')).toBeVisible();
  await row.locator('.jp-mlcontainer-versions-button').click();
  await expect(page.locator('.jp-Dialog .jp-mlcontainer-version.jp-mod-current')).toContainText('v2');
  await page.screenshot({ path: `${SHOTS}/sidebar-versions.png` });
  await page.locator('.jp-Dialog').getByRole('button', { name: 'Close' }).click();
});

test('a notebook recorded with another version says so, and runs as recorded', async ({ page }) => {
  const known = await versions(page);
  expect(known.current).toBe(2);
  const first = known.versions.find((v: any) => v.number === 1);
  const environment = { image: first.image, image_id: first.image_id, kernel_name: KERNEL, version: 1 };
  await page.request.put('/api/contents/recorded.ipynb', {
    headers,
    data: notebook({ jupyter_mlcontainer: { environment } })
  });
  await page.goto(`${LAB}/tree/recorded.ipynb?token=${TOKEN}`);
  await dismissNews(page);
  const notice = page.getByText(
    `This notebook was last run with version 1 of ${KERNEL}; the kernel is now at version 2.`
  );
  await expect(notice).toBeVisible();
  await page.screenshot({ path: `${SHOTS}/recorded-version-notice.png` });
  await page.locator('.jp-toast-button', { hasText: 'Run as recorded' }).click();

  // The notebook's new kernel runs version 1's image.
  await expect
    .poll(
      async () => {
        const sessions = await (await page.request.get('/api/sessions', { headers })).json();
        const session = sessions.find((s: any) => s.path === 'recorded.ipynb');
        if (!session?.kernel) {
          return null;
        }
        const detail = await page.request.get(`/mlcontainer/kernels/${session.kernel.id}?tail=0`, { headers });
        return detail.ok() ? (await detail.json()).image_details?.image_id ?? null : null;
      },
      { timeout: 90_000 }
    )
    .toBe(first.image_id);
  await expect(page.locator('.jp-mlcontainer-status')).toBeVisible();
});
