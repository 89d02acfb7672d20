/** The text of an HTML fragment: tags dropped, the entities our views write decoded, spaces folded. */
export function textOf(html: string): string {
  return html
    .replace(/<[^>]*>/g, ' ')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&amp;/g, '&')
    .replace(/\s+/g, ' ')
    .trim();
}

/**
 * The body rows of the tables in `html`, each as its cells' text keyed by the
 * column header's text (`<th scope="col">`), so a test reads "Live sessions"
 * of a row without depending on where that column sits or how a cell is marked
 * up. A fragment without a header (one row swapped by htmx) gets the headers
 * of `headersFrom`, a page that has them.
 */
export function tableRows(html: string, headersFrom?: string): Array<Record<string, string>> {
  const headers = [...(headersFrom ?? html).matchAll(/<th scope="col"[^>]*>([\s\S]*?)<\/th>/g)].map((m) => textOf(m[1]!));
  const rows: Array<Record<string, string>> = [];
  for (const row of html.matchAll(/<tr\b[^>]*>([\s\S]*?)<\/tr>/g)) {
    if (/<th scope="col"/.test(row[1]!)) continue;
    const cells = [...row[1]!.matchAll(/<(td|th)\b[^>]*>([\s\S]*?)<\/\1>/g)].map((m) => textOf(m[2]!));
    const record: Record<string, string> = {};
    cells.forEach((cell, i) => {
      record[headers[i] ?? String(i)] = cell;
    });
    rows.push(record);
  }
  return rows;
}
