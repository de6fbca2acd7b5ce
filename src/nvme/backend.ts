/**
 * Backends: where a namespace's blocks really live. A backend object on the
 * host describes itself (a structured-cloneable BackendDescription); every
 * device worker opens its own Device from that description (its own file
 * descriptor, its own view of shared storage) and runs commands on it
 * synchronously. A Device returns an NVMe status field (0 = success) and never
 * throws for I/O failures.
 */
export type BackendDescription =
  | { kind: 'memory'; blockSize: number; blocks: number; storage: SharedArrayBuffer }
  | { kind: 'file'; blockSize: number; blocks: number; path: string; readOnly?: boolean }
  | {
      kind: 'fault';
      blockSize: number;
      blocks: number;
      inner: BackendDescription;
      control: SharedArrayBuffer;
      log: SharedArrayBuffer;
      sectorBytes: number;
    };

export interface Device {
  /** Reads `blocks` blocks at `lba` into mem[at ..]. */
  read(lba: number, blocks: number, mem: Uint8Array, at: number): number;
  /** Writes mem[at ..] to `blocks` blocks at `lba`; durable before it returns when `fua`. */
  write(lba: number, blocks: number, mem: Uint8Array, at: number, fua: boolean): number;
  /** Makes every completed write durable. */
  flush(): number;
  writeZeroes(lba: number, blocks: number, fua: boolean): number;
  /** Deallocated blocks read back as zeroes on every flashpack backend. */
  deallocate(lba: number, blocks: number): number;
  close(): void;
}

export interface Backend {
  readonly blockSize: number;
  /** Capacity in logical blocks. */
  readonly blocks: number;
  describe(): BackendDescription;
  /** False once the device is gone (hot removal, power cut) for controllers opened at `epoch`. */
  present(epoch: number): boolean;
  /** The epoch a new controller attaches at. */
  readonly epoch: number;
  /**
   * A write of `bytes` completed (the host's qpairs call this). A backend may
   * use it to start writing back early; it never changes what flush() means.
   */
  wrote?(bytes: number): void;
  /**
   * Makes the namespace hold `blocks` blocks, more than now (online growth:
   * a file is extended, a block device found grown). Throws a FlashpackError
   * (ENOSPC: it cannot hold that many; EROFS) and changes nothing if it
   * cannot. A backend without it cannot grow.
   */
  grow?(blocks: number): void;
}

export const BLOCK_SIZES: readonly number[] = [512, 4096];
