// A job registered by module (engine/registered-jobs.ts) for the engine tests:
// the byte sum of the buffer into DESC_CHECKSUM; status 16 (its own) when it is 0.
export const OP_TALLY = 100;
export const STATUS_ALL_ZERO = 16;
export const jobs = [{
  op: OP_TALLY,
  name: 'tally',
  bind(host) {
    const F = host.fields;
    return (idx, d) => {
      const u32 = host.u32;
      const u8 = host.u8;
      const buf = u32[d + F.buf];
      let sum = 0;
      for (let i = buf; i < buf + u32[d + F.len]; i++) sum += u8[i];
      u32[d + F.checksum] = sum;
      return sum === 0 ? STATUS_ALL_ZERO : 0;
    };
  },
}];
