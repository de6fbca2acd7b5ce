/**
 * Request splitting, as SPDK's nvme_ns_cmd.c does it: an I/O that crosses the
 * namespace's optimal I/O boundary (NOIOB) is cut at each boundary, and every
 * piece larger than the maximum transfer (MDTS) is cut again, counting from the
 * piece's start. Pure arithmetic, so it is tested on its own.
 */

/** Blocks in the child that starts at `lba`, with `remaining` blocks left. */
export function childBlocks(lba: number, remaining: number, maxBlocks: number, boundaryBlocks: number): number {
  let n = remaining < maxBlocks ? remaining : maxBlocks;
  if (boundaryBlocks > 0) {
    const toBoundary = boundaryBlocks - (lba % boundaryBlocks);
    if (toBoundary < n) n = toBoundary;
  }
  return n;
}

/** How many commands an I/O of `count` blocks at `lba` becomes (1 = no split). */
export function childCount(lba: number, count: number, maxBlocks: number, boundaryBlocks: number): number {
  if (boundaryBlocks <= 0) return Math.ceil(count / maxBlocks);
  let children = 0;
  const end = lba + count;
  // Whole boundary segments in the middle all split the same way.
  const first = childSegment(lba, end, boundaryBlocks);
  children += Math.ceil((first - lba) / maxBlocks);
  if (first >= end) return children;
  const lastStart = end - (end % boundaryBlocks);
  const wholeSegments = (lastStart - first) / boundaryBlocks;
  children += wholeSegments * Math.ceil(boundaryBlocks / maxBlocks);
  if (end > lastStart) children += Math.ceil((end - lastStart) / maxBlocks);
  return children;
}

function childSegment(lba: number, end: number, boundaryBlocks: number): number {
  const next = lba - (lba % boundaryBlocks) + boundaryBlocks;
  return next < end ? next : end;
}

/** The children of an I/O as [lba, count] pairs (tests and diagnostics). */
export function splitRequest(lba: number, count: number, maxBlocks: number, boundaryBlocks: number): [number, number][] {
  const out: [number, number][] = [];
  let at = lba;
  let left = count;
  while (left > 0) {
    const n = childBlocks(at, left, maxBlocks, boundaryBlocks);
    out.push([at, n]);
    at += n;
    left -= n;
  }
  return out;
}
