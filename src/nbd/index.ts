/**
 * The NBD export: a volume (or anything with its interface) served to qemu,
 * qemu-img, nbdcopy, nbdinfo, fio and the kernel's client.
 */
export { NbdServer, isLoopback } from './server.js';
export type { NbdExport, NbdServerOptions, NbdServerStats } from './server.js';
export type { ExportTarget } from './connection.js';
export type { TlsOptions } from './tls.js';
export { readPskFile } from './tls.js';
