/**
 * The NVMe-style scheduler: controllers, namespaces and I/O queue pairs after
 * SPDK's NVMe driver, over real backends (files and block devices, memory, and
 * a fault injector). Exported from flashpack as `nvme`.
 */
export { Controller, Namespace } from './controller.js';
export type { ControllerOptions } from './controller.js';
export { IoQpair } from './qpair.js';
export type { IoQpairOptions, IoCallback, TimeoutCallback, DeallocateRange } from './qpair.js';
export { MemoryBackend } from './memory-backend.js';
export type { MemoryBackendOptions } from './memory-backend.js';
export { FileBackend } from './file-backend.js';
export type { FileBackendOptions } from './file-backend.js';
export { FaultBackend, MEDIA_ERRORS_MAX } from './fault-backend.js';
export type { FaultBackendOptions, PowerCutOptions, PowerCutReport, PowerCutMode, MediaErrorKind } from './fault-backend.js';
export type { Backend, BackendDescription } from './backend.js';
export { splitRequest, childCount } from './split.js';
export {
  Status, SUCCESS, IO_FLAGS_FUA, statusField,
  SCT_GENERIC, SCT_COMMAND_SPECIFIC, SCT_MEDIA_ERROR, SCT_PATH,
  SC_SUCCESS, SC_INVALID_OPCODE, SC_INVALID_FIELD, SC_DATA_TRANSFER_ERROR, SC_INTERNAL_DEVICE_ERROR,
  SC_ABORTED_BY_REQUEST, SC_ABORTED_SQ_DELETION, SC_INVALID_NAMESPACE, SC_LBA_OUT_OF_RANGE,
  SC_WRITE_FAULT, SC_UNRECOVERED_READ_ERROR, SC_INTERNAL_PATH_ERROR, SC_HOST_PATH_ERROR,
} from './spec.js';
