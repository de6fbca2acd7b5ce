// Markdown table and number formatting for the benchmark report.

/** MB/s with a precision that suits its magnitude. */
export function formatMBps(mbps) {
  if (!Number.isFinite(mbps)) return 'n/a';
  if (mbps >= 100) return Math.round(mbps).toLocaleString('en-US');
  if (mbps >= 10) return mbps.toFixed(1);
  return mbps.toFixed(2);
}

/** A dimensionless ratio, or an em dash when there is none. */
export function formatRatio(ratio, suffix = '') {
  if (ratio == null || !Number.isFinite(ratio)) return '—';
  return `${ratio.toFixed(2)}${suffix}`;
}

/**
 * A GitHub-flavoured markdown table, padded so it also reads well as plain text.
 * `columns`: [{ title, align: 'left' | 'right' }]; `rows`: arrays of strings.
 */
export function markdownTable(columns, rows) {
  const widths = columns.map((c, i) => Math.max(c.title.length, 3, ...rows.map((r) => String(r[i]).length)));
  const pad = (text, i) => {
    const s = String(text);
    return columns[i].align === 'right' ? s.padStart(widths[i]) : s.padEnd(widths[i]);
  };
  const line = (cells) => `| ${cells.map(pad).join(' | ')} |`;
  const rule = `| ${columns.map((c, i) => (c.align === 'right' ? `${'-'.repeat(widths[i] - 1)}:` : '-'.repeat(widths[i]))).join(' | ')} |`;
  return [line(columns.map((c) => c.title)), rule, ...rows.map(line)].join('\n');
}
