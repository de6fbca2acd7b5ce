/**
 * The slice of the NVMe specification flashpack speaks: I/O opcodes, the
 * 64-byte submission queue entry, the 16-byte completion queue entry and the
 * status field {SC, SCT, CRD, M, DNR}. Every byte layout the host and the
 * device workers share is here (word indices into Int32Array views).
 */

// NVM command set opcodes (NVMe 1.4, figure 346).
export const OPC_FLUSH = 0x00;
export const OPC_WRITE = 0x01;
export const OPC_READ = 0x02;
export const OPC_WRITE_ZEROES = 0x08;
export const OPC_DATASET_MANAGEMENT = 0x09;

/** io_flags: Force Unit Access (CDW12 bit 30 of read/write/write zeroes). */
export const IO_FLAGS_FUA = 1 << 30;
/** Dataset management CDW11: Attribute – Deallocate. */
export const DSM_ATTR_DEALLOCATE = 1 << 2;
/** One dataset-management range: context attributes, length (LBAs), starting LBA. */
export const DSM_RANGE_BYTES = 16;
/** The NR field is 8 bits, 0-based. */
export const DSM_MAX_RANGES = 256;
/** NLB is 16 bits, 0-based: one command moves at most 65,536 blocks. */
export const MAX_LBAS_PER_COMMAND = 65536;

// Submission queue entry (64 bytes = 16 words).
export const SQE_BYTES = 64;
export const SQE_WORDS = 16;
export const SQE_CDW0 = 0; // opcode bits 0-7, CID bits 16-31
export const SQE_NSID = 1;
export const SQE_PRP1 = 6; // data pointer: a byte address in the shared memory
export const SQE_CDW10 = 10; // SLBA low  | DSM: NR (0-based)
export const SQE_CDW11 = 11; // SLBA high | DSM: attributes
export const SQE_CDW12 = 12; // NLB (0-based) | FUA bit 30

// Completion queue entry (16 bytes = 4 words).
export const CQE_BYTES = 16;
export const CQE_WORDS = 4;
export const CQE_DW0 = 0; // command specific
export const CQE_DW2 = 2; // SQ head pointer bits 0-15, SQ identifier bits 16-31
export const CQE_DW3 = 3; // CID bits 0-15, phase bit 16, status field bits 17-31
export const CQE_PHASE_BIT = 16;
export const CQE_STATUS_SHIFT = 17;

// Status code types.
export const SCT_GENERIC = 0;
export const SCT_COMMAND_SPECIFIC = 1;
export const SCT_MEDIA_ERROR = 2;
export const SCT_PATH = 3;

// Generic command status.
export const SC_SUCCESS = 0x00;
export const SC_INVALID_OPCODE = 0x01;
export const SC_INVALID_FIELD = 0x02;
export const SC_DATA_TRANSFER_ERROR = 0x04;
export const SC_INTERNAL_DEVICE_ERROR = 0x06;
export const SC_ABORTED_BY_REQUEST = 0x07;
export const SC_ABORTED_SQ_DELETION = 0x08;
export const SC_INVALID_NAMESPACE = 0x0b;
export const SC_LBA_OUT_OF_RANGE = 0x80;
// Media and data integrity errors.
export const SC_WRITE_FAULT = 0x80;
export const SC_UNRECOVERED_READ_ERROR = 0x81;
// Path related status.
export const SC_INTERNAL_PATH_ERROR = 0x00;
export const SC_HOST_PATH_ERROR = 0x70;

/** The 15-bit status field as it sits in CQE DW3 bits 17-31. */
export function statusField(sct: number, sc: number, dnr = false, more = false): number {
  return (sc & 0xff) | ((sct & 7) << 8) | ((more ? 1 : 0) << 13) | ((dnr ? 1 : 0) << 14);
}

export const STATUS_SUCCESS = 0;
export const STATUS_ABORTED_BY_REQUEST = statusField(SCT_GENERIC, SC_ABORTED_BY_REQUEST);
export const STATUS_ABORTED_SQ_DELETION = statusField(SCT_GENERIC, SC_ABORTED_SQ_DELETION);
export const STATUS_INVALID_OPCODE = statusField(SCT_GENERIC, SC_INVALID_OPCODE, true);
export const STATUS_INVALID_FIELD = statusField(SCT_GENERIC, SC_INVALID_FIELD, true);
export const STATUS_INVALID_NAMESPACE = statusField(SCT_GENERIC, SC_INVALID_NAMESPACE, true);
export const STATUS_LBA_OUT_OF_RANGE = statusField(SCT_GENERIC, SC_LBA_OUT_OF_RANGE, true);
export const STATUS_DATA_TRANSFER_ERROR = statusField(SCT_GENERIC, SC_DATA_TRANSFER_ERROR, true);
export const STATUS_INTERNAL_DEVICE_ERROR = statusField(SCT_GENERIC, SC_INTERNAL_DEVICE_ERROR);
export const STATUS_UNRECOVERED_READ_ERROR = statusField(SCT_MEDIA_ERROR, SC_UNRECOVERED_READ_ERROR, true);
export const STATUS_WRITE_FAULT = statusField(SCT_MEDIA_ERROR, SC_WRITE_FAULT, true);
/** A removed or failed controller: the path to the namespace is gone; do not retry on it. */
export const STATUS_PATH_ERROR = statusField(SCT_PATH, SC_HOST_PATH_ERROR, true);

const SCT_NAMES = ['GENERIC', 'COMMAND_SPECIFIC', 'MEDIA_ERROR', 'PATH', 'SCT4', 'SCT5', 'SCT6', 'VENDOR'];
const SC_NAMES: Record<number, Record<number, string>> = {
  [SCT_GENERIC]: {
    [SC_SUCCESS]: 'SUCCESS', [SC_INVALID_OPCODE]: 'INVALID_OPCODE', [SC_INVALID_FIELD]: 'INVALID_FIELD',
    [SC_DATA_TRANSFER_ERROR]: 'DATA_TRANSFER_ERROR', [SC_INTERNAL_DEVICE_ERROR]: 'INTERNAL_DEVICE_ERROR',
    [SC_ABORTED_BY_REQUEST]: 'ABORTED_BY_REQUEST', [SC_ABORTED_SQ_DELETION]: 'ABORTED_SQ_DELETION',
    [SC_INVALID_NAMESPACE]: 'INVALID_NAMESPACE_OR_FORMAT', [SC_LBA_OUT_OF_RANGE]: 'LBA_OUT_OF_RANGE',
  },
  [SCT_MEDIA_ERROR]: { [SC_WRITE_FAULT]: 'WRITE_FAULT', [SC_UNRECOVERED_READ_ERROR]: 'UNRECOVERED_READ_ERROR' },
  [SCT_PATH]: { [SC_INTERNAL_PATH_ERROR]: 'INTERNAL_PATH_ERROR', [SC_HOST_PATH_ERROR]: 'HOST_PATH_ERROR' },
};

/**
 * A completion's status, decoded. Instances are interned (one frozen object per
 * status value), so completing an I/O allocates nothing.
 */
export class Status {
  /** Status code type (0 generic, 1 command specific, 2 media/data integrity, 3 path). */
  readonly sct: number;
  /** Status code within the type. */
  readonly sc: number;
  /** Do not retry: the same command would fail again. */
  readonly dnr: boolean;
  /** More status information is in the error log page. */
  readonly m: boolean;
  /** The 15-bit status field as carried in the completion entry. */
  readonly field: number;

  private constructor(field: number) {
    this.field = field;
    this.sc = field & 0xff;
    this.sct = (field >> 8) & 7;
    this.m = ((field >> 13) & 1) === 1;
    this.dnr = ((field >> 14) & 1) === 1;
    Object.freeze(this);
  }

  get isError(): boolean {
    return this.sc !== 0 || this.sct !== 0;
  }

  /** e.g. "MEDIA_ERROR/UNRECOVERED_READ_ERROR (sct 2, sc 0x81, dnr)". */
  toString(): string {
    const name = SC_NAMES[this.sct]?.[this.sc] ?? `SC_0x${this.sc.toString(16).padStart(2, '0')}`;
    return `${SCT_NAMES[this.sct]}/${name} (sct ${this.sct}, sc 0x${this.sc.toString(16).padStart(2, '0')}${this.dnr ? ', dnr' : ''}${this.m ? ', m' : ''})`;
  }

  private static readonly interned: (Status | undefined)[] = new Array(1 << 15);

  static of(field: number): Status {
    const f = field & 0x7fff;
    return (Status.interned[f] ??= new Status(f));
  }
}

export const SUCCESS = Status.of(STATUS_SUCCESS);
