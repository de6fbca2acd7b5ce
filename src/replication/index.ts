/**
 * Replicated volumes (PureFlash's model on flashpack volumes, etcd as the
 * cluster's source of truth): the store daemon, the cluster client, the
 * metadata schema and the data protocol's wire format.
 */
export { Store } from './store.js';
export type { StoreOptions, StoreStats } from './store.js';
export { Cluster, ClusterVolume } from './client.js';
export type { ClusterOptions, ClusterStatus, ClusterVolumeStats } from './client.js';
export { verifyVolume } from './verify.js';
export { drainStore, removeStore } from './drain.js';
export type { DrainReport, DrainStep, DrainOptions } from './drain.js';
export type { VerifyReport, VerifyDifference } from './verify.js';
export { ClusterMeta, DEFAULT_SHARD_SIZE } from './metadata.js';
export type { StoreInfo, VolumeInfo, ShardInfo, ReplicaInfo, ReplicaState, CreateVolumeOptions, ResyncProgress } from './metadata.js';
export { Etcd } from './etcd.js';
export { DataClient } from './data-client.js';
export * as wire from './wire.js';
