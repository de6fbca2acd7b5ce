// Exports no jobs array: Engine.start must refuse it.
export const job = { op: 100 };
