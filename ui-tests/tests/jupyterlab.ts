import { Page } from '@playwright/test';

/** The dismissable "get notified about news?" toast, which would cover screenshots. */
export async function dismissNews(page: Page): Promise<void> {
  const news = page.locator('.jp-toast-button', { hasText: 'No' });
  try {
    await news.waitFor({ state: 'visible', timeout: 5000 });
    await news.click();
  } catch {
    // no toast this time
  }
}
