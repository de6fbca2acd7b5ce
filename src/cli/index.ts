/** The `flashpack` command as a function: main(argv) resolves to the exit code (bin/flashpack.mjs runs it). */
export { main } from './main.js';
