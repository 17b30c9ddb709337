// The text of a PDF's pages, with Mozilla's pdf.js (pdfjs-dist): loaded only when a PDF is
// picked, so the page itself stays small; its worker is a separate asset.

import { GlobalWorkerOptions, getDocument } from "pdfjs-dist";
import workerUrl from "pdfjs-dist/build/pdf.worker.min.mjs?url";

GlobalWorkerOptions.workerSrc = workerUrl;

export async function pdfPages(data: ArrayBuffer): Promise<string[]> {
  const task = getDocument({ data: new Uint8Array(data) });
  const pdf = await task.promise;
  try {
    const pages: string[] = [];
    for (let n = 1; n <= pdf.numPages; n += 1) {
      const page = await pdf.getPage(n);
      const content = await page.getTextContent();
      let text = "";
      for (const item of content.items) {
        if (!("str" in item)) continue;
        text += item.str;
        text += item.hasEOL ? "\n" : " ";
      }
      pages.push(text.trim());
    }
    return pages;
  } finally {
    await task.destroy();
  }
}
