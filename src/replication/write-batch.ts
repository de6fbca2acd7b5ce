/**
 * Frames written in one turn of the event loop leave in one writev: the
 * socket is corked at the first write and uncorked once the turn's other
 * requests (or replies) have been written. With no-delay set, each frame
 * would otherwise be its own syscall and its own loopback segment, and at
 * queue depth 32 the kernel time of those dominated a replicated write.
 */
import type * as net from 'node:net';
import { nextTurn } from '../next-turn.js';


export class WriteBatch {
  private corked = false;

  constructor(private readonly socket: net.Socket) {}

  /** Writes `parts` (one frame) into the current batch. */
  write(parts: Iterable<Uint8Array>): void {
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      nextTurn(() => {
        this.corked = false;
        if (!this.socket.destroyed) this.socket.uncork();
      });
    }
    for (const part of parts) this.socket.write(part);
  }
}
