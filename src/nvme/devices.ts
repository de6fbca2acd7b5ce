/** Opens the Device a BackendDescription names (in a device worker, or on the host for a power cut). */
import type { BackendDescription, Device } from './backend.js';
import { MemoryDevice } from './memory-backend.js';
import { FileDevice } from './file-backend.js';
import { FaultDevice } from './fault-device.js';

export function openDevice(desc: BackendDescription): Device {
  switch (desc.kind) {
    case 'memory':
      return new MemoryDevice(desc);
    case 'file':
      return new FileDevice(desc);
    case 'fault':
      return new FaultDevice(desc, openDevice(desc.inner));
  }
}
