/**
 * The record table (the hash locks' index, the logical zone's LBA states)
 * against a Map as the model: random files, replacements
 * and removals, with keys crowded onto few home slots so probe runs wrap
 * around the table and deletions shift entries back across the wrap.
 */
import { describe, expect, it } from 'vitest';
import { RecordTable } from '../dist/vdo/record-table.js';
import { prng } from './helpers/data.js';

interface Rec {
  key: number;
  id: number;
}

describe('RecordTable', () => {
  it('matches a Map through 200,000 random set / get / deleteRecord calls, growing from 64 slots, never over half full; forEach walks what is filed', () => {
    const rand = prng(7);
    const t = new RecordTable<Rec>(64);
    const model = new Map<number, Rec>();
    // 48-bit keys from a small pool (many repeats), some sharing their low 32 bits.
    const pool = Array.from({ length: 3000 }, (_, i) => (i % 3 === 0 ? Math.floor(rand() * 2 ** 16) * 2 ** 32 + 12345 : Math.floor(rand() * 2 ** 48)));
    let id = 0;
    let peak = 0;
    for (let step = 0; step < 200_000; step++) {
      const key = pool[Math.floor(rand() * (step < 100_000 ? pool.length : 200))];
      const op = rand();
      if (op < 0.45) {
        const rec = { key, id: id++ };
        expect(t.set(rec)).toBe(model.get(key));
        model.set(key, rec);
      } else if (op < 0.75) {
        expect(t.get(key)).toBe(model.get(key));
      } else {
        // Half the time the record filed there, half a stale one with the same key.
        const filed = model.get(key);
        const rec = filed !== undefined && rand() < 0.5 ? filed : { key, id: -1 };
        const removed = t.deleteRecord(rec);
        expect(removed).toBe(rec === filed);
        if (removed) model.delete(key);
      }
      expect(t.size).toBe(model.size);
      expect(2 * t.size).toBeLessThanOrEqual(t.capacity);
      peak = Math.max(peak, t.size);
    }
    expect(peak).toBeGreaterThan(500); // it grew past its first 64 slots
    for (const key of pool) expect(t.get(key)).toBe(model.get(key));
    const walked: Rec[] = [];
    t.forEach((r) => walked.push(r));
    expect(walked.sort((a, b) => a.id - b.id)).toEqual([...model.values()].sort((a, b) => a.id - b.id));
    expect(() => t.forEach((r) => t.deleteRecord(r))).toThrow(expect.objectContaining({ code: 'EINTERNAL' }));
  });

  it('keys that all share one home slot: every one is found, and found again after the others around it go', () => {
    // Same home: the hash mixes both halves, so search for keys whose home matches the first's.
    const t = new RecordTable<Rec>(64);
    const probe = new RecordTable<Rec>(64);
    const home = (key: number): number => {
      // The slot a lone key lands in is where get() finds it first; file it alone to see it.
      probe.set({ key, id: 0 });
      const slots = (probe as unknown as { slots: (Rec | null)[] }).slots;
      const at = slots.findIndex((r) => r !== null);
      probe.deleteRecord(slots[at]!);
      return at;
    };
    const want = home(1);
    const keys: number[] = [];
    for (let k = 2; keys.length < 20; k++) if (home(k) === want) keys.push(k);
    const recs = keys.map((key, id) => ({ key, id }));
    for (const r of recs) expect(t.set(r)).toBeUndefined();
    for (const r of recs) expect(t.get(r.key)).toBe(r);
    for (let i = 0; i < recs.length; i += 2) expect(t.deleteRecord(recs[i])).toBe(true);
    for (let i = 0; i < recs.length; i++) expect(t.get(recs[i].key)).toBe(i % 2 === 0 ? undefined : recs[i]);
    expect(t.size).toBe(recs.length / 2);
  });
});
